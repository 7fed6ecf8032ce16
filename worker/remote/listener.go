package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/worker/protocol"
)

// Defaults of the Listener.
const (
	// DefaultTimeout is how long a worker may stay silent (no frame, no
	// pong) before it is declared lost.
	DefaultTimeout = 60 * time.Second
	// DefaultWriteTimeout bounds each frame written to a worker.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultInterruptTimeout is how long an interrupted command may take
	// to report its end.
	DefaultInterruptTimeout = 30 * time.Second
)

// The settings the master sends in set_worker_settings: Buildbot's, but
// for buffer_timeout and buffer_size. The worker sends output when it has
// buffer_size bytes or buffer_timeout seconds after the first, and at the
// end of the command. Buildbot's master sends 5 seconds, which makes the
// log of a command that writes little, followed live, come in bursts 5
// seconds apart; a fifth of a second keeps it live, and a command that
// writes a lot fills its buffer first anyway. Such a command's output
// comes in updates of buffer_size: 256 KiB rather than Buildbot's 64 KiB
// takes a quarter of the messages, answers and store writes, on both
// sides (kiln-worker reads a command that fills its pipe in pieces of
// that size too).
const (
	settingNewlineRE     = `(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)`
	settingMaxLineLength = 4096
	settingBufferTimeout = 0.2
	settingBufferSize    = 256 << 10
)

// maxNameInLog bounds how much of an unauthenticated worker name is logged.
const maxNameInLog = 64

// DefaultAddr is where a Listener accepts workers when its Addr is empty:
// Buildbot's worker port.
const DefaultAddr = ":9989"

// A Listener is the master's side of network workers, a ci.Service: it
// accepts workers on the master's worker port over WebSocket, checks their
// credentials, runs the attach handshake and attaches each to the master
// as a *Conn. See the package documentation for the protocol.
//
// The fields are its configuration, read when Run starts; all are
// optional.
type Listener struct {
	// Addr is where to listen; DefaultAddr if empty.
	Addr string
	// Listener, when set, is used instead of listening on Addr (tests use
	// one on 127.0.0.1:0). Run closes it.
	Listener net.Listener

	// TLSConfig serves wss:// with this configuration; CertFile and
	// KeyFile, when set, load a certificate into it (or into a new one),
	// and load it again when the files change (a renewed certificate is
	// served without a restart; see Reload).
	TLSConfig         *tls.Config
	CertFile, KeyFile string

	// Timeout is how long a worker may stay silent before it is lost: its
	// connection is closed and its builds end as RETRY (DefaultTimeout if
	// zero). It also bounds each ping and the attach handshake.
	Timeout time.Duration
	// KeepaliveInterval is how often the master sends a WebSocket ping and
	// a protocol keepalive (Timeout/4 if zero). It must be shorter than
	// Timeout.
	KeepaliveInterval time.Duration
	// WriteTimeout bounds each frame written to a worker
	// (DefaultWriteTimeout if zero): a worker that does not read is lost.
	WriteTimeout time.Duration
	// InterruptTimeout is how long RunCommand waits for an interrupted
	// command to complete (DefaultInterruptTimeout if zero).
	InterruptTimeout time.Duration

	// FreeFailures is how many failed logins one address may make before
	// it is locked out (DefaultFreeFailures if zero); negative disables
	// the lockouts. Lockouts start at one second and double with each
	// further failure, up to five minutes; a locked-out address is
	// answered 429 with Retry-After, without its credentials being
	// checked. A successful login, or a quarter of an hour without
	// failures, clears the address.
	FreeFailures int

	now func() time.Time // the throttle's clock (the master's if nil); tests set it

	mu       sync.Mutex
	running  bool
	certs    *certReloader // the certificate files, when CertFile is set
	stopping bool
	m        *ci.Master
	ctx      context.Context
	log      *slog.Logger
	cfg      connConfig
	timeout  time.Duration
	throttle *throttle
	conns    map[string]*Conn       // by worker name: the newest connection
	names    map[string]*sync.Mutex // serializes connections of one name
	handlers sync.WaitGroup
	// The attach handshakes: those waiting, and the goroutines that run
	// them (at most maxAttaching).
	attachMu      sync.Mutex
	attachQueue   []attachJob
	attachRunners int
	attachers     sync.WaitGroup
	exits         sync.WaitGroup // connections that have not exited
	stats         counters
}

var _ ci.Service = (*Listener)(nil)

// counters are the Listener's statistics.
type counters struct {
	accepted, attached, authFailures, throttled, duplicates atomic.Int64
	protocolErrors, lost                                    atomic.Int64
	unknownResponses, unknownCommands                       atomic.Int64
}

// Stats are a Listener's counts since it started.
type Stats struct {
	// Accepted counts WebSocket connections accepted (credentials good);
	// Attached those that completed the handshake and were attached.
	Accepted, Attached int64
	// AuthFailures counts logins refused with 401; Throttled requests
	// refused with 429; Duplicates connections refused with 409 because a
	// worker of that name answers on another connection.
	AuthFailures, Throttled, Duplicates int64
	// ProtocolErrors counts connections closed for a bad frame or
	// message; Lost those closed because the worker went silent or did not
	// read.
	ProtocolErrors, Lost int64
	// UnknownResponses and UnknownCommands sum the connections' ConnStats.
	UnknownResponses, UnknownCommands int64
}

// Stats returns the Listener's counts.
func (l *Listener) Stats() Stats {
	s := &l.stats
	return Stats{
		Accepted: s.accepted.Load(), Attached: s.attached.Load(),
		AuthFailures: s.authFailures.Load(), Throttled: s.throttled.Load(), Duplicates: s.duplicates.Load(),
		ProtocolErrors: s.protocolErrors.Load(), Lost: s.lost.Load(),
		UnknownResponses: s.unknownResponses.Load(), UnknownCommands: s.unknownCommands.Load(),
	}
}

// Conn returns the current connection of the worker called name, attached
// or in its handshake or waiting for it.
func (l *Listener) Conn(name string) (*Conn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.conns[name]
	return c, ok
}

var _ ci.NetworkService = (*Listener)(nil)

// ListensOnNetwork implements ci.NetworkService: the worker port is
// opened unless a Listener was given.
func (l *Listener) ListensOnNetwork() bool { return l.Listener == nil }

// Run implements ci.Service: it serves workers until ctx ends, then closes
// every connection and returns once they have all stopped.
func (l *Listener) Run(ctx context.Context, m *ci.Master) error {
	if err := l.setup(ctx, m); err != nil {
		if l.Listener != nil {
			l.Listener.Close()
		}
		return err
	}
	ln := l.Listener
	if ln == nil {
		addr := l.Addr
		if addr == "" {
			addr = DefaultAddr
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("worker listener: %w", err)
		}
	}
	tlsConfig, err := l.tlsConfig()
	if err != nil {
		ln.Close()
		return err
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	srv := &http.Server{
		Handler:           l,
		ReadHeaderTimeout: l.timeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	l.log.Info("listening for workers", "addr", ln.Addr().String(), "tls", tlsConfig != nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		err = nil
	case err = <-served:
		err = fmt.Errorf("worker listener: %w", err)
	}
	srv.Close()
	l.mu.Lock()
	l.stopping = true
	conns := make([]*Conn, 0, len(l.conns))
	for _, c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.shutdown(fmt.Errorf("worker %s: the master is stopping: %w", c.name, ci.ErrWorkerLost), websocket.StatusGoingAway, "master stopping")
		})
	}
	wg.Wait()
	l.handlers.Wait()
	l.attachers.Wait()
	l.exits.Wait()
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return err
}

func (l *Listener) setup(ctx context.Context, m *ci.Master) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return errors.New("worker listener: Run called twice")
	}
	timeout := l.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	keepalive := l.KeepaliveInterval
	if keepalive == 0 {
		keepalive = timeout / 4
	}
	if timeout < 0 || keepalive <= 0 || keepalive >= timeout {
		return fmt.Errorf("worker listener: KeepaliveInterval (%s) must be positive and shorter than Timeout (%s)", keepalive, timeout)
	}
	write := l.WriteTimeout
	if write <= 0 {
		write = DefaultWriteTimeout
	}
	interrupt := l.InterruptTimeout
	if interrupt <= 0 {
		interrupt = DefaultInterruptTimeout
	}
	free := l.FreeFailures
	if free == 0 {
		free = DefaultFreeFailures
	}
	now := l.now
	if now == nil {
		now = m.Clock().Now
	}
	l.running = true
	l.m = m
	l.ctx = ctx
	l.log = m.Logger().With("service", "workers")
	l.timeout = timeout
	l.cfg = connConfig{clock: m.Clock(), timeout: timeout, keepalive: keepalive, writeTimeout: write, interruptTimeout: interrupt, stats: &l.stats, shared: &sharedInfo{}}
	if free > 0 {
		l.throttle = newThrottle(free, DefaultLockout, DefaultMaxLockout, now)
	}
	l.conns = map[string]*Conn{}
	l.names = map[string]*sync.Mutex{}
	return nil
}

func (l *Listener) tlsConfig() (*tls.Config, error) {
	if l.CertFile == "" && l.KeyFile == "" {
		return l.TLSConfig, nil
	}
	r, err := newCertReloader(l.CertFile, l.KeyFile, l.log)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.certs = r
	l.mu.Unlock()
	cfg := &tls.Config{}
	if l.TLSConfig != nil {
		cfg = l.TLSConfig.Clone()
	}
	cfg.GetCertificate = r.getCertificate
	return cfg, nil
}

// Reload loads CertFile and KeyFile again now, if they changed, rather
// than at the next handshake after a second: for a SIGHUP handler.
func (l *Listener) Reload() {
	l.mu.Lock()
	r := l.certs
	l.mu.Unlock()
	if r != nil {
		r.reload()
	}
}

// ServeHTTP serves the WebSocket upgrade of a worker at "/".
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	if !l.running || l.stopping {
		l.mu.Unlock()
		http.Error(w, "the master is stopping", http.StatusServiceUnavailable)
		return
	}
	l.handlers.Add(1)
	l.mu.Unlock()
	defer l.handlers.Done()

	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	key := throttleKey(r.RemoteAddr)
	if wait := l.throttle.blocked(key); wait > 0 {
		l.stats.throttled.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		http.Error(w, "too many failed logins from this address; retry later", http.StatusTooManyRequests)
		return
	}
	name, password, ok := r.BasicAuth()
	wc, known := l.m.WorkerConfig(name)
	if !checkPassword(wc.Password, known && ok, password) {
		l.stats.authFailures.Add(1)
		logged := name
		if len(logged) > maxNameInLog {
			logged = logged[:maxNameInLog] + "..."
		}
		args := []any{"worker", logged, "remote", r.RemoteAddr}
		if known && wc.Password == "" {
			args = append(args, "note", "the worker has no password configured")
		}
		l.log.Warn("worker authentication failed", args...)
		if lockout := l.throttle.fail(key); lockout > 0 {
			l.log.Warn("too many failed worker logins; refusing the address for a while", "remote", r.RemoteAddr, "lockout", lockout)
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="kiln workers"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	l.throttle.succeed(key)
	l.serveWorker(w, r, name)
}

// serveWorker upgrades an authenticated worker's request, starts the
// connection and attaches it to the master.
func (l *Listener) serveWorker(w http.ResponseWriter, r *http.Request, name string) {
	log := connLog{base: l.log, name: name, remote: r.RemoteAddr}
	nameMu := l.nameLock(name)
	nameMu.Lock()
	replaced, err := l.checkDuplicate(name, log)
	if err != nil {
		nameMu.Unlock()
		l.stats.duplicates.Add(1)
		log.Warn("refusing a second connection of a connected worker", "reason", err)
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	c := newConn(name, r.RemoteAddr, l.cfg, l.log)
	hw := &hijackRecorder{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		OnPongReceived:  func(context.Context, []byte) { c.heard() },
	})
	if err != nil {
		nameMu.Unlock()
		log.Info("WebSocket upgrade failed", "err", err)
		return
	}
	l.stats.accepted.Add(1)
	c.ws, c.raw = ws, hw.conn
	ws.SetReadLimit(protocol.MaxFrameSize)
	c.onExit = func() {
		l.mu.Lock()
		if l.conns[name] == c {
			delete(l.conns, name)
		}
		l.mu.Unlock()
		log.Info("worker disconnected", "reason", c.Err())
		l.exits.Done()
	}
	l.mu.Lock()
	stopping := l.stopping
	l.conns[name] = c
	l.mu.Unlock()
	l.exits.Add(1) // before Run waits for exits: Run waits for this handler first
	c.start()
	nameMu.Unlock()
	if stopping {
		c.shutdown(fmt.Errorf("worker %s: the master is stopping: %w", name, ci.ErrWorkerLost), websocket.StatusGoingAway, "master stopping")
	}
	log.Info("worker connected")
	l.queueAttach(attachJob{c: c, replaced: replaced, log: log})
	// The connection goes on without this handler, so that net/http lets
	// go of the request; onExit cleans up after it.
}

// maxAttaching is how many attach handshakes a Listener runs at once. The
// others wait in a queue, each holding only its connection: a storm of
// workers connecting at once (after a restart of the master, or of the
// network) then does not hold a handler and its stack, and the garbage of
// a handshake, per worker all at once. Each waits for the worker's
// answers, at most the Listener's Timeout.
const maxAttaching = 64

// An attachJob is a connection waiting for its attach handshake.
type attachJob struct {
	c        *Conn
	replaced ci.WorkerConn
	log      connLog
}

// queueAttach queues j's handshake, starting a goroutine to run the queue
// if fewer than maxAttaching run.
func (l *Listener) queueAttach(j attachJob) {
	l.attachMu.Lock()
	defer l.attachMu.Unlock()
	l.attachQueue = append(l.attachQueue, j)
	if l.attachRunners < maxAttaching {
		l.attachRunners++
		l.attachers.Add(1)
		go l.runAttaches()
	}
}

// runAttaches runs the queued handshakes until none is left.
func (l *Listener) runAttaches() {
	defer l.attachers.Done()
	for {
		l.attachMu.Lock()
		if len(l.attachQueue) == 0 {
			l.attachQueue = nil
			l.attachRunners--
			l.attachMu.Unlock()
			return
		}
		j := l.attachQueue[0]
		l.attachQueue[0] = attachJob{}
		l.attachQueue = l.attachQueue[1:]
		l.attachMu.Unlock()
		l.attachOne(j)
	}
}

// attachOne runs j's handshake and attaches its connection, or closes it.
func (l *Listener) attachOne(j attachJob) {
	c, log := j.c, j.log
	if err := l.attach(c, j.replaced); err != nil {
		if c.Err() == nil {
			log.Warn("could not attach worker; closing its connection", "err", err)
			c.shutdown(fmt.Errorf("worker %s: attach: %v: %w", c.name, err, ci.ErrWorkerLost), websocket.StatusTryAgainLater, "could not attach")
		} else {
			log.Info("worker connection ended before it was attached", "err", c.Err())
		}
		return
	}
	l.stats.attached.Add(1)
}

func (l *Listener) nameLock(name string) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	mu := l.names[name]
	if mu == nil {
		mu = &sync.Mutex{}
		l.names[name] = mu
	}
	return mu
}

// checkDuplicate refuses a connection of a worker that is connected
// already, until that connection is closed or declared lost: a stalled
// worker keeps its name, so that whoever has its password (captured off
// the network, say) cannot take its place while it is away. The old
// connection is asked whether it answers, so that the refusal says so.
func (l *Listener) checkDuplicate(name string, log connLog) (ci.WorkerConn, error) {
	l.mu.Lock()
	var old ci.WorkerConn
	if c, ok := l.conns[name]; ok && c.Err() == nil {
		old = c
	}
	l.mu.Unlock()
	if old == nil {
		if c, ok := l.m.WorkerConn(name); ok {
			old = c
		}
	}
	if old == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.duplicatePing())
	var err error
	if c, ok := old.(*Conn); ok {
		// What Buildbot's master says to the old connection.
		_, err = c.call(ctx, protocol.Message{"op": protocol.OpPrint, "message": "master got a duplicate connection"})
	} else {
		err = old.Ping(ctx)
	}
	cancel()
	from := "another connection"
	if c, ok := old.(*Conn); ok {
		from = c.remote
	}
	state := "answers"
	if err != nil {
		state = "does not answer; it keeps the name until it is declared lost"
	}
	return nil, fmt.Errorf("worker %q is already connected from %s and %s", name, from, state)
}

// duplicatePing bounds the ping of a worker's old connection when a new
// one arrives.
func (l *Listener) duplicatePing() time.Duration {
	return min(5*time.Second, l.timeout/4)
}

// attach runs the handshake and attaches c to the master, within the
// handshake deadline.
func (l *Listener) attach(c *Conn, replaced ci.WorkerConn) error {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx(), cancel)
	defer stop()
	if err := c.handshake(ctx); err != nil {
		return err
	}
	for {
		err := l.m.AttachWorker(ctx, c)
		if !errors.Is(err, ci.ErrWorkerAttached) {
			return err
		}
		// Another connection holds the name: wait if it is on its way
		// out, as the one just replaced is.
		cur, ok := l.m.WorkerConn(c.name)
		if ok && cur != replaced {
			select {
			case <-cur.Done():
			default:
				return err
			}
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("attach: %w", context.Cause(ctx))
		}
	}
}

// handshake greets the worker as Buildbot's master does: print "attached",
// get_worker_info, set_worker_settings. Then the worker may send requests.
func (c *Conn) handshake(ctx context.Context) error {
	if _, err := c.call(ctx, protocol.Message{"op": protocol.OpPrint, "message": "attached"}); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	res, err := c.call(ctx, protocol.Message{"op": protocol.OpGetWorkerInfo})
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	info, ok := res.(map[string]any)
	if !ok {
		err := fmt.Errorf("protocol violation: get_worker_info returned a %T, not a map", res)
		c.fail(&c.cfg.stats.protocolErrors, websocket.StatusPolicyViolation, "protocol violation", err)
		return err
	}
	basedir, _ := info["basedir"].(string)
	if basedir == "" {
		err := fmt.Errorf("protocol violation: get_worker_info has no basedir")
		c.fail(&c.cfg.stats.protocolErrors, websocket.StatusPolicyViolation, "protocol violation", err)
		return err
	}
	if s, ok := info["system"]; ok {
		if _, isString := s.(string); !isString {
			err := fmt.Errorf("protocol violation: get_worker_info's system is a %T", s)
			c.fail(&c.cfg.stats.protocolErrors, websocket.StatusPolicyViolation, "protocol violation", err)
			return err
		}
	}
	// Kept for as long as the worker is connected: what it has in common
	// with other workers is shared with them, and the environment is kept
	// once, as strings, rather than also as decoded.
	shared, environ := c.cfg.shared.share(info, ci.WorkerInfo(info).Environ())
	c.info = ci.WorkerInfo(shared)
	c.system = c.info.System()
	c.environ = environ
	c.info["environ"] = c.environ
	_, err = c.call(ctx, protocol.Message{"op": protocol.OpSetWorkerSettings, "args": map[string]any{
		"newline_re":      settingNewlineRE,
		"max_line_length": settingMaxLineLength,
		"buffer_timeout":  settingBufferTimeout,
		"buffer_size":     settingBufferSize,
	}})
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	c.mu.Lock()
	c.open = true
	c.mu.Unlock()
	c.log.Info("worker handshake done", "version", c.info["version"], "system", c.system)
	return nil
}

// hijackRecorder keeps the connection the WebSocket upgrade hijacks, so
// that it can be closed without waiting for a close handshake, and gives
// the WebSocket smaller buffers than net/http's (whose own then go as
// garbage with the request).
type hijackRecorder struct {
	http.ResponseWriter
	conn net.Conn
}

// The WebSocket's buffers, kept for as long as the worker is connected:
// net/http's are 4 KiB each. On a socket (a lazyConn) they are of the
// smallest size: the lazyConn buffers, only while it reads or writes.
// Otherwise (TLS) frames larger than a buffer are read and written past
// it (a frame larger than the write buffer takes two writes to the
// connection instead of one), so the size matters only for the many
// small ones (responses, prints, keepalives, the start of a command),
// which fit.
const (
	readBufferSize  = 1 << 10
	writeBufferSize = 1 << 10
	// lazyBufioSize is bufio's smallest reader (what the WebSocket reads
	// a frame's header into).
	lazyBufioSize = 16
)

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be hijacked")
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return c, rw, err
	}
	h.conn = c
	// What the worker sent after its request, if anything, is read first.
	var early []byte
	if n := rw.Reader.Buffered(); n > 0 {
		p, _ := rw.Reader.Peek(n)
		early = bytes.Clone(p)
	}
	if lc := newLazyConn(c, early); lc != nil {
		return lc, bufio.NewReadWriter(bufio.NewReaderSize(lc, lazyBufioSize), bufio.NewWriterSize(lc, lazyBufioSize)), nil
	}
	// The early bytes must be in the new reader's buffer, not only behind
	// it: the WebSocket takes what is buffered and resets the reader onto c.
	br := bufio.NewReaderSize(c, readBufferSize)
	if n := len(early); n > 0 {
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(early), c), max(n, readBufferSize))
		if _, err := br.Peek(n); err != nil {
			return c, nil, fmt.Errorf("keeping what the worker sent early: %w", err)
		}
	}
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(c, writeBufferSize)), nil
}
