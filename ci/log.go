package ci

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// Log writing limits.
const (
	// DefaultLogFlushInterval is how long written lines may wait before they
	// are stored and shown to readers.
	DefaultLogFlushInterval = 100 * time.Millisecond
	// logFlushSize is how many pending bytes cause an immediate flush: a
	// log written fast is stored in transactions of about this size.
	logFlushSize = 256 << 10
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
	pending bytes.Buffer    // whole lines waiting to be stored
	timer   Timer
	closed  bool
	err     error

	flushMu sync.Mutex
}

func newLogWriter(l Log, store LogStore, clock Clock, redact *Redactor, notify func(l *Log, first, last, bytes int)) *LogWriter {
	return &LogWriter{log: l, store: store, clock: clock, redact: redact, notify: notify, interval: DefaultLogFlushInterval, partial: map[byte][]byte{}}
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
}

// addLine appends one line, without its newline, to pending, with the
// secrets in it redacted: a line is whole here, so a secret that arrived
// in several pieces is caught. w.mu is held.
func (w *LogWriter) addLine(stream byte, line string) {
	if stream != 0 {
		w.pending.WriteByte(stream)
	}
	w.pending.WriteString(w.redact.Redact(strings.TrimSuffix(line, "\r")))
	w.pending.WriteByte('\n')
}

// schedule arranges for pending lines to be flushed. w.mu is held.
func (w *LogWriter) schedule() {
	if w.pending.Len() == 0 {
		return
	}
	if w.pending.Len() >= logFlushSize {
		go w.Flush()
		return
	}
	if w.timer == nil {
		w.timer = w.clock.AfterFunc(w.interval, func() { w.Flush() })
	}
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
	text := w.pending.String()
	w.pending.Reset()
	err := w.err
	w.mu.Unlock()
	if text == "" || err != nil {
		return err
	}
	first, last, err := w.store.AppendLog(context.Background(), w.log.ID, text)
	if err != nil {
		w.mu.Lock()
		w.err = errors.Join(w.err, err)
		w.mu.Unlock()
		return err
	}
	if w.notify != nil {
		w.notify(&w.log, first, last, len(text))
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
func (w *LogWriter) detach() (text string, ok bool) {
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
	text = w.pending.String()
	w.pending.Reset()
	return text, true
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
