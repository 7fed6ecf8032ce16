package report

// The IRC client under the IRC reporter: one connection to a server, the
// lines of the protocol, flood control and keepalive. The reporter
// (irc.go) decides what to say and answers what it reads.

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/kilnci/kiln/ci"
)

// Limits of an IRC connection.
const (
	// ircMaxText bounds the text of a message, within IRC's 512-byte lines.
	ircMaxText = 400
	// Flood control: ircBurst lines at once, then one each
	// ircLineInterval, so that servers do not throttle or drop the bot.
	ircBurst        = 5
	ircLineInterval = 500 * time.Millisecond
	// Keepalive: every ircKeepaliveInterval, the bot pings a server quiet
	// for longer than ircPingAfter, and drops one quiet for longer than
	// ircSilenceLimit.
	ircKeepaliveInterval = time.Minute
	ircPingAfter         = 2 * time.Minute
	ircSilenceLimit      = 5 * time.Minute
	// ircDialTimeout bounds connecting, TLS handshake included.
	ircDialTimeout = 30 * time.Second
	// ircWriteTimeout bounds the write of one line.
	ircWriteTimeout = 30 * time.Second
)

// An ircMessage is one line of the IRC protocol.
type ircMessage struct {
	prefix  string
	command string
	params  []string
}

func (m ircMessage) param(n int) string {
	if n < len(m.params) {
		return m.params[n]
	}
	return ""
}

// parseIRCLine splits a line: [@tags] [:prefix] command params [:trailing].
func parseIRCLine(line string) ircMessage {
	var m ircMessage
	if strings.HasPrefix(line, "@") {
		_, line, _ = strings.Cut(line, " ")
	}
	if strings.HasPrefix(line, ":") {
		m.prefix, line, _ = strings.Cut(line[1:], " ")
	}
	line = strings.TrimLeft(line, " ")
	m.command, line, _ = strings.Cut(line, " ")
	m.command = strings.ToUpper(m.command)
	for line != "" {
		line = strings.TrimLeft(line, " ")
		if strings.HasPrefix(line, ":") {
			m.params = append(m.params, line[1:])
			break
		}
		var p string
		p, line, _ = strings.Cut(line, " ")
		if p != "" {
			m.params = append(m.params, p)
		}
	}
	return m
}

// prefixNick returns the nick of a prefix nick!user@host.
func prefixNick(prefix string) string {
	n, _, _ := strings.Cut(prefix, "!")
	if strings.Contains(n, ".") && !strings.Contains(prefix, "!") {
		return "" // a server
	}
	return n
}

func isChannel(target string) bool {
	return target != "" && strings.ContainsRune("#&+!", rune(target[0]))
}

// An ircSession is one connection to the server. Its timers (flood
// control, keepalive) run on the master's clock; its socket deadlines are
// real time.
type ircSession struct {
	conn     net.Conn
	r        *textproto.Reader
	clock    ci.Clock
	ctx      context.Context // ends when the session is closed
	cancel   context.CancelFunc
	lastRead atomic.Int64 // unix nanoseconds, on clock

	mu     sync.Mutex
	nick   string
	joined []string

	wmu     sync.Mutex // orders writes
	w       *bufio.Writer
	limiter *rate.Limiter // flood control, on clock's time
}

// dialIRC connects to addr, with TLS when tlsConfig is not nil, and
// returns the session, not yet registered.
func dialIRC(ctx context.Context, addr string, tlsConfig *tls.Config, nick string, clock ci.Clock) (*ircSession, error) {
	d := &net.Dialer{Timeout: ircDialTimeout, KeepAlive: time.Minute}
	var conn net.Conn
	var err error
	if tlsConfig != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	return newIRCSession(conn, nick, clock), nil
}

func newIRCSession(conn net.Conn, nick string, clock ci.Clock) *ircSession {
	s := &ircSession{
		conn:    conn,
		r:       textproto.NewReader(bufio.NewReaderSize(conn, 8192)),
		clock:   clock,
		nick:    nick,
		w:       bufio.NewWriter(conn),
		limiter: rate.NewLimiter(rate.Every(ircLineInterval), ircBurst),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.touch()
	return s
}

func (s *ircSession) touch() { s.lastRead.Store(s.clock.Now().UnixNano()) }

// read returns the next line from the server. Only one goroutine reads.
func (s *ircSession) read() (ircMessage, error) {
	line, err := s.r.ReadLine()
	if err != nil {
		return ircMessage{}, err
	}
	s.touch()
	return parseIRCLine(line), nil
}

func (s *ircSession) getNick() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nick
}

func (s *ircSession) setNick(n string) {
	s.mu.Lock()
	s.nick = n
	s.mu.Unlock()
}

func (s *ircSession) join(c string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.joined {
		if strings.EqualFold(j, c) {
			return
		}
	}
	s.joined = append(s.joined, c)
}

func (s *ircSession) part(c string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined = slices.DeleteFunc(s.joined, func(j string) bool { return strings.EqualFold(j, c) })
}

func (s *ircSession) channels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.joined)
}

// privmsg sends text to a channel or nick, as one line. The text from
// outside in it has been through oneLine already; line breaks and NULs
// are replaced here again, and formatting codes are kept.
func (s *ircSession) privmsg(ctx context.Context, to, text string) error {
	text = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, text)
	return s.send(ctx, "PRIVMSG "+to+" :"+truncate(text, ircMaxText))
}

// sendRaw sends a line of the bot's own (registration, pong, ping).
func (s *ircSession) sendRaw(line string) {
	s.send(context.Background(), line)
}

// send writes one line, waiting for flood control. It fails with ctx's
// cause if ctx ends first, net.ErrClosed if the session is closed.
func (s *ircSession) send(ctx context.Context, line string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	now := s.clock.Now()
	r := s.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		if err := s.wait(ctx, d); err != nil {
			r.CancelAt(s.clock.Now())
			return err
		}
	}
	s.conn.SetWriteDeadline(time.Now().Add(ircWriteTimeout))
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	return s.w.Flush()
}

// wait waits for d on the session's clock, unless ctx ends (its cause is
// returned) or the session is closed (net.ErrClosed).
func (s *ircSession) wait(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(net.ErrClosed) })
	defer stop()
	return ci.Sleep(ctx, s.clock, d)
}

// keepalive pings the server when it has been quiet, and closes a
// connection that stays silent, until the session is closed.
func (s *ircSession) keepalive() {
	for ci.Sleep(s.ctx, s.clock, ircKeepaliveInterval) == nil {
		quiet := s.clock.Now().Sub(time.Unix(0, s.lastRead.Load()))
		switch {
		case quiet > ircSilenceLimit:
			s.conn.Close()
			return
		case quiet > ircPingAfter:
			s.sendRaw("PING :kiln")
		}
	}
}

// quit says goodbye and closes the connection.
func (s *ircSession) quit(reason string) {
	if s.wmu.TryLock() {
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		s.w.WriteString("QUIT :" + reason + "\r\n")
		s.w.Flush()
		s.wmu.Unlock()
	}
	s.close()
}

// close ends the session: waits end, the connection is closed. It may be
// called more than once.
func (s *ircSession) close() {
	s.cancel()
	s.conn.Close()
}
