package ci

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Log writing limits.
const (
	// DefaultLogFlushInterval is how long written lines may wait before they
	// are stored and shown to readers.
	DefaultLogFlushInterval = 100 * time.Millisecond
	// logFlushSize is how many pending bytes cause an immediate flush: a
	// log written fast is stored in transactions of at least this size
	// (more when lines keep coming while a flush is being stored).
	logFlushSize = 256 << 10
	// logMaxPending is how many pending bytes make writers wait while a
	// flush is being stored: a store slower than the output slows the
	// output down instead of the master holding more and more of it.
	logMaxPending = 4 * logFlushSize
	// MaxLogLine is the longest line stored; longer ones are cut into
	// several lines of this length.
	MaxLogLine = 64 << 10
)

// A LogWriter adds text to one log of a running step. Complete lines are
// stored in chunks, at the latest DefaultLogFlushInterval (on the master's
// clock) after they were written, so that readers can follow the log while
// the step runs; Close stores what is left. A LogWriter is safe for
// concurrent use.
type LogWriter struct {
	log      Log
	store    LogStore
	notify   func(l *Log, first, last, bytes int)
	redact   *Redactor
	clock    Clock
	interval time.Duration

	mu      sync.Mutex
	partial map[byte][]byte // unfinished line per stream
	// pending holds the whole lines waiting to be stored. A flush gives
	// it to the store as is (the store does not keep it) and the next
	// lines go to spare, the buffer of the flush before: a log written
	// fast reuses two buffers.
	pending  []byte
	spare    []byte
	flushing bool       // a flush by size is running (flushBusy)
	drained  *sync.Cond // on mu: flushBusy took pending
	timer    Timer
	closed   bool
	err      error

	flushMu sync.Mutex
}

func newLogWriter(l Log, store LogStore, clock Clock, redact *Redactor, notify func(l *Log, first, last, bytes int)) *LogWriter {
	w := &LogWriter{log: l, store: store, clock: clock, redact: redact, notify: notify, interval: DefaultLogFlushInterval, partial: map[byte][]byte{}}
	w.drained = sync.NewCond(&w.mu)
	return w
}

// ID returns the stored log's ID.
func (w *LogWriter) ID() int64 { return w.log.ID }

// Name returns the log's name.
func (w *LogWriter) Name() string { return w.log.Name }

// Write adds p to the log: to a stream log as standard output.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.addStream('o', string(p))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// AddStdout adds standard output text.
func (w *LogWriter) AddStdout(s string) { w.addStream('o', s) }

// AddStderr adds standard error text (stream logs only; other logs take it
// as plain text).
func (w *LogWriter) AddStderr(s string) { w.addStream('e', s) }

// AddHeader adds a header: what Kiln or the worker says about the command.
func (w *LogWriter) AddHeader(s string) { w.addStream('h', s) }

func (w *LogWriter) addStream(stream byte, s string) {
	if s == "" {
		return
	}
	if w.log.Type != LogStream {
		stream = 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	// The text is cut into lines where it is: only an unfinished line
	// waiting from before is copied, to join it.
	buf := s
	if p := w.partial[stream]; len(p) > 0 {
		buf = string(p) + s
	}
	for {
		i := strings.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) < MaxLogLine {
				break
			}
			i = MaxLogLine
			w.addLine(stream, buf[:i])
			buf = buf[i:]
			continue
		}
		line := buf[:i]
		for len(line) > MaxLogLine {
			w.addLine(stream, line[:MaxLogLine])
			line = line[MaxLogLine:]
		}
		w.addLine(stream, line)
		buf = buf[i+1:]
	}
	if len(buf) == 0 {
		delete(w.partial, stream)
	} else {
		w.partial[stream] = []byte(buf)
	}
	w.schedule()
	// A store slower than the output: wait for the running flush to take
	// what is pending.
	for len(w.pending) >= logMaxPending && w.flushing && !w.closed {
		w.drained.Wait()
	}
}

// addLine appends one line, without its newline, to pending, with the
// secrets in it redacted: a line is whole here, so a secret that arrived
// in several pieces is caught. w.mu is held.
func (w *LogWriter) addLine(stream byte, line string) {
	line = w.redact.Redact(strings.TrimSuffix(line, "\r"))
	if stream != 0 {
		w.pending = append(w.pending, stream)
	}
	w.pending = append(w.pending, line...)
	w.pending = append(w.pending, '\n')
}

// schedule arranges for pending lines to be flushed. w.mu is held.
func (w *LogWriter) schedule() {
	if len(w.pending) == 0 {
		return
	}
	if len(w.pending) >= logFlushSize {
		if !w.flushing {
			w.flushing = true
			go w.flushBusy()
		}
		return
	}
	if w.timer == nil {
		w.timer = w.clock.AfterFunc(w.interval, func() { w.Flush() })
	}
}

// flushBusy flushes until less than logFlushSize is pending: one
// goroutine, however fast lines come, and what came during a flush is
// stored by the next one, in one transaction.
func (w *LogWriter) flushBusy() {
	for {
		w.Flush()
		w.mu.Lock()
		if len(w.pending) < logFlushSize || w.err != nil || w.closed {
			w.flushing = false
			w.drained.Broadcast()
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// takePending returns the pending lines, which the caller gives to the
// store and then back with givePending, and starts pending again in the
// spare buffer. w.mu is held, and w.flushMu, so that one flush at a time
// uses a buffer.
func (w *LogWriter) takePending() []byte {
	p := w.pending
	w.pending, w.spare = w.spare[:0], nil
	w.drained.Broadcast()
	return p
}

// givePending takes back p, which the store no longer uses, as the spare
// buffer, unless it is much larger than what it held: a log written fast
// for a while does not keep its large buffers once it slows down.
// w.flushMu is held.
func (w *LogWriter) givePending(p []byte) {
	if cap(p) > 64<<10 && cap(p) > 4*len(p) {
		return
	}
	w.mu.Lock()
	if !w.closed {
		w.spare = p[:0]
	}
	w.mu.Unlock()
}

// text is p as a string, without a copy: the store, which does not keep
// the text it is given, reads it before p is written again.
func text(p []byte) string {
	return unsafe.String(unsafe.SliceData(p), len(p))
}

// Flush stores the complete lines written so far.
func (w *LogWriter) Flush() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	p := w.takePending()
	err := w.err
	w.mu.Unlock()
	if len(p) == 0 || err != nil {
		return err
	}
	first, last, err := w.store.AppendLog(context.Background(), w.log.ID, text(p))
	w.givePending(p)
	if err != nil {
		w.mu.Lock()
		w.err = errors.Join(w.err, err)
		w.mu.Unlock()
		return err
	}
	if w.notify != nil {
		w.notify(&w.log, first, last, len(p))
	}
	return nil
}

// Close stores what is left (an unfinished last line becomes a line) and
// marks the log complete, in one write. Later writes are dropped.
func (w *LogWriter) Close() error {
	text, ok := w.detach()
	if !ok {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.err
	}
	first, last, err := w.store.FinishLog(context.Background(), w.log.ID, text)
	return w.finish(text, first, last, err)
}

// detach ends the writing of the log and returns the text left to store:
// the pending lines, and an unfinished last line as a line. ok is false
// when the log was closed already. Otherwise flushes wait until finish is
// called with the outcome of storing text as the log's end.
func (w *LogWriter) detach() (last string, ok bool) {
	w.flushMu.Lock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.flushMu.Unlock()
		return "", false
	}
	for _, stream := range []byte{'h', 0, 'o', 'e'} {
		if p, ok := w.partial[stream]; ok {
			w.addLine(stream, string(p))
		}
	}
	clear(w.partial)
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	// The text stays valid: a closed log's buffers are not written again.
	p := w.takePending()
	w.pending = nil
	return text(p), true
}

// finish records the outcome of storing the end of a detached log (lines
// first to last of text, or err) and tells readers; it returns the log's
// error.
func (w *LogWriter) finish(text string, first, last int, err error) error {
	defer w.flushMu.Unlock()
	w.mu.Lock()
	w.err = errors.Join(w.err, err)
	err = w.err
	w.mu.Unlock()
	if w.notify != nil {
		if first >= 0 && err == nil {
			w.notify(&w.log, first, last, len(text))
		}
		w.notify(&w.log, -1, -1, 0)
	}
	return err
}
