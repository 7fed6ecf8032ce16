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
// a TLS one with a certificate made here) and starts the server.
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

func TestIRC(t *testing.T) {
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

	cfg := echoConfig()
	cfg.Reporters = []ci.Reporter{bot}
	// Listed as a reporter only: the master runs its connection too.
	m := citest.Start(t, cfg)
	watcher.waitFor("the bot's join", func(l ircLine) bool {
		return l.command == "JOIN" && l.from() == "kiln" && l.params[0] == "#kiln"
	})

	// Announcements, with Buildbot's words and colours.
	b := m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "v1.0", Revision: sha1}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "Build #1 of pkg (v1.0 3f786850e387) started. http://ci.example.org/builders/pkg/builds/1",
		watcher.said("#kiln", "Build #1 of pkg"))
	assert.Equal(t, "Build #1 of pkg (v1.0 3f786850e387) \x0303completed successfully\x0f. http://ci.example.org/builders/pkg/builds/1",
		watcher.said("#kiln", "Build #1 of pkg"))

	b = m.Build(t, citest.Request{Builder: "broken"})
	require.Equal(t, ci.Failure, b.Results())
	watcher.said("#kiln", "Build #1 of broken started.")
	assert.Equal(t, "Build #1 of broken \x0304failed\x0f: failed compile. http://ci.example.org/builders/broken/builds/1",
		watcher.said("#kiln", "Build #1 of broken"))

	// Text from outside cannot send IRC commands of its own.
	b = m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "x\r\nPRIVMSG #kiln :injected\r\nQUIT"}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "Build #2 of pkg (x  PRIVMSG #kiln :injected  QUIT) started. http://ci.example.org/builders/pkg/builds/2",
		watcher.said("#kiln", "Build #2 of pkg"))
	watcher.said("#kiln", "Build #2 of pkg")

	// Commands.
	watcher.send("PRIVMSG #kiln :kiln: status pkg")
	assert.Regexp(t, `^pkg: idle, last build #2 \x0303completed successfully\x0f \d+ seconds? ago\.$`, watcher.said("#kiln", "pkg:"))
	watcher.send("PRIVMSG #kiln :kiln, last broken")
	assert.Regexp(t, `^broken: last build #1 \x0304failed\x0f \(\d+ seconds? ago\): failed compile\. http://ci\.example\.org/builders/broken/builds/1$`,
		watcher.said("#kiln", "broken:"))
	watcher.send("PRIVMSG #kiln :kiln: status nope")
	assert.Equal(t, "No such builder: nope.", watcher.said("#kiln", "No such"))
	watcher.send("PRIVMSG kiln :help")
	assert.Contains(t, watcher.said("watcher", "Commands:"), "status [builder]")
	watcher.send("PRIVMSG kiln :status")
	assert.Contains(t, watcher.said("watcher", "pkg:"), "idle")
	assert.Contains(t, watcher.said("watcher", "broken:"), "idle")
	watcher.send("PRIVMSG #kiln :status pkg") // not addressed to the bot
	watcher.send("PRIVMSG #kiln :kiln: last pkg")
	assert.Contains(t, watcher.said("#kiln", "pkg:"), "pkg: last build #2")

	for _, l := range watcher.received() {
		if l.command == "PRIVMSG" && l.text() == "injected" {
			t.Errorf("injected line: %q", l.raw)
		}
		if l.command == "QUIT" && l.from() == "kiln" {
			t.Errorf("the bot quit: %q", l.raw)
		}
	}

	// The server goes down: builds go on, reports wait.
	srv.stop()
	b = m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "while-down"}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "while-down\n", b.Log("echo", "stdio"))

	// It comes back: the bot reconnects and answers.
	srv.start()
	watcher = dialIRC(t, srv.addr, "watcher")
	watcher.joinAndWaitForBot()
	watcher.send("PRIVMSG #kiln :kiln: last pkg")
	assert.Contains(t, watcher.said("#kiln", "pkg:"), "pkg: last build #3 \x0303completed successfully\x0f")
}

func TestIRC_TLSAndNickInUse(t *testing.T) {
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
	cfg := echoConfig()
	cfg.Reporters = []ci.Reporter{bot}
	// Listed as a reporter only: the master runs its connection too.
	m := citest.Start(t, cfg)
	watcher.waitFor("the bot's join", func(l ircLine) bool {
		return l.command == "JOIN" && l.from() == "kiln_" && l.params[0] == "#kiln"
	})
	require.Equal(t, ci.Success, m.Build(t, citest.Request{Builder: "pkg"}).Results())
	require.Equal(t, ci.Failure, m.Build(t, citest.Request{Builder: "broken"}).Results())
	l := watcher.waitFor("the failure", func(l ircLine) bool { return l.command == "PRIVMSG" && l.from() == "kiln_" })
	assert.Equal(t, "Build #1 of broken failed: failed compile. http://ci.example.org/builders/broken/builds/1", l.text())
	watcher.send("PRIVMSG #kiln :kiln_: status broken")
	l = watcher.waitFor("the answer", func(l ircLine) bool { return l.command == "PRIVMSG" && l.from() == "kiln_" })
	assert.Contains(t, l.text(), "broken: idle, last build #1 failed")
}

func TestIRC_Validate(t *testing.T) {
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
	cfg.Reporters = []ci.Reporter{bot}
	// Listed as a reporter only: the master runs its connection too.
	m := citest.Start(t, cfg)
	watcher.waitFor("the bot's join", func(l ircLine) bool { return l.command == "JOIN" && l.from() == "kiln" })
	for _, rc := range []string{"0", "1", "1", "0", "0"} {
		m.Build(t, citest.Request{Builder: "flaky", Properties: map[string]any{"rc": rc}})
	}
	assert.Equal(t, "Build #2 of flaky failed: failed exit. http://ci.example.org/builders/flaky/builds/2", watcher.said("#kiln", "Build"))
	assert.Equal(t, "Build #4 of flaky completed successfully. http://ci.example.org/builders/flaky/builds/4", watcher.said("#kiln", "Build"))
	// Nothing else was announced.
	watcher.send("PRIVMSG #kiln :kiln: last flaky")
	assert.Contains(t, watcher.said("#kiln", ""), "flaky: last build #5 completed successfully")
}
