package report

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnci/kiln/ci"
)

// MailMode says which finished builds Mail writes about.
type MailMode string

// Mail modes, Buildbot's.
const (
	// MailAll: every finished build.
	MailAll MailMode = "all"
	// MailFailing: builds that failed (FAILURE or EXCEPTION).
	MailFailing MailMode = "failing"
	// MailProblem: failed builds whose builder's previous build did not
	// fail.
	MailProblem MailMode = "problem"
	// MailChange: builds whose result differs from that of their builder's
	// previous build.
	MailChange MailMode = "change"
)

// Mail sends an e-mail through an SMTP server about finished builds, as
// Buildbot's MailNotifier: the subject names the result, the master's
// title and the builder; the body has the build's page, its source and its
// failed steps. A message the server refuses, or a server that cannot be
// reached, is returned as an error, and the master tries again.
//
// Modes that compare with the previous build (MailProblem, MailChange)
// remember the last result of each builder since the master started; the
// first build of a builder after a start is compared with a success, so
// that a failure is never kept quiet by a restart.
type Mail struct {
	// Addr is the SMTP server, host:port. Required.
	Addr string
	// From is the sender's address. Required.
	From string
	// To are the recipients' addresses. Required.
	To []string
	// Mode selects the builds to write about; MailFailing if empty.
	Mode MailMode
	// Builders, when set, limits the mails to these builders.
	Builders []string
	// Auth authenticates to the server, after STARTTLS when the server
	// offers it; none if nil.
	Auth smtp.Auth
	// TLSConfig is used for STARTTLS; one for Addr's host if nil.
	TLSConfig *tls.Config
	// HelloName is the name given in EHLO; the machine's host name if empty.
	HelloName string

	mu       sync.Mutex
	last     map[string]ci.Result // by builder
	decision map[int64]bool       // by build, until its mail is sent
}

var _ ci.Reporter = (*Mail)(nil)

// Validate reports configuration errors; the master calls it when it
// starts.
func (m *Mail) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(m.Addr); err != nil {
		errs = append(errs, fmt.Errorf("Addr %q is not host:port", m.Addr))
	}
	if _, err := mail.ParseAddress(m.From); err != nil {
		errs = append(errs, fmt.Errorf("From %q: %v", m.From, err))
	}
	if len(m.To) == 0 {
		errs = append(errs, errors.New("To is empty"))
	}
	for _, to := range m.To {
		if _, err := mail.ParseAddress(to); err != nil {
			errs = append(errs, fmt.Errorf("To %q: %v", to, err))
		}
	}
	switch m.Mode {
	case "", MailAll, MailFailing, MailProblem, MailChange:
	default:
		errs = append(errs, fmt.Errorf("unknown Mode %q", m.Mode))
	}
	return errors.Join(errs...)
}

func failed(r ci.Result) bool { return r == ci.Failure || r == ci.Exception }

// wanted says whether the finished build of r is to be written about,
// deciding once per build: a report tried again gets the same answer.
func (m *Mail) wanted(r *ci.Report) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.decision[r.Build.ID]; ok {
		return d
	}
	if m.last == nil {
		m.last = map[string]ci.Result{}
	}
	if m.decision == nil || len(m.decision) > 1000 {
		m.decision = map[int64]bool{}
	}
	builder := builderName(r)
	result := r.Build.Results
	prev, known := m.last[builder]
	if !known {
		prev = ci.Success
	}
	m.last[builder] = result
	var d bool
	switch m.Mode {
	case MailAll:
		d = true
	case MailProblem:
		d = failed(result) && !failed(prev)
	case MailChange:
		d = result != prev
	default:
		d = failed(result)
	}
	if len(m.Builders) > 0 && !slices.Contains(m.Builders, builder) {
		d = false
	}
	m.decision[r.Build.ID] = d
	return d
}

func (m *Mail) done(buildID int64) {
	m.mu.Lock()
	delete(m.decision, buildID)
	m.mu.Unlock()
}

// Report implements ci.Reporter.
func (m *Mail) Report(ctx context.Context, r *ci.Report) error {
	if r.Event != ci.BuildFinished || !m.wanted(r) {
		return nil
	}
	msg, err := m.message(r)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	if err := m.send(ctx, msg); err != nil {
		return fmt.Errorf("mail to %s: %w", m.Addr, err)
	}
	m.done(r.Build.ID)
	return nil
}

// Subject returns the subject of the mail about a finished build:
// "Kiln failure in Ideascube on build-amd64-pkg", Buildbot's.
func Subject(r *ci.Report) string {
	s := "Kiln " + r.Build.Results.String()
	if r.Title != "" {
		s += " in " + r.Title
	}
	return oneLine(s + " on " + builderName(r))
}

// message writes the whole message, headers and body.
func (m *Mail) message(r *ci.Report) ([]byte, error) {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("From: %w", err)
	}
	var to []string
	for _, a := range m.To {
		addr, err := mail.ParseAddress(a)
		if err != nil {
			return nil, fmt.Errorf("To: %w", err)
		}
		to = append(to, addr.String())
	}
	date := r.Build.CompleteAt
	if date.IsZero() {
		date = time.Now()
	}
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", Subject(r)))
	header("Date", date.Format(time.RFC1123Z))
	header("Message-ID", fmt.Sprintf("<kiln.build.%d.%d@%s>", r.Build.ID, date.UnixNano(), m.hello()))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("X-Kiln-Builder", builderName(r))
	header("X-Kiln-Result", r.Build.Results.String())
	b.WriteString("\r\n")
	// The writer ends the lines with CRLF, as SMTP wants.
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(MailBody(r))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// MailBody returns the text of the mail about a finished build.
func MailBody(r *ci.Report) string {
	var b strings.Builder
	builder := builderName(r)
	what := "a build"
	if len(r.SourceStamps) > 0 && r.SourceStamps[0].Project != "" {
		what = r.SourceStamps[0].Project
	}
	fmt.Fprintf(&b, "Build #%d of %s, building %s, %s.\n", r.Build.Number, builder, oneLine(what), describeResult(r.Build.Results))
	if r.URL != "" {
		fmt.Fprintf(&b, "Full details are available at:\n    %s\n", r.URL)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Builder: %s\n", builder)
	fmt.Fprintf(&b, "Build: #%d\n", r.Build.Number)
	if r.Worker != "" {
		fmt.Fprintf(&b, "Worker: %s\n", r.Worker)
	}
	if r.Buildset != nil && r.Buildset.Reason != "" {
		fmt.Fprintf(&b, "Reason: %s\n", oneLine(r.Buildset.Reason))
	}
	fmt.Fprintf(&b, "Result: %s", r.Build.Results)
	if r.Build.StateString != "" {
		fmt.Fprintf(&b, " (%s)", oneLine(r.Build.StateString))
	}
	b.WriteString("\n")
	for _, ss := range r.SourceStamps {
		b.WriteString("\nSource")
		if ss.Codebase != "" {
			fmt.Fprintf(&b, " %s", oneLine(ss.Codebase))
		}
		b.WriteString(":\n")
		for _, f := range [][2]string{{"repository", ss.Repository}, {"branch", ss.Branch}, {"revision", revisionOf(r, ss)}} {
			if f[1] != "" {
				fmt.Fprintf(&b, "    %s: %s\n", f[0], oneLine(f[1]))
			}
		}
	}
	var failedSteps []*ci.StepRecord
	for _, s := range r.Steps {
		if s.Results != ci.Success && s.Results != ci.Skipped && !s.Hidden {
			failedSteps = append(failedSteps, s)
		}
	}
	if len(failedSteps) > 0 {
		b.WriteString("\nFailed steps:\n")
		for _, s := range failedSteps {
			fmt.Fprintf(&b, "    %s: %s", oneLine(s.Name), s.Results)
			if s.StateString != "" {
				fmt.Fprintf(&b, " (%s)", oneLine(s.StateString))
			}
			b.WriteString("\n")
		}
	}
	if len(r.Steps) > 0 {
		b.WriteString("\nSteps:\n")
		for _, s := range r.Steps {
			fmt.Fprintf(&b, "    %s: %s\n", oneLine(s.Name), s.Results)
		}
	}
	b.WriteString("\n-- \nKiln")
	if r.Title != "" {
		fmt.Fprintf(&b, ", %s", oneLine(r.Title))
	}
	b.WriteString("\n")
	return b.String()
}

func (m *Mail) hello() string {
	if m.HelloName != "" {
		return m.HelloName
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// send delivers msg through the server, within ctx.
func (m *Mail) send(ctx context.Context, msg []byte) error {
	host, _, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello(m.hello()); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := m.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{ServerName: host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return err
		}
	}
	if m.Auth != nil {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("the server does not offer AUTH")
		}
		if err := c.Auth(m.Auth); err != nil {
			return err
		}
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return err
	}
	if err := c.Mail(from.Address); err != nil {
		return err
	}
	for _, a := range m.To {
		to, err := mail.ParseAddress(a)
		if err != nil {
			return err
		}
		if err := c.Rcpt(to.Address); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// The server has taken the message: a failed QUIT must not make the
	// master send it again.
	c.Quit()
	return nil
}
