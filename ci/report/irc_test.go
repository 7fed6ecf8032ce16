package report_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/report"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/testenv"
)

const ircPassword = "irc-pa55word"

// ngircd is Debian's IRC server, run by a test on a loopback port.
type ngircd struct {
	t        *testing.T
	path     string
	conf     string
	addr     string
	tlsAddr  string
	rootCAs  *x509.CertPool
	cmd      *exec.Cmd
	exited   chan struct{}
	mu       sync.Mutex
	serverUp bool
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startNgircd writes a configuration (server password, a plain port and
// a TLS one with a certificate made here) and starts the server. Its own
// flood control (penalties) is off: it would hold the test clients'
// lines for seconds, and the bot's flood control is the one tested.
func startNgircd(t *testing.T) *ngircd {
	path := testenv.NeedTool(t, "ngircd")
	dir, err := os.MkdirTemp("", "kiln-ngircd-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	// ngircd drops its privileges to "nobody" when started as root.
	require.NoError(t, os.Chmod(dir, 0o755))
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeCert(t, certFile, keyFile)
	port, tlsPort := freePort(t), freePort(t)
	conf := filepath.Join(dir, "ngircd.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`[Global]
	Name = irc.kiln.test
	Info = Kiln test server
	Listen = 127.0.0.1
	Ports = %s
	Password = %s
	MotdPhrase = "Kiln test server"
	AdminInfo1 = Kiln tests
	AdminInfo2 = Kiln tests
	AdminEMail = root@localhost
[Limits]
	MaxConnectionsIP = 50
	PingTimeout = 120
	PongTimeout = 20
	MaxPenaltyTime = 0
[Options]
	DNS = no
	Ident = no
	PAM = no
[SSL]
	CertFile = %s
	KeyFile = %s
	Ports = %s
`, port, ircPassword, certFile, keyFile, tlsPort)), 0o644))
	s := &ngircd{t: t, path: path, conf: conf, addr: "127.0.0.1:" + port, tlsAddr: "127.0.0.1:" + tlsPort, rootCAs: pool}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start runs the server and waits until it says it is ready.
func (s *ngircd) start() {
	t := s.t
	t.Helper()
	cmd := exec.Command(s.path, "-n", "-f", s.conf)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	s.cmd = cmd
	s.exited = make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "ready.") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	select {
	case <-ready:
	case <-s.exited:
		t.Fatal("ngircd exited before it was ready")
	case <-time.After(time.Minute):
		t.Fatal("ngircd did not start")
	}
}

// stop ends the server started by start, by its own process.
func (s *ngircd) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// writeCert makes a self-signed certificate for 127.0.0.1.
func writeCert(t *testing.T, certFile, keyFile string) *x509.CertPool {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "irc.kiln.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// An ircLine is a message an IRC client received.
type ircLine struct {
	prefix, command string
	params          []string
	raw             string
}

func (l ircLine) from() string { n, _, _ := strings.Cut(l.prefix, "!"); return n }
func (l ircLine) text() string { return l.params[len(l.params)-1] }

func parseLine(s string) ircLine {
	l := ircLine{raw: s}
	if strings.HasPrefix(s, ":") {
		l.prefix, s, _ = strings.Cut(s[1:], " ")
	}
	s, trailing, hasTrailing := strings.Cut(s, " :")
	f := strings.Fields(s)
	l.command, l.params = f[0], f[1:]
	if hasTrailing {
		l.params = append(l.params, trailing)
	}
	return l
}

// ircClient is a person on the test server.
type ircClient struct {
	t     *testing.T
	nick  string
	conn  net.Conn
	lines chan ircLine
	mu    sync.Mutex
	all   []ircLine
}

func dialIRC(t *testing.T, addr, nick string) *ircClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c := &ircClient{t: t, nick: nick, conn: conn, lines: make(chan ircLine, 1000)}
	t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(c.lines)
		r := textproto.NewReader(bufio.NewReader(conn))
		for {
			s, err := r.ReadLine()
			if err != nil {
				return
			}
			l := parseLine(s)
			if l.command == "PING" {
				c.send("PONG :" + l.text())
				continue
			}
			c.mu.Lock()
			c.all = append(c.all, l)
			c.mu.Unlock()
			c.lines <- l
		}
	}()
	c.send("PASS " + ircPassword)
	c.send("NICK " + nick)
	c.send("USER " + nick + " 0 * :test client")
	c.waitFor("welcome", func(l ircLine) bool { return l.command == "001" })
	return c
}

func (c *ircClient) send(line string) {
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c.conn, "%s\r\n", line)
}

// waitFor returns the next line for which match is true.
func (c *ircClient) waitFor(what string, match func(ircLine) bool) ircLine {
	c.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("connection closed waiting for %s", what)
			}
			if match(l) {
				return l
			}
		case <-timeout:
			c.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// said waits for a message from the bot to target that starts with
// prefix.
func (c *ircClient) said(target, prefix string) string {
	c.t.Helper()
	return c.waitFor(fmt.Sprintf("%q to %s", prefix, target), func(l ircLine) bool {
		return l.command == "PRIVMSG" && l.from() == "kiln" && l.params[0] == target && strings.HasPrefix(l.text(), prefix)
	}).text()
}

func (c *ircClient) received() []ircLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ircLine(nil), c.all...)
}

// joinAndWaitForBot joins #kiln and waits until the bot is there.
func (c *ircClient) joinAndWaitForBot() {
	c.t.Helper()
	c.send("JOIN #kiln")
	c.waitFor("the bot in #kiln", func(l ircLine) bool {
		switch l.command {
		case "JOIN":
			return l.from() == "kiln" && l.params[0] == "#kiln"
		case "353": // names
			for _, n := range strings.Fields(l.text()) {
				if strings.TrimLeft(n, "@+") == "kiln" {
					return true
				}
			}
		}
		return false
	})
}

// ircT0 is the time of the fake clocks of the IRC tests.
var ircT0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// Flood control, as the bot applies it: a burst of five lines, then one
// each half second. The tests advance their clock by ircRefill where
// the bot is to have its whole burst again.
const (
	ircBurst        = 5
	ircLineInterval = 500 * time.Millisecond
	ircRefill       = ircBurst * ircLineInterval
)

// startIRCMaster starts a master on a fake clock, with bot listed as a
// reporter only (the master runs its connection too), and waits until
// the watcher sees the bot join #kiln as nick.
func startIRCMaster(t *testing.T, cfg ci.MasterConfig, bot *report.IRC, watcher *ircClient, nick string) (*citest.Master, *citest.Clock) {
	t.Helper()
	clock := citest.NewClock(ircT0)
	cfg.Clock = clock
	cfg.Reporters = []ci.Reporter{bot}
	m := citest.Start(t, cfg)
	watcher.waitFor("the bot's join", func(l ircLine) bool {
		return l.command == "JOIN" && l.from() == nick && l.params[0] == "#kiln"
	})
	return m, clock
}

func TestIRC(t *testing.T) {
	t.Parallel()
	srv := startNgircd(t)
	watcher := dialIRC(t, srv.addr, "watcher")
	watcher.send("JOIN #kiln")
	watcher.waitFor("own join", func(l ircLine) bool { return l.command == "JOIN" && l.from() == "watcher" })

	bot := &report.IRC{
		Addr: srv.addr, Nick: "kiln", Password: ircPassword, Channels: []string{"#kiln"},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
	require.NoError(t, bot.Validate())
	// Not running: reports fail, so that the master tries again.
	assert.ErrorContains(t, bot.Report(context.Background(), testReport(ci.BuildStarted, ci.Success)), "not connected")

	// Registered and joined: four lines of the burst are spent.
	m, clock := startIRCMaster(t, echoConfig(), bot, watcher, "kiln")

	// Announcements, with Buildbot's words and colours.
	clock.Advance(ircRefill)
	b := m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "v1.0", Revision: sha1}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "Build #1 of pkg (v1.0 3f786850e387) started. http://ci.example.org/builders/pkg/builds/1",
		watcher.said("#kiln", "Build #1 of pkg"))
	assert.Equal(t, "Build #1 of pkg (v1.0 3f786850e387) \x0303completed successfully\x0f. http://ci.example.org/builders/pkg/builds/1",
		watcher.said("#kiln", "Build #1 of pkg"))

	clock.Advance(ircRefill)
	b = m.Build(t, citest.Request{Builder: "broken"})
	require.Equal(t, ci.Failure, b.Results())
	watcher.said("#kiln", "Build #1 of broken started.")
	assert.Equal(t, "Build #1 of broken \x0304failed\x0f: failed compile. http://ci.example.org/builders/broken/builds/1",
		watcher.said("#kiln", "Build #1 of broken"))

	// Text from outside cannot send IRC commands of its own.
	clock.Advance(ircRefill)
	b = m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "x\r\nPRIVMSG #kiln :injected\r\nQUIT"}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "Build #2 of pkg (x  PRIVMSG #kiln :injected  QUIT) started. http://ci.example.org/builders/pkg/builds/2",
		watcher.said("#kiln", "Build #2 of pkg"))
	watcher.said("#kiln", "Build #2 of pkg")

	// Commands; the times are the fake clock's.
	clock.Advance(ircRefill)
	watcher.send("PRIVMSG #kiln :kiln: status pkg")
	assert.Equal(t, "pkg: idle, last build #2 \x0303completed successfully\x0f 2 seconds ago.", watcher.said("#kiln", "pkg:"))
	watcher.send("PRIVMSG #kiln :kiln, last broken")
	assert.Equal(t, "broken: last build #1 \x0304failed\x0f (5 seconds ago): failed compile. http://ci.example.org/builders/broken/builds/1",
		watcher.said("#kiln", "broken:"))
	watcher.send("PRIVMSG #kiln :kiln: status nope")
	assert.Equal(t, "No such builder: nope.", watcher.said("#kiln", "No such"))
	clock.Advance(ircRefill)
	watcher.send("PRIVMSG kiln :help")
	assert.Contains(t, watcher.said("watcher", "Commands:"), "status [builder]")
	watcher.send("PRIVMSG kiln :status")
	assert.Contains(t, watcher.said("watcher", "pkg:"), "idle")
	assert.Contains(t, watcher.said("watcher", "broken:"), "idle")
	watcher.send("PRIVMSG #kiln :status pkg") // not addressed to the bot
	watcher.send("PRIVMSG #kiln :kiln: last pkg")
	assert.Contains(t, watcher.said("#kiln", "pkg:"), "pkg: last build #2")

	// Flood control: five lines at once, then one each half second of
	// the master's clock.
	clock.Advance(ircRefill)
	before := countSaid(watcher, "watcher", "Commands:")
	for range 7 {
		watcher.send("PRIVMSG kiln :help")
	}
	for range ircBurst {
		watcher.said("watcher", "Commands:")
	}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		require.True(t, clock.WaitTimer(ctx, clock.Now().Add(ircLineInterval)), "the bot waits for flood control")
		cancel()
		assert.Equal(t, before+ircBurst, countSaid(watcher, "watcher", "Commands:"))
		clock.Advance(ircLineInterval)
		watcher.said("watcher", "Commands:")
		before++
	}
	assert.Equal(t, before+ircBurst, countSaid(watcher, "watcher", "Commands:"))

	for _, l := range watcher.received() {
		if l.command == "PRIVMSG" && l.text() == "injected" {
			t.Errorf("injected line: %q", l.raw)
		}
		if l.command == "QUIT" && l.from() == "kiln" {
			t.Errorf("the bot quit: %q", l.raw)
		}
	}

	// The server goes down: the bot waits before it reconnects; builds
	// go on, reports wait.
	clock.Advance(ircRefill)
	srv.stop()
	waitTimer(t, clock, clock.Now().Add(bot.MinBackoff))
	b = m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "while-down"}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "while-down\n", b.Log("echo", "stdio"))
	waitTimer(t, clock, clock.Now().Add(time.Second)) // the reporter's first retry

	// It comes back: the bot reconnects and answers (the fifth line of
	// its burst), then sends the reports that waited.
	srv.start()
	clock.Advance(bot.MinBackoff)
	watcher = dialIRC(t, srv.addr, "watcher")
	watcher.joinAndWaitForBot()
	watcher.send("PRIVMSG #kiln :kiln: last pkg")
	assert.Contains(t, watcher.said("#kiln", "pkg:"), "pkg: last build #3 \x0303completed successfully\x0f")
	clock.Advance(time.Second) // the reporter's first retry; two lines more of the burst
	assert.Equal(t, "Build #3 of pkg (while-down) started. http://ci.example.org/builders/pkg/builds/3", watcher.said("#kiln", "Build #3"))
	assert.Equal(t, "Build #3 of pkg (while-down) \x0303completed successfully\x0f. http://ci.example.org/builders/pkg/builds/3", watcher.said("#kiln", "Build #3"))
}

// waitTimer waits until clock has a timer set for at.
func waitTimer(t *testing.T, clock *citest.Clock, at time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.True(t, clock.WaitTimer(ctx, at), "no timer set for %s", at)
}

// countSaid counts the messages from the bot to target that start with
// prefix, received so far.
func countSaid(c *ircClient, target, prefix string) int {
	n := 0
	for _, l := range c.received() {
		if l.command == "PRIVMSG" && l.from() == "kiln" && l.params[0] == target && strings.HasPrefix(l.text(), prefix) {
			n++
		}
	}
	return n
}

// TestIRC_Keepalive: the bot pings a quiet server, and drops and
// replaces a connection on which nothing comes for five minutes of the
// master's clock (here, while the server is stopped).
func TestIRC_Keepalive(t *testing.T) {
	t.Parallel()
	srv := startNgircd(t)
	watcher := dialIRC(t, srv.addr, "watcher")
	watcher.send("JOIN #kiln")
	watcher.waitFor("own join", func(l ircLine) bool { return l.command == "JOIN" && l.from() == "watcher" })
	bot := &report.IRC{Addr: srv.addr, Nick: "kiln", Password: ircPassword, Channels: []string{"#kiln"}, MinBackoff: time.Second}
	_, clock := startIRCMaster(t, echoConfig(), bot, watcher, "kiln")
	// The bot answers: it has read every line the server sent it. The
	// clock has not moved since the bot registered: the server was last
	// heard at ircT0, and keepalives come each minute after it.
	watcher.send("PRIVMSG kiln :help")
	watcher.said("watcher", "Commands:")
	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			srv.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	for minute := 1; minute <= 6; minute++ {
		at := ircT0.Add(time.Duration(minute) * time.Minute)
		waitTimer(t, clock, at)
		clock.Set(at)
	}
	// Six minutes without a line: the connection is dropped, and the bot
	// waits to reconnect.
	waitTimer(t, clock, clock.Now().Add(time.Second))
	resume()
	clock.Advance(time.Second)
	watcher.waitFor("the bot's join again", func(l ircLine) bool {
		return l.command == "JOIN" && strings.HasPrefix(l.from(), "kiln") && l.params[0] == "#kiln"
	})
}

func TestIRC_TLSAndNickInUse(t *testing.T) {
	t.Parallel()
	srv := startNgircd(t)
	squatter := dialIRC(t, srv.addr, "kiln") // the nick is taken
	_ = squatter
	watcher := dialIRC(t, srv.addr, "watcher")
	watcher.send("JOIN #kiln")
	watcher.waitFor("own join", func(l ircLine) bool { return l.command == "JOIN" && l.from() == "watcher" })

	bot := &report.IRC{
		Addr: srv.tlsAddr, TLS: true, TLSConfig: &tls.Config{RootCAs: srv.rootCAs, ServerName: "127.0.0.1"},
		Nick: "kiln", Password: ircPassword, Channels: []string{"#kiln"}, NoColors: true,
		Notify:     []string{"failure"},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
	// PASS, NICK, USER, NICK again, JOIN: the whole burst.
	m, clock := startIRCMaster(t, echoConfig(), bot, watcher, "kiln_")
	clock.Advance(ircRefill)
	require.Equal(t, ci.Success, m.Build(t, citest.Request{Builder: "pkg"}).Results())
	require.Equal(t, ci.Failure, m.Build(t, citest.Request{Builder: "broken"}).Results())
	l := watcher.waitFor("the failure", func(l ircLine) bool { return l.command == "PRIVMSG" && l.from() == "kiln_" })
	assert.Equal(t, "Build #1 of broken failed: failed compile. http://ci.example.org/builders/broken/builds/1", l.text())
	watcher.send("PRIVMSG #kiln :kiln_: status broken")
	l = watcher.waitFor("the answer", func(l ircLine) bool { return l.command == "PRIVMSG" && l.from() == "kiln_" })
	assert.Equal(t, "broken: idle, last build #1 failed 0 seconds ago.", l.text())
}

func TestIRC_Validate(t *testing.T) {
	t.Parallel()
	assert.NoError(t, (&report.IRC{Addr: "irc:6667", Nick: "kiln", Channels: []string{"#a", "&b"}}).Validate())
	for _, bad := range []*report.IRC{
		{Nick: "kiln", Channels: []string{"#a"}},
		{Addr: "irc:6667", Channels: []string{"#a"}},
		{Addr: "irc:6667", Nick: "k i", Channels: []string{"#a"}},
		{Addr: "irc:6667", Nick: "kiln"},
		{Addr: "irc:6667", Nick: "kiln", Channels: []string{"a"}},
		{Addr: "irc:6667", Nick: "kiln", Channels: []string{"#a\r\nQUIT"}},
		{Addr: "irc:6667", Nick: "kiln", Channels: []string{"#a"}, Notify: []string{"sometimes"}},
		{Addr: "irc:6667", Nick: "kiln", Channels: []string{"#a"}, Password: "x\r\nQUIT"},
		{Addr: "irc:6667", Nick: "kiln", Channels: []string{"#a"}, MinBackoff: time.Minute, MaxBackoff: time.Second},
	} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
}

// TestIRC_NotifyChanges: with Notify on changes of result only, the bot
// announces the builds that fail after a success and succeed after a
// failure, comparing with the builder's previous build in the store.
func TestIRC_NotifyChanges(t *testing.T) {
	t.Parallel()
	srv := startNgircd(t)
	watcher := dialIRC(t, srv.addr, "watcher")
	watcher.send("JOIN #kiln")
	watcher.waitFor("own join", func(l ircLine) bool { return l.command == "JOIN" && l.from() == "watcher" })
	bot := &report.IRC{
		Addr: srv.addr, Nick: "kiln", Password: ircPassword, Channels: []string{"#kiln"}, NoColors: true,
		Notify: []string{"problem", "recovery"},
	}
	cfg := echoConfig()
	cfg.Builders = append(cfg.Builders, ci.BuilderConfig{
		Name: "flaky", Workers: []string{"w1"},
		Steps: []ci.Step{&steps.ShellCommand{
			StepOptions: ci.StepOptions{Name: "exit"},
			Command:     []any{"sh", "-c", "exit \"$1\"", "sh", ci.Interpolate("%(prop:rc)s")},
		}},
	})
	m, clock := startIRCMaster(t, cfg, bot, watcher, "kiln")
	clock.Advance(ircRefill)
	for _, rc := range []string{"0", "1", "1", "0", "0"} {
		m.Build(t, citest.Request{Builder: "flaky", Properties: map[string]any{"rc": rc}})
	}
	assert.Equal(t, "Build #2 of flaky failed: failed exit. http://ci.example.org/builders/flaky/builds/2", watcher.said("#kiln", "Build"))
	assert.Equal(t, "Build #4 of flaky completed successfully. http://ci.example.org/builders/flaky/builds/4", watcher.said("#kiln", "Build"))
	// Nothing else was announced.
	watcher.send("PRIVMSG #kiln :kiln: last flaky")
	assert.Contains(t, watcher.said("#kiln", ""), "flaky: last build #5 completed successfully")
}
