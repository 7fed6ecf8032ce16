package report_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/report"
)

// A message the fake SMTP server received.
type smtpMessage struct {
	from    string
	to      []string
	header  mail.Header
	body    string // decoded
	subject string // decoded
}

// smtpServer is a small SMTP server on 127.0.0.1 that accepts every
// message. With reject set it refuses recipients.
type smtpServer struct {
	addr   string
	msgs   chan smtpMessage
	mu     sync.Mutex
	reject bool
}

func startSMTP(t *testing.T) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &smtpServer{addr: ln.Addr().String(), msgs: make(chan smtpMessage, 100)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(t, conn) })
		}
	})
	return s
}

func (s *smtpServer) serve(t *testing.T, conn net.Conn) {
	defer conn.Close()
	r := textproto.NewReader(bufio.NewReader(conn))
	w := bufio.NewWriter(conn)
	say := func(line string) {
		w.WriteString(line + "\n")
		w.Flush()
	}
	say("220 mail.example.org ESMTP fake")
	var from string
	var to []string
	for {
		line, err := r.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-mail.example.org")
			say("250-8BITMIME")
			say("250 SIZE 10240000")
		case "HELO", "NOOP", "RSET":
			say("250 ok")
		case "MAIL":
			from = strings.Trim(strings.Fields(strings.TrimPrefix(arg, "FROM:"))[0], "<>")
			say("250 ok")
		case "RCPT":
			s.mu.Lock()
			reject := s.reject
			s.mu.Unlock()
			if reject {
				say("550 no such user")
				continue
			}
			to = append(to, strings.Trim(strings.TrimPrefix(arg, "TO:"), "<>"))
			say("250 ok")
		case "DATA":
			say("354 go ahead")
			data, err := r.ReadDotBytes()
			if err != nil {
				return
			}
			msg, err := mail.ReadMessage(strings.NewReader(string(data)))
			if err != nil {
				t.Errorf("smtp: bad message: %v\n%s", err, data)
				return
			}
			var body io.Reader = msg.Body
			if msg.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
				body = quotedprintable.NewReader(body)
			}
			b, _ := io.ReadAll(body)
			subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
			s.msgs <- smtpMessage{from: from, to: to, header: msg.Header, body: string(b), subject: subject}
			from, to = "", nil
			say("250 queued")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}

func TestMail_Message(t *testing.T) {
	s := startSMTP(t)
	m := &report.Mail{Addr: s.addr, From: "Kiln <ci@example.org>", To: []string{"dev@example.org", "Ops <ops@example.org>"}}
	require.NoError(t, m.Validate())
	rep := testReport(ci.BuildFinished, ci.Failure, ci.SourceStamp{Repository: ideascube, Branch: "master", Revision: sha1, Project: "ideascube/ideascube"})
	rep.Buildset = &ci.Buildset{Reason: "new tag v1\r\nBcc: evil@example.org"}
	rep.Steps = []*ci.StepRecord{
		{Name: "git", Results: ci.Success, Complete: true},
		{Name: "compile", Results: ci.Failure, StateString: "make: *** [all] Error 2", Complete: true},
		{Name: "upload", Results: ci.Skipped, Complete: true},
	}
	require.NoError(t, m.Report(context.Background(), rep))
	got := recv(t, s.msgs)
	assert.Equal(t, "ci@example.org", got.from)
	assert.Equal(t, []string{"dev@example.org", "ops@example.org"}, got.to)
	assert.Equal(t, "Kiln failure in Ideascube on pkg", got.subject)
	assert.Equal(t, `"Kiln" <ci@example.org>`, got.header.Get("From"))
	assert.Equal(t, `<dev@example.org>, "Ops" <ops@example.org>`, got.header.Get("To"))
	assert.Empty(t, got.header.Get("Bcc"))
	assert.Equal(t, "failure", got.header.Get("X-Kiln-Result"))
	want := "Build #3 of pkg, building ideascube/ideascube, failed.\n" +
		"Full details are available at:\n" +
		"    http://ci.example.org/builders/pkg/builds/3\n" +
		"\n" +
		"Builder: pkg\n" +
		"Build: #3\n" +
		"Worker: w1\n" +
		"Reason: new tag v1  Bcc: evil@example.org\n" +
		"Result: failure (failed compile)\n" +
		"\n" +
		"Source:\n" +
		"    repository: https://github.com/ideascube/ideascube.git\n" +
		"    branch: master\n" +
		"    revision: " + sha1 + "\n" +
		"\n" +
		"Failed steps:\n" +
		"    compile: failure (make: *** [all] Error 2)\n" +
		"\n" +
		"Steps:\n" +
		"    git: success\n" +
		"    compile: failure\n" +
		"    upload: skipped\n" +
		"\n" +
		"-- \n" +
		"Kiln, Ideascube\n"
	assert.Equal(t, want, got.body)
}

func TestMail_Modes(t *testing.T) {
	S, F, W, E := ci.Success, ci.Failure, ci.Warnings, ci.Exception
	results := []ci.Result{S, F, F, S, W, S, E, S}
	tests := []struct {
		mode report.MailMode
		// sent lists, for each build of results, whether a mail is sent.
		sent []bool
	}{
		{report.MailAll, []bool{true, true, true, true, true, true, true, true}},
		{"", []bool{false, true, true, false, false, false, true, false}},
		{report.MailFailing, []bool{false, true, true, false, false, false, true, false}},
		{report.MailProblem, []bool{false, true, false, false, false, false, true, false}},
		{report.MailChange, []bool{false, true, false, true, true, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			s := startSMTP(t)
			m := &report.Mail{Addr: s.addr, From: "ci@example.org", To: []string{"dev@example.org"}, Mode: tt.mode}
			require.NoError(t, m.Validate())
			var sent []bool
			for i, res := range results {
				rep := testReport(ci.BuildFinished, res)
				rep.Build.ID, rep.Build.Number = int64(i+1), i+1
				require.NoError(t, m.Report(context.Background(), rep))
				// Another builder's builds are not this one's previous.
				other := testReport(ci.BuildFinished, S)
				other.Builder = &ci.Builder{Name: "other"}
				other.Build.ID = int64(100 + i)
				if tt.mode != report.MailAll {
					require.NoError(t, m.Report(context.Background(), other))
				}
				select {
				case msg := <-s.msgs:
					var id, nanos int64
					_, err := fmt.Sscanf(msg.header.Get("Message-Id"), "<kiln.build.%d.%d@", &id, &nanos)
					require.NoError(t, err)
					require.Equal(t, int64(i+1), id)
					sent = append(sent, true)
				default:
					sent = append(sent, false)
				}
			}
			assert.Equal(t, tt.sent, sent)
		})
	}
	t.Run("StartedIsNotMailed", func(t *testing.T) {
		s := startSMTP(t)
		m := &report.Mail{Addr: s.addr, From: "ci@example.org", To: []string{"dev@example.org"}, Mode: report.MailAll}
		require.NoError(t, m.Report(context.Background(), testReport(ci.BuildStarted, S)))
		select {
		case msg := <-s.msgs:
			t.Errorf("unexpected mail %q", msg.subject)
		default:
		}
	})
	t.Run("Builders", func(t *testing.T) {
		s := startSMTP(t)
		m := &report.Mail{Addr: s.addr, From: "ci@example.org", To: []string{"dev@example.org"}, Mode: report.MailAll, Builders: []string{"other"}}
		require.NoError(t, m.Report(context.Background(), testReport(ci.BuildFinished, F)))
		select {
		case msg := <-s.msgs:
			t.Errorf("unexpected mail %q", msg.subject)
		default:
		}
	})
}

func TestMail_Errors(t *testing.T) {
	s := startSMTP(t)
	s.reject = true
	m := &report.Mail{Addr: s.addr, From: "ci@example.org", To: []string{"dev@example.org"}, Mode: report.MailChange}
	err := m.Report(context.Background(), testReport(ci.BuildFinished, ci.Failure))
	require.ErrorContains(t, err, "550")
	// The failure is still to be written about when the master tries again.
	s.mu.Lock()
	s.reject = false
	s.mu.Unlock()
	require.NoError(t, m.Report(context.Background(), testReport(ci.BuildFinished, ci.Failure)))
	assert.Equal(t, "Kiln failure in Ideascube on pkg", recv(t, s.msgs).subject)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln.Close()
	m = &report.Mail{Addr: ln.Addr().String(), From: "ci@example.org", To: []string{"dev@example.org"}}
	assert.Error(t, m.Report(context.Background(), testReport(ci.BuildFinished, ci.Failure)))

	assert.Error(t, (&report.Mail{}).Validate())
	assert.ErrorContains(t, (&report.Mail{Addr: "h:25", From: "a@b", To: []string{"c@d"}, Mode: "sometimes"}).Validate(), "Mode")
}

// TestMail_Master: a failing build of a real master is mailed about.
func TestMail_Master(t *testing.T) {
	s := startSMTP(t)
	cfg := echoConfig()
	cfg.Reporters = []ci.Reporter{&report.Mail{Addr: s.addr, From: "ci@example.org", To: []string{"dev@example.org"}, Mode: report.MailFailing}}
	m := citest.Start(t, cfg)
	require.Equal(t, ci.Success, m.Build(t, citest.Request{Builder: "pkg"}).Results())
	b := m.Build(t, citest.Request{Builder: "broken", SourceStamp: ci.SourceStamp{Branch: "master", Project: "ideascube"}})
	require.Equal(t, ci.Failure, b.Results())
	msg := recv(t, s.msgs)
	assert.Equal(t, "Kiln failure in Ideascube on broken", msg.subject)
	assert.Contains(t, msg.body, "Build #1 of broken, building ideascube, failed.\n")
	assert.Contains(t, msg.body, "    http://ci.example.org/builders/broken/builds/1\n")
	assert.Contains(t, msg.body, "Failed steps:\n    compile: failure")
	assert.Contains(t, msg.body, "Worker: w1\n")
}
