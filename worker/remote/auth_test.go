package remote

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

func TestCheckPassword(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	for _, tc := range []struct {
		configured string
		known      bool
		given      string
		ok         bool
	}{
		{"s3cret", true, "s3cret", true},
		{"s3cret", true, "s3cre", false},
		{"s3cret", true, "s3cret ", false},
		{"s3cret", false, "s3cret", false},
		{"", true, "", false},
		{string(hash), true, "s3cret", true},
		{string(hash), true, string(hash), false},
		{"$2y$" + string(hash)[4:], true, "s3cret", true},
		{"$2a$" + string(hash)[4:], true, "s3cret", true},
	} {
		assert.Equal(t, tc.ok, checkPassword(tc.configured, tc.known, tc.given), "%q %v %q", tc.configured, tc.known, tc.given)
	}
}

// Unknown worker and wrong password get the same 401; failures are logged
// with the name and address, never the password.
func TestAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("bcrypt pass"), bcrypt.MinCost)
	require.NoError(t, err)
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{
			{Name: "plain", Password: "pw-plain"},
			{Name: "hashed", Password: string(hash)},
			{Name: "nopass"},
		},
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"plain", "hashed", "nopass"}, "true")},
	}
	m := startMaster(t, cfg, &Listener{FreeFailures: -1})

	var bodies []string
	for _, tc := range []struct{ name, password string }{
		{"plain", "wrong password"},
		{"nobody", "pw-nobody"},
		{"hashed", "pw-hashed"},
		{"nopass", ""},
	} {
		_, err := dialFake(t, m.addr, tc.name, fakeOptions{password: tc.password})
		require.Equal(t, http.StatusUnauthorized, statusOf(err), "%s: %v", tc.name, err)
		var de *dialError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, `Basic realm="kiln workers"`, de.header.Get("WWW-Authenticate"))
		bodies = append(bodies, de.body)
	}
	for _, b := range bodies[1:] {
		assert.Equal(t, bodies[0], b, "every refusal looks the same")
	}
	logs := m.logs.String()
	assert.Contains(t, logs, "worker authentication failed")
	assert.Contains(t, logs, "worker=nobody remote=127.0.0.1:")
	assert.NotContains(t, logs, "wrong password")
	assert.NotContains(t, logs, "pw-nobody")
	assert.Equal(t, int64(4), m.l.Stats().AuthFailures)
	assert.Zero(t, m.l.Stats().Throttled, "the throttle is off")

	// No credentials at all.
	resp, err := http.Get("http://" + m.addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	m.attachFake(t, "plain", fakeOptions{})
	m.attachFake(t, "hashed", fakeOptions{password: "bcrypt pass"})
}

// Repeated failures from one address lock it out with 429, even for the
// right password; the lockout doubles, and ends.
func TestAuth_Throttle(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}}
	m := startMaster(t, cfg, &Listener{FreeFailures: 2, now: clock})

	fail := func() int {
		_, err := dialFake(t, m.addr, "w1", fakeOptions{password: "guess"})
		return statusOf(err)
	}
	assert.Equal(t, 401, fail())
	assert.Equal(t, 401, fail())
	assert.Equal(t, 401, fail(), "the third failure is refused, and starts a lockout")
	_, err := dialFake(t, m.addr, "w1", fakeOptions{})
	require.Equal(t, 429, statusOf(err), "%v", err)
	var de *dialError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "1", de.header.Get("Retry-After"))

	advance(1500 * time.Millisecond)
	assert.Equal(t, 401, fail(), "after the lockout, credentials are checked again")
	_, err = dialFake(t, m.addr, "w1", fakeOptions{})
	require.Equal(t, 429, statusOf(err))
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "2", de.header.Get("Retry-After"), "the lockout doubled")
	assert.Contains(t, m.logs.String(), "too many failed worker logins")

	advance(2 * time.Second)
	m.attachFake(t, "w1", fakeOptions{})
	assert.Equal(t, int64(2), m.l.Stats().Throttled)
	assert.Zero(t, m.l.throttle.blocked("127.0.0.1"), "a successful login clears the address")
}

func TestThrottle(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle(1, time.Second, 4*time.Second, func() time.Time { return now })
	assert.Zero(t, th.fail("a"))
	assert.Equal(t, time.Second, th.fail("a"))
	assert.Equal(t, 2*time.Second, th.fail("a"))
	assert.Equal(t, 4*time.Second, th.fail("a"))
	assert.Equal(t, 4*time.Second, th.fail("a"), "capped")
	assert.Equal(t, 4*time.Second, th.blocked("a"))
	assert.Zero(t, th.blocked("b"))
	now = now.Add(forgetFailures + 5*time.Second)
	assert.Zero(t, th.blocked("a"))
	assert.Zero(t, th.fail("a"), "a quiet address starts afresh")

	assert.Equal(t, "192.0.2.1", throttleKey("192.0.2.1:5555"))
	assert.Equal(t, "192.0.2.1", throttleKey("[::ffff:192.0.2.1]:5555"))
	assert.Equal(t, "2001:db8:1:2::/64", throttleKey("[2001:db8:1:2:3:4:5:6]:5555"))
	assert.Equal(t, throttleKey("[2001:db8:1:2::1]:1"), throttleKey("[2001:db8:1:2:ffff::9]:2"))
}

// selfSigned writes a certificate for 127.0.0.1 and returns its files and
// a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kiln test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile, pool
}

// wss://, with the certificate from files.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}}
	m := startMaster(t, cfg, &Listener{CertFile: certFile, KeyFile: keyFile})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	m.attachFake(t, "w1", fakeOptions{url: "wss://" + m.addr + "/", client: client})
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Success, b.Results())

	// Plain WebSocket is not served on a TLS port.
	_, err := dialFake(t, m.addr, "w1", fakeOptions{})
	assert.Error(t, err)
}

// When its context ends, Run closes every connection (with a close frame)
// and returns once they have stopped; the master records the workers
// disconnected.
func TestShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &Listener{Listener: ln}
	logs := &logBuffer{tb: t}
	t.Cleanup(func() { logs.mu.Lock(); logs.done = true; logs.mu.Unlock() })
	m, err := ci.NewMaster(ci.MasterConfig{
		BaseDir:  t.TempDir(),
		Workers:  fakeWorkers("w1", "w2"),
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1", "w2"}, "true")},
		Services: []ci.Service{l},
		Logger:   citestLogger(logs),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	var fakes []*fakeWorker
	for _, n := range []string{"w1", "w2"} {
		f, err := dialFake(t, ln.Addr().String(), n, fakeOptions{})
		require.NoError(t, err)
		fakes = append(fakes, f)
	}
	tm := &testMaster{Master: &citest.Master{Master: m}, l: l}
	for _, n := range []string{"w1", "w2"} {
		tm.WaitFor(t, n+" to attach", func() bool { return tm.connected(n) })
	}
	cancel()
	require.NoError(t, <-ran)
	for _, f := range fakes {
		err := f.waitClosed()
		assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "%v", err)
	}
	l.mu.Lock()
	assert.Empty(t, l.conns)
	l.mu.Unlock()
	for _, n := range []string{"w1", "w2"} {
		assert.Contains(t, logs.String(), `msg="worker detached" worker=`+n)
	}
	_, err = net.Dial("tcp", ln.Addr().String())
	assert.Error(t, err, "the port is closed")
}

// TestTLS_Reload: a renewed certificate is served without a restart, at
// once after Reload (a SIGHUP handler's call) and on its own once the
// files change; a pair that does not load leaves the last good one served.
func TestTLS_Reload(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}}
	l := &Listener{CertFile: certFile, KeyFile: keyFile}
	m := startMaster(t, cfg, l)
	served := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", m.addr, &tls.Config{InsecureSkipVerify: true})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	renew := func() []byte {
		t.Helper()
		c, k, _ := selfSigned(t)
		for from, to := range map[string]string{c: certFile, k: keyFile} {
			b, err := os.ReadFile(from)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(to, b, 0o600))
		}
		b, err := os.ReadFile(certFile)
		require.NoError(t, err)
		block, _ := pem.Decode(b)
		return block.Bytes
	}
	first := served()

	second := renew()
	l.Reload()
	assert.Equal(t, second, served(), "served at once after Reload")
	assert.NotEqual(t, first, second)

	third := renew()
	deadline := time.Now().Add(30 * time.Second)
	for !bytes.Equal(served(), third) {
		require.True(t, time.Now().Before(deadline), "the changed files were never served")
		time.Sleep(100 * time.Millisecond)
	}

	// A certificate without its key: the third stays.
	c, _, _ := selfSigned(t)
	b, err := os.ReadFile(c)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, b, 0o644))
	l.Reload()
	assert.Equal(t, third, served())
}
