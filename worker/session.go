package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kilnci/kiln/worker/command"
	"github.com/kilnci/kiln/worker/protocol"
)

// errConnLost is wrapped by the errors of requests a connection could not
// finish because it is gone.
var errConnLost = errors.New("connection to the master lost")

// A remoteError is a request the master answered with an exception.
type remoteError struct {
	op  string
	msg any
}

func (e *remoteError) Error() string { return fmt.Sprintf("master refused %s: %v", e.op, e.msg) }

// connectResult is how one connection ended.
type connectResult struct {
	attached bool  // the master set the worker up: the backoff starts again
	shutdown bool  // the master asked the worker to shut down
	refused  bool  // the master answered, and refused the worker
	err      error // why the connection ended
}

// connect dials the master and serves the connection until it ends.
func (a *agent) connect(ctx context.Context) connectResult {
	ws, bc, err := a.dial(ctx)
	if err != nil {
		if errors.Is(err, ErrUnauthorized) {
			a.log.Error("cannot attach: check the worker's name and password against the master's configuration", "err", err)
		}
		return connectResult{err: err, refused: errors.Is(err, errRefused)}
	}
	a.log.Info("connected to master", "master", a.url)
	s := newSession(a, ws)
	s.bc = bc
	return s.serve(ctx)
}

// A session is one connection to the master. One goroutine reads frames
// and handles the master's requests in order; each command runs in its
// own goroutine and makes its requests through call.
type session struct {
	a   *agent
	ws  *websocket.Conn
	bc  *batchConn // what ws runs on, if it is known
	log *slog.Logger

	// writeMu is held while a frame is written, so that requests go out
	// in the order of their sequence numbers.
	writeMu sync.Mutex
	nextSeq int64 // guarded by writeMu

	mu       sync.Mutex
	pending  map[int64]chan protocol.Message // requests awaiting their response
	cmds     map[string]context.CancelFunc   // running commands by command_id
	opts     command.Options                 // from set_worker_settings
	attached bool
	stopping bool  // no new commands
	cause    error // the first failure that broke the connection
	lost     error // why the connection ended, once it has

	cmdWG    sync.WaitGroup // running commands
	done     chan struct{}  // closed when the connection has ended
	shutdown chan struct{}  // closed when the master asks for a shutdown
	shutOnce sync.Once
}

func newSession(a *agent, ws *websocket.Conn) *session {
	ws.SetReadLimit(protocol.MaxFrameSize)
	return &session{
		a:       a,
		ws:      ws,
		log:     a.log,
		pending: map[int64]chan protocol.Message{},
		cmds:    map[string]context.CancelFunc{},
		opts: command.Options{
			BaseDir:    a.baseDir,
			Unconfined: a.w.Unconfined,
			Env:        a.env,
			Logger:     a.log,
			OnGroup:    a.onGroup(),
		},
		done:     make(chan struct{}),
		shutdown: make(chan struct{}),
	}
}

// serve reads and handles the master's frames until the connection ends,
// ctx ends, or the master asks for a shutdown; in the last two cases the
// running commands are interrupted and the connection closed first.
func (s *session) serve(ctx context.Context) connectResult {
	go s.read()
	var res connectResult
	select {
	case <-s.done:
		s.cmdWG.Wait()
	case <-ctx.Done():
		s.stop("worker stopping")
	case <-s.shutdown:
		s.stop("worker shutting down")
		res.shutdown = true
	}
	s.mu.Lock()
	res.attached, res.err = s.attached, s.lost
	s.mu.Unlock()
	if !res.shutdown && ctx.Err() == nil {
		s.log.Warn("connection to master lost", "err", res.err)
	}
	return res
}

// stop interrupts the running commands, gives them stopGrace to report
// how they ended, and closes the connection.
func (s *session) stop(reason string) {
	s.mu.Lock()
	s.stopping = true
	for _, cancel := range s.cmds {
		cancel()
	}
	n := len(s.cmds)
	s.mu.Unlock()
	if n > 0 {
		s.log.Info("interrupting running commands", "count", n, "reason", reason)
		finished := make(chan struct{})
		go func() { s.cmdWG.Wait(); close(finished) }()
		t := time.NewTimer(stopGrace)
		select {
		case <-finished:
		case <-s.done:
		case <-t.C:
			s.log.Warn("interrupted commands did not complete; closing the connection anyway")
		}
		t.Stop()
	}
	s.ws.Close(websocket.StatusGoingAway, reason)
	<-s.done
	s.cmdWG.Wait()
}

// read reads frames until the connection ends, then fails what still
// waits on it.
func (s *session) read() {
	err := s.readLoop()
	// A write that failed closed the connection; wait for it to record
	// why. (Writes end quickly once the connection is closed.)
	s.writeMu.Lock()
	s.writeMu.Unlock()
	s.mu.Lock()
	s.lost = err
	if s.cause != nil {
		s.lost = s.cause // the read failed because of it
	}
	for _, cancel := range s.cmds {
		cancel()
	}
	s.mu.Unlock()
	close(s.done)
	s.ws.CloseNow()
}

func (s *session) readLoop() error {
	for {
		typ, frame, err := s.ws.Read(context.Background())
		if err != nil {
			if st := websocket.CloseStatus(err); st != -1 {
				return fmt.Errorf("the master closed the connection (status %d)", st)
			}
			return fmt.Errorf("read: %w", err)
		}
		if typ != websocket.MessageBinary {
			return s.malformed(errors.New("a text frame; the protocol uses binary frames"))
		}
		msg, err := protocol.ParseMessage(frame)
		if err != nil {
			return s.malformed(err)
		}
		if msg.Op() == protocol.OpResponse {
			if err := s.deliver(msg); err != nil {
				return s.malformed(err)
			}
			continue
		}
		s.handle(msg)
	}
}

// malformed closes the connection over a frame that breaks the protocol.
func (s *session) malformed(err error) error {
	s.log.Error("malformed frame from the master: closing the connection", "err", err)
	s.ws.Close(websocket.StatusProtocolError, "malformed frame")
	return fmt.Errorf("malformed frame from the master: %w", err)
}

// deliver hands a response to the request it answers.
func (s *session) deliver(msg protocol.Message) error {
	s.mu.Lock()
	ch, ok := s.pending[msg.Seq()]
	delete(s.pending, msg.Seq())
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("a response to request %d, which is not awaiting one", msg.Seq())
	}
	ch <- msg // buffered: never blocks
	return nil
}

// frameBuffers hold frames while they are written: output updates are
// encoded into a buffer already grown rather than a new one each time.
var frameBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledFrame is the largest buffer put back in frameBuffers.
const maxPooledFrame = 1 << 20

// write writes one frame; the caller holds writeMu.
func (s *session) write(m protocol.Message) error {
	buf := frameBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledFrame {
			frameBuffers.Put(buf)
		}
	}()
	b, err := protocol.AppendEncode((*buf)[:0], map[string]any(m))
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Op(), err)
	}
	*buf = b
	ctx, cancel := context.WithTimeout(context.Background(), s.a.writeTO)
	defer cancel()
	err = s.writeFrame(ctx, b)
	if err != nil {
		// The connection is closed now: the reading fails next.
		err = fmt.Errorf("write %s: %w", m.Op(), err)
		s.mu.Lock()
		if s.cause == nil {
			s.cause = err
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

// writeFrame writes the frame b, in one write(2) when the connection is
// a batchConn.
func (s *session) writeFrame(ctx context.Context, b []byte) error {
	if s.bc == nil {
		return s.ws.Write(ctx, websocket.MessageBinary, b)
	}
	start := time.Now()
	s.bc.start()
	err := s.ws.Write(ctx, websocket.MessageBinary, b)
	if ferr := s.bc.flush(s.a.writeTO - time.Since(start)); ferr != nil && err == nil {
		err = ferr
		s.ws.CloseNow()
	}
	return err
}

// respond answers the master's request seq: result, or an exception with
// err's text.
func (s *session) respond(seq int64, result any, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	werr := s.write(protocol.Response(seq, result, err))
	if werr != nil && result != nil && err == nil {
		// A result that cannot be encoded still gets an answer.
		werr = s.write(protocol.Response(seq, nil, werr))
	}
	if werr != nil {
		s.log.Debug("cannot respond", "seq_number", seq, "err", werr)
	}
}

// call sends a request to the master and returns the result of its
// response. An exception is a *remoteError; a connection that ends first
// gives an error wrapping errConnLost.
func (s *session) call(ctx context.Context, m protocol.Message) (any, error) {
	ch, err := s.send(m)
	if err != nil {
		return nil, err
	}
	return s.await(ctx, m.Op(), ch)
}

// send sends a request to the master and returns the channel its response
// will arrive on, for await. A connection that is gone gives an error
// wrapping errConnLost.
func (s *session) send(m protocol.Message) (<-chan protocol.Message, error) {
	ch := make(chan protocol.Message, 1)
	s.writeMu.Lock()
	s.mu.Lock()
	if s.lost != nil {
		s.mu.Unlock()
		s.writeMu.Unlock()
		return nil, fmt.Errorf("%s: %w", m.Op(), errConnLost)
	}
	seq := s.nextSeq
	s.nextSeq++
	m["seq_number"] = seq
	s.pending[seq] = ch
	s.mu.Unlock()
	err := s.write(m)
	s.writeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errConnLost, err)
	}
	return ch, nil
}

// await waits for the response, on ch, to a request op that send sent, and
// returns its result as call does.
func (s *session) await(ctx context.Context, op string, ch <-chan protocol.Message) (any, error) {
	select {
	case r := <-ch:
		return result(op, r)
	case <-s.done:
		// The response may have come just before the end.
		select {
		case r := <-ch:
			return result(op, r)
		default:
		}
		return nil, fmt.Errorf("%s: %w", op, errConnLost)
	case <-ctx.Done():
		// The response, if it comes, lands in ch and is dropped.
		return nil, ctx.Err()
	}
}

// result returns the result of the response r to a request op.
func result(op string, r protocol.Message) (any, error) {
	if exc, _ := r["is_exception"].(bool); exc {
		return nil, &remoteError{op: op, msg: r["result"]}
	}
	return r["result"], nil
}

// onGroup is what commands tell of their process groups: the guard's, if
// the worker has one.
func (a *agent) onGroup() func(pgid int, running bool) {
	if a.guard == nil {
		return nil
	}
	return a.guard.group
}
