package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/worker/protocol"
)

// closeGrace bounds the WebSocket close handshake: past it, the TCP
// connection is closed without waiting for the worker's close frame.
const closeGrace = 2 * time.Second

// Limits of what a connection queues for and from its worker.
const (
	// maxOutFrames is how many frames may wait to be written to a worker;
	// a worker that lets more pile up is not reading and is dropped.
	maxOutFrames = 4096
	// maxOutBytes bounds the bytes waiting to be written to a worker.
	maxOutBytes = 64 << 20
	// maxCommandBacklog is how many bytes of a command's messages may wait
	// for the build step to handle them; past it, the connection stops
	// reading from the worker until the step catches up.
	maxCommandBacklog = 32 << 20
	// maxReadLength caps the bytes sent in answer to one update_read_file.
	maxReadLength = 8 << 20
)

// connConfig is what a Conn needs of its Listener.
type connConfig struct {
	clock            ci.Clock // the master's: keepalives, silence, interrupts
	timeout          time.Duration
	keepalive        time.Duration
	writeTimeout     time.Duration
	interruptTimeout time.Duration
	stats            *counters
	shared           *sharedInfo // what workers' infos have in common
}

// A Conn is the master's connection to one network worker: a ci.WorkerConn
// speaking msgpack_experimental_v7 over a WebSocket. The Listener creates
// it when a worker connects and attaches it to the master. Its methods are
// safe for concurrent use.
type Conn struct {
	name   string
	remote string
	cfg    connConfig
	log    connLog
	ws     *websocket.Conn
	raw    net.Conn // the hijacked connection under ws

	info    ci.WorkerInfo
	system  string
	environ map[string]string

	done    chan struct{} // closed when the connection is lost or closed
	cause   error         // why; set before done is closed; guarded by mu
	afters  []*afterDone  // what runs once done is closed; guarded by mu
	closing sync.Once
	wg      sync.WaitGroup // the reader, the writer and keepalives while they run, teardown
	exited  chan struct{}  // closed once wg is done
	onExit  func()         // called once exited is closed

	out    outbox
	sendMu sync.Mutex // orders sequence numbers and frames
	seq    int64      // last sequence number sent; guarded by sendMu

	// The monitor is a timer, so that an idle connection has no goroutine
	// but its reader.
	monitorMu     sync.Mutex
	monitorTimer  ci.Timer
	nextKeepalive time.Time

	mu       sync.Mutex
	pending  map[int64]chan protocol.Message // requests awaiting a response; nil if none
	cmds     map[string]*command             // running commands by id; nil if none
	nextID   int64                           // command ids
	builders map[string]string               // builder → its folder on the worker
	open     bool                            // handshake done: worker requests allowed

	lastHeard atomic.Int64 // UnixNano of the last frame or pong received
	stalled   atomic.Bool  // the reader waits for a command to catch up

	unknownResponses atomic.Int64
	unknownCommands  atomic.Int64
}

var _ ci.WorkerConn = (*Conn)(nil)

func newConn(name, remote string, cfg connConfig, log *slog.Logger) *Conn {
	c := &Conn{
		name:     name,
		remote:   remote,
		cfg:      cfg,
		log:      connLog{base: log, name: name, remote: remote},
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
		builders: map[string]string{},
	}
	c.seq = -1
	c.heard()
	return c
}

// ctx returns a context that ends when the connection does. It is the
// connection itself rather than a context kept with it: contexts derived
// from it register with the connection (see AfterDone), and an idle
// connection keeps none.
func (c *Conn) ctx() context.Context { return connCtx{c} }

// connCtx is the context of a connection, done once the connection has
// ended.
type connCtx struct{ c *Conn }

func (connCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x connCtx) Done() <-chan struct{}     { return x.c.done }
func (connCtx) Value(any) any               { return nil }

func (x connCtx) Err() error {
	select {
	case <-x.c.done:
		return context.Canceled
	default:
		return nil
	}
}

// AfterFunc lets the context package register the contexts derived from
// this one with the connection, without a goroutine each.
func (x connCtx) AfterFunc(f func()) (stop func() bool) { return x.c.AfterDone(f) }

// start runs the connection once ws is set: its reader, and its monitor.
// The writer runs while there are frames to write. Once the connection
// ends and they have all stopped, exited is closed and onExit called.
func (c *Conn) start() {
	c.wg.Add(1)
	go c.reader()
	c.monitorMu.Lock()
	c.nextKeepalive = c.cfg.clock.Now().Add(c.cfg.keepalive)
	c.monitorTimer = c.cfg.clock.AfterFunc(c.cfg.keepalive, c.monitor)
	c.monitorMu.Unlock()
	c.AfterDone(func() {
		c.monitorMu.Lock()
		c.monitorTimer.Stop()
		c.monitorMu.Unlock()
		c.wg.Wait()
		close(c.exited)
		if c.onExit != nil {
			c.onExit()
		}
	})
}

// goTracked runs f in a goroutine counted in wg, unless the connection
// has ended. (wg's count may grow from zero only before shutdown, which
// closes done with mu held, so never once the closer waits on wg.)
func (c *Conn) goTracked(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return false
	default:
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// Name implements ci.WorkerConn.
func (c *Conn) Name() string { return c.name }

// RemoteAddr returns the worker's network address.
func (c *Conn) RemoteAddr() string { return c.remote }

// Info implements ci.WorkerConn: the worker's answer to get_worker_info,
// as decoded, but for "environ", a map[string]string (the master keeps it
// out of its store). The caller must not modify it.
func (c *Conn) Info() ci.WorkerInfo { return c.info }

// Done implements ci.WorkerConn.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it lasts. The error
// wraps ci.ErrWorkerLost.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.cause
	default:
		return nil
	}
}

// Close implements ci.WorkerConn: it closes the WebSocket (with a close
// handshake bounded to a couple of seconds) and returns once the
// connection's goroutines have stopped. Running commands fail with an error
// wrapping ci.ErrWorkerLost. It must not be called from a RemoteCommand's
// OnUpdate.
func (c *Conn) Close() error {
	c.shutdown(fmt.Errorf("worker %s: connection closed by the master: %w", c.name, ci.ErrWorkerLost), websocket.StatusGoingAway, "master closed the connection")
	<-c.exited
	return nil
}

// ConnStats counts what a connection dropped.
type ConnStats struct {
	// UnknownResponses counts responses whose sequence number matched no
	// request waiting: late answers to requests the master gave up on.
	UnknownResponses int64
	// UnknownCommands counts worker requests naming a command that is not
	// running: late messages of an interrupted or finished command. Each
	// was answered with an exception.
	UnknownCommands int64
}

// Stats returns what the connection has dropped so far.
func (c *Conn) Stats() ConnStats {
	return ConnStats{UnknownResponses: c.unknownResponses.Load(), UnknownCommands: c.unknownCommands.Load()}
}

// lost returns the error of an operation attempted on a closed connection.
func (c *Conn) lost(doing string) error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return nil
}

func (c *Conn) heard() { c.lastHeard.Store(c.cfg.clock.Now().UnixNano()) }

// LastHeard implements ci.HeardReporter: when the last frame or pong came
// from the worker.
func (c *Conn) LastHeard() time.Time { return time.Unix(0, c.lastHeard.Load()) }

var _ ci.HeardReporter = (*Conn)(nil)

// shutdown ends the connection once, for cause (which must wrap
// ci.ErrWorkerLost). A zero code closes the TCP connection at once;
// otherwise the WebSocket is closed with that status and reason.
func (c *Conn) shutdown(cause error, code websocket.StatusCode, reason string) {
	c.closing.Do(func() {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.teardown(code, reason)
		}()
		c.mu.Lock()
		c.cause = cause
		close(c.done)
		afters := c.afters
		c.afters = nil
		c.mu.Unlock()
		for _, a := range afters {
			go a.f()
		}
	})
}

// fail closes the connection for a reason worth a warning: a protocol
// violation, a silent worker.
func (c *Conn) fail(counter *atomic.Int64, code websocket.StatusCode, reason string, err error) {
	select {
	case <-c.done:
		return
	default:
	}
	// Logged, then counted: whoever sees the count finds the reason.
	c.log.Warn("closing worker connection", "reason", err)
	if counter != nil {
		counter.Add(1)
	}
	c.shutdown(fmt.Errorf("worker %s: %v: %w", c.name, err, ci.ErrWorkerLost), code, reason)
}

func (c *Conn) teardown(code websocket.StatusCode, reason string) {
	if c.ws == nil {
		if c.raw != nil {
			c.raw.Close()
		}
		return
	}
	if code == 0 {
		if c.raw != nil {
			c.raw.Close()
		}
		c.ws.CloseNow()
		return
	}
	closed := make(chan struct{})
	go func() {
		c.ws.Close(code, reason)
		close(closed)
	}()
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		if c.raw != nil {
			c.raw.Close()
		}
		<-closed
	}
}

// frameBuffers hold frames while they are decoded, and an update's frame
// until the update is applied (its output text is not copied out of it).
// They are shared by the connections rather than kept by each: an idle
// connection holds none, and a busy one reads into a buffer already grown
// instead of growing a new one for each frame.
var frameBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledFrame is the largest buffer put back in frameBuffers.
const maxPooledFrame = 1 << 20

// putFrame gives a frame's buffer back to frameBuffers: nothing may use
// the frame any more, nor the output text parsed from it.
func putFrame(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledFrame {
		buf.Reset()
		frameBuffers.Put(buf)
	}
}

// readFrame reads the next frame into a buffer from frameBuffers and
// parses it with protocol.ParseMessageShared. When the message's output
// text shares the buffer (shares), the caller gives the buffer back
// (putFrame) only once that text is used, or leaves it to the garbage
// collector; otherwise at once.
func (c *Conn) readFrame() (typ websocket.MessageType, msg protocol.Message, buf *bytes.Buffer, shares bool, err error) {
	typ, r, err := c.ws.Reader(context.Background())
	if err != nil {
		return 0, nil, nil, false, err
	}
	buf = frameBuffers.Get().(*bytes.Buffer)
	if _, err := buf.ReadFrom(r); err != nil {
		putFrame(buf)
		return 0, nil, nil, false, err
	}
	c.heard()
	if typ != websocket.MessageBinary {
		return typ, nil, buf, false, nil
	}
	msg, shares, err = protocol.ParseMessageShared(buf.Bytes())
	if err != nil {
		err = errMalformed{fmt.Errorf("protocol violation: malformed frame of %d bytes: %w", buf.Len(), err)}
	}
	return typ, msg, buf, shares, err
}

// errMalformed is a frame that is not a message.
type errMalformed struct{ error }

// reader reads the worker's frames until the connection ends.
func (c *Conn) reader() {
	defer c.wg.Done()
	for {
		typ, msg, buf, shares, err := c.readFrame()
		var bad errMalformed
		if errors.As(err, &bad) {
			c.fail(&c.cfg.stats.protocolErrors, websocket.StatusProtocolError, "malformed frame", bad.error)
			return
		}
		if err != nil {
			c.readError(err)
			return
		}
		if typ != websocket.MessageBinary {
			c.fail(&c.cfg.stats.protocolErrors, websocket.StatusUnsupportedData, "binary messages only",
				fmt.Errorf("protocol violation: a %s message (frames must be binary)", typ))
			return
		}
		if err := c.dispatch(msg, buf, shares); err != nil {
			c.fail(&c.cfg.stats.protocolErrors, websocket.StatusPolicyViolation, "protocol violation",
				fmt.Errorf("protocol violation: %w", err))
			return
		}
		// A frame no text shares is done with. One an update took is
		// given back once the update is applied; any other that text
		// shares is left to the garbage collector.
		if !shares {
			putFrame(buf)
		}
	}
}

func (c *Conn) readError(err error) {
	select {
	case <-c.done:
		return // closed by us
	default:
	}
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.fail(&c.cfg.stats.protocolErrors, 0, "", fmt.Errorf("protocol violation: frame over the %d-byte limit", protocol.MaxFrameSize))
	case websocket.CloseStatus(err) != -1:
		c.log.Info("worker closed the connection", "status", websocket.CloseStatus(err))
		c.shutdown(fmt.Errorf("worker %s closed the connection: %w", c.name, ci.ErrWorkerLost), 0, "")
	default:
		c.log.Info("worker connection broken", "err", err)
		c.shutdown(fmt.Errorf("worker %s: connection broken: %v: %w", c.name, err, ci.ErrWorkerLost), 0, "")
	}
}

// dispatch handles one message from the worker, read from frame; an
// update whose output text shares frame (shares) takes it, to give back
// once it is applied. An error is a protocol violation: the caller closes
// the connection.
func (c *Conn) dispatch(msg protocol.Message, frame *bytes.Buffer, shares bool) error {
	op := msg.Op()
	if op == protocol.OpResponse {
		return c.handleResponse(msg)
	}
	c.mu.Lock()
	open := c.open
	c.mu.Unlock()
	if !open {
		return fmt.Errorf("worker sent %q before the handshake ended", op)
	}
	switch op {
	case protocol.OpUpdate, protocol.OpComplete,
		protocol.OpUpdateUploadFileWrite, protocol.OpUpdateUploadFileClose, protocol.OpUpdateUploadFileUtime,
		protocol.OpUpdateUploadDirectoryWrite, protocol.OpUpdateUploadDirectoryUnpack,
		protocol.OpUpdateReadFile, protocol.OpUpdateReadFileClose:
		ev, err := parseEvent(msg, frame.Len())
		if err != nil {
			return err
		}
		// An update keeps the frame its text shares until it is
		// applied (or dropped).
		if shares && ev.op == protocol.OpUpdate {
			ev.frame = frame
		}
		c.mu.Lock()
		cmd := c.cmds[ev.commandID]
		c.mu.Unlock()
		if cmd == nil || !c.push(cmd, ev) {
			c.unknownCommands.Add(1)
			c.cfg.stats.unknownCommands.Add(1)
			c.log.Debug("message for a command that is not running", "op", op, "command_id", ev.commandID)
			c.respond(msg.Seq(), nil, fmt.Errorf("unknown command_id %q", ev.commandID))
		}
	case protocol.OpKeepalive:
		c.respond(msg.Seq(), nil, nil)
	default:
		c.log.Debug("worker sent an unknown op", "op", op)
		c.respond(msg.Seq(), nil, fmt.Errorf("Command %s does not exist.", op))
	}
	return nil
}

// push queues ev for cmd, waiting while cmd's backlog is full (the worker
// is then not read from). It reports false if cmd has ended.
func (c *Conn) push(cmd *command, ev *event) bool {
	cmd.mu.Lock()
	defer cmd.mu.Unlock()
	for cmd.backlog >= maxCommandBacklog && !cmd.ended {
		c.stalled.Store(true)
		cmd.space.Wait()
	}
	c.stalled.Store(false)
	if cmd.ended {
		return false
	}
	cmd.queue = append(cmd.queue, ev)
	cmd.backlog += ev.size
	select {
	case cmd.ready <- struct{}{}:
	default:
	}
	return true
}

func (c *Conn) handleResponse(msg protocol.Message) error {
	if v, ok := msg["is_exception"]; ok {
		if _, isBool := v.(bool); !isBool {
			return fmt.Errorf("op %q: \"is_exception\" is a %T, not a boolean", msg.Op(), v)
		}
	}
	seq := msg.Seq()
	c.mu.Lock()
	ch := c.pending[seq]
	c.forgetLocked(seq)
	c.mu.Unlock()
	if ch == nil {
		c.unknownResponses.Add(1)
		c.cfg.stats.unknownResponses.Add(1)
		c.log.Debug("response to no request waiting", "seq_number", seq)
		return nil
	}
	ch <- msg
	return nil
}

// outbox holds the frames waiting to be written to the worker.
type outbox struct {
	mu      sync.Mutex
	frames  [][]byte
	bytes   int
	writing bool // a writer runs; it takes the frames queued until none are left
}

// enqueue queues a frame for the writer, starting one if none runs; it
// never blocks. A worker that lets too much pile up is dropped.
func (c *Conn) enqueue(frame []byte) error {
	if err := c.lost("send"); err != nil {
		return err
	}
	o := &c.out
	o.mu.Lock()
	if len(o.frames) >= maxOutFrames || o.bytes+len(frame) > maxOutBytes {
		o.mu.Unlock()
		c.fail(&c.cfg.stats.lost, 0, "", fmt.Errorf("the worker does not read what it is sent (%d frames waiting)", maxOutFrames))
		return c.lost("send")
	}
	o.frames = append(o.frames, frame)
	o.bytes += len(frame)
	ended := false
	if !o.writing {
		o.writing = c.goTracked(c.writer)
		ended = !o.writing
	}
	o.mu.Unlock()
	if ended {
		return c.lost("send")
	}
	return nil
}

// writer writes the queued frames, each within the write timeout, until
// none are left.
func (c *Conn) writer() {
	o := &c.out
	for {
		o.mu.Lock()
		frames := o.frames
		o.frames, o.bytes = nil, 0
		if len(frames) == 0 {
			o.writing = false
		}
		o.mu.Unlock()
		if len(frames) == 0 {
			return
		}
		for _, f := range frames {
			// The deadline closes the connection itself (rather than
			// through the write's context), so that the reason is known
			// before the reader sees the connection closed.
			t := time.AfterFunc(c.cfg.writeTimeout, func() {
				c.fail(&c.cfg.stats.lost, 0, "", fmt.Errorf("write timed out after %s: the worker does not read", c.cfg.writeTimeout))
			})
			err := c.ws.Write(context.Background(), websocket.MessageBinary, f)
			t.Stop()
			if err != nil {
				select {
				case <-c.done:
					return
				default:
				}
				c.log.Info("worker connection broken", "err", err)
				c.shutdown(fmt.Errorf("worker %s: write: %v: %w", c.name, err, ci.ErrWorkerLost), 0, "")
				return
			}
		}
	}
}

// send encodes and queues a message.
func (c *Conn) send(msg protocol.Message) error {
	frame, err := msg.Encode()
	if err != nil {
		return fmt.Errorf("encode %s: %w", msg.Op(), err)
	}
	return c.enqueue(frame)
}

// respond answers a worker request.
func (c *Conn) respond(seq int64, result any, err error) {
	if serr := c.send(protocol.Response(seq, result, err)); serr != nil {
		c.log.Debug("could not answer the worker", "seq_number", seq, "err", serr)
	}
}

// request sends a request and returns the channel its response will
// arrive on, and its sequence number.
func (c *Conn) request(msg protocol.Message) (<-chan protocol.Message, int64, error) {
	if err := c.lost("send " + msg.Op()); err != nil {
		return nil, 0, err
	}
	ch := make(chan protocol.Message, 1)
	c.sendMu.Lock()
	defer c.sendMu.Unlock() // frames leave in sequence order
	c.seq++
	seq := c.seq
	msg["seq_number"] = seq
	frame, err := msg.Encode()
	if err != nil {
		return nil, 0, fmt.Errorf("encode %s: %w", msg.Op(), err)
	}
	c.mu.Lock()
	if c.pending == nil {
		c.pending = map[int64]chan protocol.Message{}
	}
	c.pending[seq] = ch
	c.mu.Unlock()
	if err := c.enqueue(frame); err != nil {
		c.forget(seq)
		return nil, 0, err
	}
	return ch, seq, nil
}

// forget stops waiting for the response to seq.
func (c *Conn) forget(seq int64) {
	c.mu.Lock()
	c.forgetLocked(seq)
	c.mu.Unlock()
}

// forgetLocked is forget with mu held. An idle connection, waiting for no
// response, keeps no table.
func (c *Conn) forgetLocked(seq int64) {
	delete(c.pending, seq)
	if len(c.pending) == 0 {
		c.pending = nil
	}
}

// call sends a request and waits for its response, until ctx ends. A
// response that is an exception is returned as an error.
func (c *Conn) call(ctx context.Context, msg protocol.Message) (any, error) {
	op := msg.Op()
	ch, seq, err := c.request(msg)
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if err := r.ResponseError(); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		return r["result"], nil
	case <-ctx.Done():
		c.forget(seq)
		return nil, fmt.Errorf("%s: no answer from worker %s: %w", op, c.name, context.Cause(ctx))
	case <-c.done:
		return nil, c.lost(op)
	}
}

// Ping implements ci.WorkerConn: it sends print "ping", as Buildbot's master
// does before each build, and waits for the answer until ctx ends or the
// connection's timeout passes.
func (c *Conn) Ping(ctx context.Context) error {
	if err := c.lost("ping"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	_, err := c.call(ctx, protocol.Message{"op": protocol.OpPrint, "message": "ping"})
	if err != nil {
		return fmt.Errorf("ping worker %s: %w", c.name, err)
	}
	return nil
}

// Shutdown implements ci.WorkerShutdowner: it asks the worker to stop (the
// protocol's shutdown message, which buildbot-worker and kiln-worker obey
// by ending their process) and waits for its answer.
func (c *Conn) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	_, err := c.call(ctx, protocol.Message{"op": protocol.OpShutdown})
	if err != nil && errors.Is(err, ci.ErrWorkerLost) {
		// The worker went away as asked, before its answer arrived.
		select {
		case <-c.Done():
			return nil
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("shut down worker %s: %w", c.name, err)
	}
	return nil
}

var _ ci.WorkerShutdowner = (*Conn)(nil)

// answerGrace is how long after a keepalive was due a worker that has not
// answered it counts as silent (Silence): the keepalive interval's quarter,
// at most 5 s.
func (c *Conn) answerGrace() time.Duration { return min(c.cfg.keepalive/4, 5*time.Second) }

// Silence implements ci.SilenceWatcher. A healthy worker is heard from at
// least once per keepalive interval, answering the keepalive; one not
// heard from for longer than that (and answerGrace) is silent, and is
// declared lost once the connection's timeout has passed since it was
// last heard. A master too slow to read what the worker sent does not
// make it silent.
func (c *Conn) Silence() (silent bool, since, lostAt time.Time) {
	select {
	case <-c.done:
		return false, time.Time{}, time.Time{}
	default:
	}
	last := time.Unix(0, c.lastHeard.Load())
	if c.stalled.Load() || c.cfg.clock.Now().Sub(last) <= c.cfg.keepalive+c.answerGrace() {
		return false, time.Time{}, time.Time{}
	}
	return true, last, last.Add(c.cfg.timeout)
}

// monitor keeps the connection alive and drops a silent worker: every
// keepalive interval it sends a WebSocket ping and a protocol keepalive;
// when nothing (frame or pong) has come from the worker for the timeout,
// the worker is lost. It runs when its timer fires, and sets the timer
// for its next run.
func (c *Conn) monitor() {
	c.monitorMu.Lock()
	defer c.monitorMu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	now := c.cfg.clock.Now()
	stalled := c.stalled.Load()
	if stalled {
		// The master is the slow side: the worker is not silent, and the
		// answers to a keepalive could not be read yet.
		c.heard()
	}
	if last := time.Unix(0, c.lastHeard.Load()); now.Sub(last) >= c.cfg.timeout {
		c.fail(&c.cfg.stats.lost, 0, "", fmt.Errorf("worker silent for %s (timeout %s): lost", now.Sub(last).Round(time.Millisecond), c.cfg.timeout))
		return
	}
	if !now.Before(c.nextKeepalive) {
		c.nextKeepalive = now.Add(c.cfg.keepalive)
		if !stalled {
			c.goTracked(c.keepalive)
		}
	}
	next := c.nextKeepalive
	if silentUntil := time.Unix(0, c.lastHeard.Load()).Add(c.cfg.timeout); silentUntil.Before(next) {
		next = silentUntil
	}
	c.monitorTimer = c.cfg.clock.AfterFunc(next.Sub(now), c.monitor)
}

// keepalive sends a WebSocket ping and a protocol keepalive, each with the
// connection's timeout; answers count as signs of life.
func (c *Conn) keepalive() {
	ctx, cancel := context.WithTimeout(c.ctx(), c.cfg.timeout)
	defer cancel()
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		if c.ws.Ping(ctx) == nil {
			c.heard()
		}
	}()
	if _, err := c.call(ctx, protocol.Message{"op": protocol.OpKeepalive}); err == nil {
		c.heard()
	}
	<-pinged
}

var _ ci.DoneNotifier = (*Conn)(nil)

// AfterDone implements ci.DoneNotifier: f runs in its own goroutine once
// the connection has ended (at once if it has), without a goroutine
// waiting for it meanwhile. stop, as context.AfterFunc's, unregisters f
// and reports whether it did so before f was started.
func (c *Conn) AfterDone(f func()) (stop func() bool) {
	a := &afterDone{f: f}
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	default:
	}
	c.afters = append(c.afters, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.afters, a)
		if i < 0 {
			return false
		}
		c.afters = slices.Delete(c.afters, i, i+1)
		if len(c.afters) == 0 {
			c.afters = nil
		}
		return true
	}
}

// afterDone is a function registered with AfterDone (a pointer, so that
// stop finds its own).
type afterDone struct{ f func() }

// connLog logs for one connection: its records carry the worker's name
// and address. It is not a logger With them, which would be one more
// handler per connection, kept for as long as the worker is connected.
type connLog struct {
	base         *slog.Logger
	name, remote string
}

func (l connLog) Debug(msg string, args ...any) { l.log(slog.LevelDebug, msg, args) }
func (l connLog) Info(msg string, args ...any)  { l.log(slog.LevelInfo, msg, args) }
func (l connLog) Warn(msg string, args ...any)  { l.log(slog.LevelWarn, msg, args) }

func (l connLog) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !l.base.Enabled(ctx, level) {
		return
	}
	l.base.Log(ctx, level, msg, append([]any{"worker", l.name, "remote", l.remote}, args...)...)
}
