package worker_test

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker"
	"github.com/kilnci/kiln/worker/protocol"
)

// waitFor bounds every wait of these tests, so that a broken worker fails
// a test instead of hanging it. It is no assertion on how long anything
// takes.
const waitFor = 20 * time.Second

// A fakeMaster is a master written for the tests: a WebSocket endpoint
// checking Basic credentials, handing each connection to the test.
type fakeMaster struct {
	t     *testing.T
	srv   *httptest.Server
	URL   string // ws://127.0.0.1:port/
	conns chan *masterConn
	tries chan int // the number of each connection attempt

	mu       sync.Mutex
	name     string
	password string
	status   int  // when not 0, the upgrade is refused with it
	noRead   bool // connections are not read from: the worker's writes block
	attempts int
	paths    []string
}

func startMaster(t *testing.T, name, password string) *fakeMaster {
	m := newFakeMaster(t, name, password)
	m.srv.Start()
	m.URL = "ws://" + m.srv.Listener.Addr().String() + "/"
	return m
}

// startTLSMaster starts a master serving wss://, and returns it with the
// file of its certificate in PEM.
func startTLSMaster(t *testing.T, name, password string) (*fakeMaster, string) {
	m := newFakeMaster(t, name, password)
	m.srv.StartTLS()
	m.URL = "wss://" + m.srv.Listener.Addr().String() + "/"
	ca := filepath.Join(t.TempDir(), "ca.pem")
	cert := m.srv.Certificate()
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644))
	return m, ca
}

func newFakeMaster(t *testing.T, name, password string) *fakeMaster {
	m := &fakeMaster{t: t, name: name, password: password, conns: make(chan *masterConn, 16), tries: make(chan int, 1000)}
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(m.serveHTTP))
	t.Cleanup(m.srv.Close)
	return m
}

// waitAttempt waits for the worker's next connection attempt.
func (m *fakeMaster) waitAttempt() int {
	m.t.Helper()
	select {
	case n := <-m.tries:
		return n
	case <-time.After(waitFor):
		m.t.Fatal("the worker made no connection attempt")
		return 0
	}
}

// setAuth changes the credentials the master accepts, and the status it
// refuses upgrades with (0: accept).
func (m *fakeMaster) setAuth(name, password string, status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.name, m.password, m.status = name, password, status
}

func (m *fakeMaster) upgradePaths() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paths
}

func (m *fakeMaster) serveHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.attempts++
	m.tries <- m.attempts
	m.paths = append(m.paths, r.URL.Path)
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(m.name+":"+m.password))
	status, noRead := m.status, m.noRead
	m.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if r.Header.Get("Authorization") != want {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(protocol.MaxFrameSize)
	c := &masterConn{t: m.t, ws: ws, in: make(chan protocol.Message, 1024), closed: make(chan struct{})}
	if !noRead {
		go c.read()
	}
	m.conns <- c
}

// accept returns the next connection a worker makes.
func (m *fakeMaster) accept() *masterConn {
	m.t.Helper()
	select {
	case c := <-m.conns:
		m.t.Cleanup(func() { c.ws.CloseNow() })
		return c
	case <-time.After(waitFor):
		m.t.Fatal("no worker connected")
		return nil
	}
}

// A masterConn is the fake master's side of one worker connection.
type masterConn struct {
	t       *testing.T
	ws      *websocket.Conn
	in      chan protocol.Message
	closed  chan struct{}
	readErr error // set before closed is closed

	mu      sync.Mutex
	seq     int64
	backlog []protocol.Message
}

func (c *masterConn) read() {
	defer close(c.closed)
	for {
		typ, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.readErr = err
			return
		}
		if typ != websocket.MessageBinary {
			c.readErr = fmt.Errorf("worker sent a %v frame", typ)
			return
		}
		msg, err := protocol.ParseMessage(b)
		if err != nil {
			c.readErr = err
			return
		}
		c.in <- msg
	}
}

// recv returns the next message from the worker.
func (c *masterConn) recv() protocol.Message {
	c.t.Helper()
	c.mu.Lock()
	if len(c.backlog) > 0 {
		m := c.backlog[0]
		c.backlog = c.backlog[1:]
		c.mu.Unlock()
		return m
	}
	c.mu.Unlock()
	select {
	case m := <-c.in:
		return m
	case <-c.closed:
		select {
		case m := <-c.in:
			return m
		default:
		}
		c.t.Fatalf("connection closed while waiting for a message: %v", c.readErr)
	case <-time.After(waitFor):
		c.t.Fatal("no message from the worker")
	}
	return nil
}

// waitClosed waits for the worker to close the connection and returns the
// read error that ended it.
func (c *masterConn) waitClosed() error {
	c.t.Helper()
	select {
	case <-c.closed:
		return c.readErr
	case <-time.After(waitFor):
		c.t.Fatal("the worker did not close the connection")
		return nil
	}
}

// send sends a request with the master's next sequence number and returns
// that number.
func (c *masterConn) send(m protocol.Message) int64 {
	c.t.Helper()
	c.mu.Lock()
	m["seq_number"] = c.seq
	c.seq++
	c.mu.Unlock()
	c.sendRaw(m)
	return m.Seq()
}

func (c *masterConn) sendRaw(m protocol.Message) {
	c.t.Helper()
	b, err := m.Encode()
	require.NoError(c.t, err)
	c.writeFrame(b)
}

func (c *masterConn) writeFrame(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(c.t, c.ws.Write(ctx, websocket.MessageBinary, b))
}

// call sends a request and returns its response; the worker's messages
// that come first are kept for recv.
func (c *masterConn) call(m protocol.Message) protocol.Message {
	c.t.Helper()
	seq := c.send(m)
	var other []protocol.Message
	for {
		r := c.recv()
		if r.Op() == protocol.OpResponse && r.Seq() == seq {
			c.mu.Lock()
			c.backlog = append(other, c.backlog...)
			c.mu.Unlock()
			return r
		}
		other = append(other, r)
	}
}

// respond answers a request of the worker.
func (c *masterConn) respond(req protocol.Message, result any, err error) {
	c.t.Helper()
	c.sendRaw(protocol.Response(req.Seq(), result, err))
}

// handshake plays what a stock Buildbot master sends after the upgrade:
// print, get_worker_info, set_worker_settings (with no buffering, so that
// tests see updates at once). It returns the worker's info.
func (c *masterConn) handshake() map[string]any {
	c.t.Helper()
	r := c.call(protocol.Message{"op": "print", "message": "attached"})
	require.NoError(c.t, r.ResponseError())
	r = c.call(protocol.Message{"op": "get_worker_info"})
	require.NoError(c.t, r.ResponseError())
	info, ok := r["result"].(map[string]any)
	require.True(c.t, ok, "get_worker_info result is a %T", r["result"])
	r = c.call(protocol.Message{"op": "set_worker_settings", "args": map[string]any{
		"newline_re": `(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)`, "max_line_length": 4096,
		"buffer_timeout": 0, "buffer_size": 65536,
	}})
	require.NoError(c.t, r.ResponseError())
	return info
}

// A commandRun is what the worker sent for one command.
type commandRun struct {
	updates  []protocol.UpdatePair
	requests []protocol.Message // every request of the worker for it, in order
	complete any                // complete's args
}

// rc returns the command's rc update.
func (r *commandRun) rc(t *testing.T) int64 {
	t.Helper()
	for _, u := range r.updates {
		if u.Key == "rc" {
			n, ok := u.Value.(int64)
			require.True(t, ok, "rc is a %T", u.Value)
			return n
		}
	}
	t.Fatal("no rc update")
	return 0
}

// text returns the text of the command's updates with key (stdout,
// stderr, header).
func (r *commandRun) text(t *testing.T, key string) string {
	t.Helper()
	var b strings.Builder
	for _, u := range r.updates {
		if u.Key == key {
			s, err := protocol.UpdateText(u.Value)
			require.NoError(t, err)
			b.WriteString(s)
		}
	}
	return b.String()
}

// startCommand sends start_command and checks that it is accepted.
func (c *masterConn) startCommand(id, name string, args map[string]any) {
	c.t.Helper()
	r := c.call(protocol.Message{"op": "start_command", "builder_name": "b", "command_id": id, "command_name": name, "args": args})
	require.NoError(c.t, r.ResponseError())
}

// follow answers the worker's requests for command id until it
// completes. answer gives the result of requests other than update and
// complete (nil: answer nil).
func (c *masterConn) follow(id string, answer func(protocol.Message) (any, error)) *commandRun {
	c.t.Helper()
	run := &commandRun{}
	for {
		m := c.recv()
		require.NotEqual(c.t, protocol.OpResponse, m.Op(), "unexpected response %v", m)
		require.Equal(c.t, id, m["command_id"], "request %v", m)
		run.requests = append(run.requests, m)
		switch m.Op() {
		case protocol.OpUpdate:
			ups, err := protocol.ParseUpdates(m["args"])
			require.NoError(c.t, err)
			run.updates = append(run.updates, ups...)
			c.respond(m, nil, nil)
		case protocol.OpComplete:
			run.complete = m["args"]
			c.respond(m, nil, nil)
			return run
		default:
			var res any
			var err error
			if answer != nil {
				res, err = answer(m)
			}
			c.respond(m, res, err)
		}
	}
}

// runCommand starts a command and follows it to its completion.
func (c *masterConn) runCommand(id, name string, args map[string]any, answer func(protocol.Message) (any, error)) *commandRun {
	c.t.Helper()
	c.startCommand(id, name, args)
	return c.follow(id, answer)
}

// startWorker runs w until the test ends, and returns a channel with
// Run's result.
func startWorker(t *testing.T, w *worker.Worker) (cancel context.CancelFunc, result <-chan error) {
	t.Helper()
	if w.Logger == nil {
		w.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res <- w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Error("the worker did not stop")
		}
	})
	return cancel, res
}

// waitResult waits for Run's result.
func waitResult(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
		return nil
	}
}

// newWorker returns a worker for m with fast reconnection.
func newWorker(t *testing.T, m *fakeMaster) *worker.Worker {
	return &worker.Worker{
		Name:       "w1",
		Password:   "pass",
		Master:     m.URL,
		BaseDir:    t.TempDir(),
		MinBackoff: time.Millisecond,
		MaxBackoff: 10 * time.Millisecond,
	}
}

// testLogger logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// records is a slog.Handler that hands every record to a channel, for
// tests that wait for a message.
type records chan slog.Record

func (r records) Enabled(context.Context, slog.Level) bool { return true }
func (r records) Handle(_ context.Context, rec slog.Record) error {
	select {
	case r <- rec.Clone():
	default:
	}
	return nil
}
func (r records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r records) WithGroup(string) slog.Handler      { return r }

// waitLog waits for a record whose message contains msg, and returns it
// with its attributes as text.
func (r records) waitLog(t *testing.T, level slog.Level, msg string) string {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case rec := <-r:
			if rec.Level == level && strings.Contains(rec.Message, msg) {
				var b strings.Builder
				b.WriteString(rec.Message)
				rec.Attrs(func(a slog.Attr) bool {
					fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
					return true
				})
				return b.String()
			}
		case <-timeout:
			t.Fatalf("no %s log %q", level, msg)
			return ""
		}
	}
}

// TestWorker_AttachedOnce: the master says "attached" once and then once
// per builder, as Buildbot's does; the worker's log says it once.
func TestWorker_AttachedOnce(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	logs := make(records, 1024)
	w.Logger = slog.New(logs)
	startWorker(t, w)
	c := m.accept()
	c.handshake()
	for range 3 {
		require.NoError(t, c.call(protocol.Message{"op": "print", "message": "attached"}).ResponseError())
	}
	r := c.call(protocol.Message{"op": "set_builder_list", "builders": []any{[]any{"a", "a"}, []any{"b", "b"}, []any{"c", "c"}}})
	require.NoError(t, r.ResponseError())
	// The worker logs a print before it answers it: once this one is
	// answered, every record before it is in logs.
	require.NoError(t, c.call(protocol.Message{"op": "print", "message": "hello from the admin"}).ResponseError())
	var attached, other []string
	for len(logs) > 0 {
		rec := <-logs
		if rec.Level < slog.LevelInfo {
			continue
		}
		var b strings.Builder
		b.WriteString(rec.Message)
		rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		if strings.Contains(b.String(), "attached") {
			attached = append(attached, b.String())
		} else {
			other = append(other, b.String())
		}
	}
	require.Equal(t, []string{"attached to master"}, attached)
	require.Contains(t, other, "message from master message=hello from the admin")
}
