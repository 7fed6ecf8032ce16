package remote

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/worker/protocol"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 60 * time.Second

// A fakeWorker is a worker written with the protocol codec, driven by the
// test: it answers the handshake and runs commands through onCommand.
type fakeWorker struct {
	tb   testing.TB
	name string
	ws   *websocket.Conn
	info map[string]any

	listdir []any
	rawInfo any
	mute    bool
	// onCommand runs each start_command (after it is answered), in its own
	// goroutine; nil completes every command with rc 0.
	onCommand func(f *fakeWorker, c fakeCommand)
	// ignoreKeepalives leaves the master's keepalive requests unanswered.
	ignoreKeepalives atomic.Bool
	// noPong stops answering WebSocket pings.
	noPong atomic.Bool

	mu       sync.Mutex
	seq      int64
	pending  map[int64]chan protocol.Message
	requests []protocol.Message // every request of the master, in order
	changed  chan struct{}      // signalled when requests grows

	pings      atomic.Int64
	silent     chan struct{} // closed: stop reading
	silentOnce sync.Once
	stop       chan struct{} // closed at the end of the test
	readerDone chan struct{}
	readErr    error
}

// A fakeCommand is a start_command received.
type fakeCommand struct {
	ID, Name, Builder string
	Args              map[string]any
}

// fakeOptions adjust dialFake.
type fakeOptions struct {
	password  string
	url       string // ws://addr/ by default
	client    *http.Client
	onCommand func(f *fakeWorker, c fakeCommand)
	basedir   string
	info      map[string]any
	listdir   []any // what listdir of the base folder answers (nothing by default)
	rawInfo   any   // what get_worker_info answers instead of a map
	mute      bool  // answer nothing (requests are still recorded)
}

// dialFake connects a fake worker; it returns the HTTP response of a
// refused upgrade as an error.
func dialFake(tb testing.TB, addr, name string, o fakeOptions) (*fakeWorker, error) {
	tb.Helper()
	if o.password == "" {
		o.password = "pw-" + name
	}
	if o.url == "" {
		o.url = "ws://" + addr + "/"
	}
	if o.basedir == "" {
		o.basedir = "/fake/" + name
	}
	f := &fakeWorker{
		tb: tb, name: name, onCommand: o.onCommand, listdir: o.listdir, rawInfo: o.rawInfo, mute: o.mute,
		pending: map[int64]chan protocol.Message{}, changed: make(chan struct{}, 1),
		silent: make(chan struct{}), stop: make(chan struct{}), readerDone: make(chan struct{}),
		seq: -1,
	}
	f.info = map[string]any{
		"admin": "Fake Admin <fake@example.invalid>\n", "host": "a fake host\n",
		"environ": map[string]any{"HOME": "/home/fake", "SECRET": "s3cret"},
		"system":  "posix", "basedir": o.basedir, "numcpus": 1, "version": "fake-1",
		"worker_commands": protocol.WorkerCommands(), "delete_leftover_dirs": false,
	}
	for k, v := range o.info {
		f.info[k] = v
	}
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(name+":"+o.password)))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, o.url, &websocket.DialOptions{
		HTTPHeader: h,
		HTTPClient: o.client,
		OnPingReceived: func(context.Context, []byte) bool {
			f.pings.Add(1)
			return !f.noPong.Load()
		},
	})
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			return nil, &dialError{status: resp.StatusCode, header: resp.Header, body: string(body)}
		}
		return nil, err
	}
	ws.SetReadLimit(protocol.MaxFrameSize)
	f.ws = ws
	tb.Cleanup(func() {
		close(f.stop)
		ws.CloseNow()
		<-f.readerDone
	})
	go f.read()
	return f, nil
}

type dialError struct {
	status int
	header http.Header
	body   string
}

func (e *dialError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// statusOf returns the HTTP status of a refused dial.
func statusOf(err error) int {
	var de *dialError
	if errors.As(err, &de) {
		return de.status
	}
	return 0
}

func (f *fakeWorker) read() {
	defer close(f.readerDone)
	for {
		select {
		case <-f.silent:
			<-f.stop
			return
		default:
		}
		typ, frame, err := f.ws.Read(context.Background())
		if err != nil {
			f.mu.Lock()
			f.readErr = err
			f.mu.Unlock()
			return
		}
		select {
		case <-f.silent:
			continue // read, never handled
		default:
		}
		if typ != websocket.MessageBinary {
			continue
		}
		msg, err := protocol.ParseMessage(frame)
		if err != nil {
			f.tb.Errorf("fake worker %s: bad frame from the master: %v", f.name, err)
			continue
		}
		f.handle(msg)
	}
}

func (f *fakeWorker) handle(msg protocol.Message) {
	if msg.Op() == protocol.OpResponse {
		f.mu.Lock()
		ch := f.pending[msg.Seq()]
		delete(f.pending, msg.Seq())
		f.mu.Unlock()
		if ch != nil {
			ch <- msg
		}
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, msg)
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
	if f.mute {
		return
	}
	switch msg.Op() {
	case protocol.OpGetWorkerInfo:
		if f.rawInfo != nil {
			f.respond(msg.Seq(), f.rawInfo, "")
		} else {
			f.respond(msg.Seq(), f.info, "")
		}
	case protocol.OpKeepalive:
		if !f.ignoreKeepalives.Load() {
			f.respond(msg.Seq(), nil, "")
		}
	case protocol.OpStartCommand:
		c := fakeCommand{Args: map[string]any{}}
		c.ID, _ = msg["command_id"].(string)
		c.Name, _ = msg["command_name"].(string)
		c.Builder, _ = msg["builder_name"].(string)
		if a, ok := msg["args"].(map[string]any); ok {
			c.Args = a
		}
		f.respond(msg.Seq(), nil, "")
		go f.run(c)
	default:
		f.respond(msg.Seq(), nil, "")
	}
}

func (f *fakeWorker) run(c fakeCommand) {
	switch {
	case c.Name == protocol.CmdListdir:
		files := f.listdir
		if files == nil {
			files = []any{}
		}
		f.update(c.ID, []any{"files", files}, []any{"rc", 0}, []any{"elapsed", 0.001})
		f.complete(c.ID, nil)
	case c.Name == protocol.CmdMkdir || f.onCommand == nil:
		f.update(c.ID, []any{"rc", 0}, []any{"elapsed", 0.001})
		f.complete(c.ID, nil)
	default:
		f.onCommand(f, c)
	}
}

// requestsOf returns the master's requests received so far with that op.
func (f *fakeWorker) requestsOf(op string) []protocol.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []protocol.Message
	for _, m := range f.requests {
		if op == "" || m.Op() == op {
			out = append(out, m)
		}
	}
	return out
}

// waitRequests waits until the master has sent at least n requests with
// that op, and returns them.
func (f *fakeWorker) waitRequests(op string, n int) []protocol.Message {
	f.tb.Helper()
	t := time.NewTimer(waitTimeout)
	defer t.Stop()
	for {
		if got := f.requestsOf(op); len(got) >= n {
			return got
		}
		select {
		case <-f.changed:
		case <-t.C:
			f.tb.Fatalf("fake worker %s: timed out waiting for %d %q requests", f.name, n, op)
		}
	}
}

func (f *fakeWorker) write(msg protocol.Message) error {
	frame, err := msg.Encode()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return f.ws.Write(ctx, websocket.MessageBinary, frame)
}

func (f *fakeWorker) respond(seq int64, result any, exception string) {
	m := protocol.Message{"op": protocol.OpResponse, "seq_number": seq, "result": result}
	if exception != "" {
		m["result"], m["is_exception"] = exception, true
	}
	f.write(m)
}

// send sends a request and returns the channel its response will come
// on, without waiting.
func (f *fakeWorker) send(msg protocol.Message) <-chan protocol.Message {
	ch := make(chan protocol.Message, 1)
	f.mu.Lock()
	f.seq++
	msg["seq_number"] = f.seq
	f.pending[f.seq] = ch
	f.mu.Unlock()
	if err := f.write(msg); err != nil {
		return nil
	}
	return ch
}

// call sends a request and waits for the master's response; it returns
// nil if the connection ends first.
func (f *fakeWorker) call(msg protocol.Message) protocol.Message {
	ch := f.send(msg)
	if ch == nil {
		return nil
	}
	select {
	case r := <-ch:
		return r
	case <-f.readerDone:
		return nil
	case <-f.stop:
		return nil
	}
}

// update sends [key, value] pairs for a command.
func (f *fakeWorker) update(id string, pairs ...[]any) protocol.Message {
	args := make([]any, len(pairs))
	for i, p := range pairs {
		args[i] = p
	}
	return f.call(protocol.Message{"op": protocol.OpUpdate, "command_id": id, "args": args})
}

func (f *fakeWorker) complete(id string, failure any) protocol.Message {
	return f.call(protocol.Message{"op": protocol.OpComplete, "command_id": id, "args": failure})
}

// silence stops the fake from reading: it answers nothing, not even pings,
// and keeps its TCP connection open.
func (f *fakeWorker) silence() { f.silentOnce.Do(func() { close(f.silent) }) }

// waitClosed waits until the master has closed the connection and returns
// the error the fake's read ended with.
func (f *fakeWorker) waitClosed() error {
	f.tb.Helper()
	select {
	case <-f.readerDone:
	case <-time.After(waitTimeout):
		f.tb.Fatalf("fake worker %s: the master did not close the connection", f.name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readErr
}

// lines is a v7 output value.
func lines(text string) []any { return protocol.LinesValue(text, nil) }

// logBuffer keeps a master's log for assertions and copies it to the test
// log while the test runs.
type logBuffer struct {
	mu   sync.Mutex
	b    strings.Builder
	tb   testing.TB
	done bool
}

func (w *logBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if !w.done {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// testMaster is a master with a Listener on a loopback port.
type testMaster struct {
	*citest.Master
	l    *Listener
	addr string
	logs *logBuffer
}

// startMaster starts a master from cfg with l (a new Listener if nil) as
// its worker listener on 127.0.0.1.
func startMaster(tb testing.TB, cfg ci.MasterConfig, l *Listener) *testMaster {
	tb.Helper()
	if l == nil {
		l = &Listener{}
	}
	if l.Listener == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(tb, err)
		l.Listener = ln
	}
	ln := l.Listener
	logs := &logBuffer{tb: tb}
	tb.Cleanup(func() {
		logs.mu.Lock()
		logs.done = true
		logs.mu.Unlock()
	})
	if cfg.Logger == nil {
		cfg.Logger = citestLogger(logs)
	}
	cfg.Services = append(cfg.Services, l)
	m := citest.Start(tb, cfg, citest.Options{NoWorkers: true})
	return &testMaster{Master: m, l: l, addr: ln.Addr().String(), logs: logs}
}

// connected reports whether the worker called name is attached.
func (m *testMaster) connected(name string) bool {
	for _, w := range m.Workers() {
		if w.Name == name {
			return w.Connected
		}
	}
	return false
}

// waitAttached waits until the worker is attached and returns its
// connection.
func (m *testMaster) waitAttached(tb testing.TB, name string) *Conn {
	tb.Helper()
	m.WaitFor(tb, "worker "+name+" to attach", func() bool { return m.connected(name) })
	wc, _ := m.WorkerConn(name)
	c, ok := wc.(*Conn)
	require.True(tb, ok, "worker %s is attached with a %T", name, wc)
	return c
}

// attachFake connects a fake worker and waits until it is attached.
func (m *testMaster) attachFake(tb testing.TB, name string, o fakeOptions) (*fakeWorker, *Conn) {
	tb.Helper()
	f, err := dialFake(tb, m.addr, name, o)
	require.NoError(tb, err)
	return f, m.waitAttached(tb, name)
}

// fakeWorkers configures workers with the passwords dialFake uses.
func fakeWorkers(names ...string) []ci.WorkerConfig {
	out := make([]ci.WorkerConfig, len(names))
	for i, n := range names {
		out[i] = ci.WorkerConfig{Name: n, Password: "pw-" + n}
	}
	return out
}

// citestLogger logs everything to w.
func citestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// clockT0 is the time of the fake clocks of the liveness tests.
var clockT0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// onFakeClock puts cfg's master on a fake clock, which drives the
// connections' keepalives, silence and interrupt timeouts.
func onFakeClock(cfg ci.MasterConfig) (ci.MasterConfig, *citest.Clock) {
	clock := citest.NewClock(clockT0)
	cfg.Clock = clock
	return cfg, clock
}

// tick advances clock by d (a keepalive interval: the monitor of each
// connection runs) and waits until conn has heard from its worker at the
// new time, answering the keepalive or the ping.
func (m *testMaster) tick(tb testing.TB, clock *citest.Clock, conn *Conn, d time.Duration) {
	tb.Helper()
	clock.Advance(d)
	now := clock.Now().UnixNano()
	m.WaitFor(tb, "the worker's answer to a keepalive", func() bool { return conn.lastHeard.Load() == now })
}

// waitTimer waits until clock has a timer set for at.
func waitTimer(tb testing.TB, clock *citest.Clock, at time.Time) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.True(tb, clock.WaitTimer(ctx, at), "no timer set for %s", at)
}
