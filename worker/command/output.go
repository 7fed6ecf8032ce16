package command

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// outputSettings are the master's set_worker_settings, resolved.
type outputSettings struct {
	size    int
	timeout time.Duration // negative: no waiting
	maxLine int
	newline func(string) string
}

// output cuts a command's text updates into lines and sends the updates to
// the Host in batches: buildbot-worker's ProtocolCommandBase.send_update
// with its LineBoundaryFinder per stream and its BufferManager. It is safe
// for concurrent use; the Host is called with mu held, so its calls never
// overlap and keep the order of the updates.
type output struct {
	ctx  context.Context
	host Host
	set  outputSettings

	mu     sync.Mutex
	lines  map[streamKey]*lineFinder
	buf    []entry
	buflen int
	timer  *time.Timer
	gen    int // counts flushes, so that a stale timer does nothing
	done   bool
	err    error
	failed chan struct{} // closed when err is set
}

// A streamKey names a text stream: "stdout", "stderr", "header", or a log
// file (log set).
type streamKey struct {
	name string
	log  bool
}

// An entry is one update waiting in the buffer. The text of consecutive
// updates of one stream is kept in parts, joined once when it is sent.
type entry struct {
	key   string
	value any         // other updates
	log   string      // log file name, for "log"
	parts []string    // text updates
	size  int         // of the parts
	times []time.Time // text updates, one per line
}

// text returns the entry's text.
func (e *entry) text() string {
	if len(e.parts) == 1 {
		return e.parts[0]
	}
	var b strings.Builder
	b.Grow(e.size)
	for _, p := range e.parts {
		b.WriteString(p)
	}
	return b.String()
}

func (e *entry) isText() bool { return e.parts != nil }

func newOutput(ctx context.Context, h Host, set outputSettings) *output {
	return &output{ctx: ctx, host: h, set: set, lines: map[streamKey]*lineFinder{}, failed: make(chan struct{})}
}

// send adds updates, as one send_update call: the text ones go through
// their stream's line finder, and what makes whole lines joins the buffer.
func (o *output) send(updates ...Update) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil || o.done {
		return
	}
	now := time.Now()
	for _, u := range updates {
		switch u.Key {
		case "stdout", "stderr", "header":
			// A command's own reader sends its buffer, read into again
			// once send returns: the line finder copies it.
			if b, ok := u.Value.([]byte); ok {
				o.appendText(streamKey{name: u.Key}, "", b, now)
				break
			}
			s, _ := u.Value.(string)
			o.appendText(streamKey{name: u.Key}, s, nil, now)
		case "log":
			lv, _ := u.Value.([2]string)
			o.appendText(streamKey{name: lv[0], log: true}, lv[1], nil, now)
		default:
			o.appendEntry(entry{key: u.Key, value: u.Value})
		}
	}
	if o.set.timeout < 0 {
		o.sendBuffered()
	}
}

// appendText adds the text s, followed by b, of stream k.
func (o *output) appendText(k streamKey, s string, b []byte, now time.Time) {
	lf := o.lines[k]
	if lf == nil {
		lf = &lineFinder{}
		o.lines[k] = lf
	}
	text, times := lf.appendBytes(s, b, now, o.set.maxLine, o.set.newline)
	if len(times) > 0 {
		o.appendLines(k, text, times)
	}
}

func (o *output) appendLines(k streamKey, text string, times []time.Time) {
	e := entry{key: k.name, parts: []string{text}, size: len(text), times: times}
	if k.log {
		e.key, e.log = "log", k.name
	}
	o.appendEntry(e)
}

// appendEntry is BufferManager.append, except for text that does not fit
// in what is left of the buffer: BufferManager sends the buffer, then the
// text alone or in parts, the last one small; here whole lines of the
// text fill the buffer, which goes, and so on, and what is left waits in
// the buffer as a smaller update would. Output read in large reads then
// goes in full batches, rather than a full one and a small one per read.
// The parts are not joined to the text before them, which would copy it:
// a batch may hold two updates of one stream. A single line longer than
// the buffer goes alone.
func (o *output) appendEntry(e entry) {
	n := 20
	if e.isText() {
		n = e.size + 16*len(e.times)
	}
	if n <= o.set.size-o.buflen {
		o.join(e)
		o.buflen += n
		o.startTimer()
		return
	}
	if !e.isText() {
		o.sendBuffered()
		if n <= o.set.size {
			o.buf = append(o.buf, e)
			o.buflen += n
			o.startTimer()
			return
		}
		o.sendEntries([]entry{e})
		return
	}
	text := e.text()
	part := func(start, end, line, count int) entry {
		p := e
		p.parts, p.size = []string{text[start:end]}, end-start
		p.times = e.times[line : line+count]
		return p
	}
	start, line := 0, 0
	for line < len(e.times) {
		space := o.set.size - o.buflen
		if rest := len(text) - start + 16*(len(e.times)-line); rest <= space {
			o.buf = append(o.buf, part(start, len(text), line, len(e.times)-line))
			o.buflen += rest
			o.startTimer()
			return
		}
		end, count := start, 0
		for line+count < len(e.times) {
			next := end + indexNewline(text[end:]) + 1
			if next-start+16*(count+1) > space {
				break
			}
			end = next
			count++
		}
		switch {
		case count > 0:
			o.buf = append(o.buf, part(start, end, line, count))
			o.buflen += end - start + 16*count
		case o.buflen == 0:
			end = start + indexNewline(text[start:]) + 1
			count = 1
			o.sendEntries([]entry{part(start, end, line, count)})
		}
		o.sendBuffered()
		start, line = end, line+count
	}
}

func indexNewline(s string) int {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return i
	}
	return len(s) - 1
}

// join adds e to the buffer, extending the last entry when it is text of
// the same stream.
func (o *output) join(e entry) {
	if n := len(o.buf); n > 0 && e.isText() {
		last := &o.buf[n-1]
		if last.isText() && last.key == e.key && last.log == e.log {
			last.parts = append(last.parts, e.parts...)
			last.size += e.size
			last.times = append(last.times, e.times...)
			return
		}
	}
	o.buf = append(o.buf, e)
}

func (o *output) startTimer() {
	if o.set.timeout < 0 || o.timer != nil {
		return
	}
	gen := o.gen
	o.timer = time.AfterFunc(o.set.timeout, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.gen == gen {
			o.sendBuffered()
		}
	})
}

// sendBuffered sends what the buffer holds. o.mu is held.
func (o *output) sendBuffered() {
	o.gen++
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	buf := o.buf
	o.buf, o.buflen = nil, 0
	o.sendEntries(buf)
}

// sendEntries calls the Host. o.mu is held.
func (o *output) sendEntries(entries []entry) {
	if len(entries) == 0 || o.err != nil {
		return
	}
	updates := make([]Update, len(entries))
	for i, e := range entries {
		switch {
		case !e.isText():
			updates[i] = Update{Key: e.key, Value: e.value}
		case e.key == "log":
			updates[i] = Update{Key: e.key, Value: [2]string{e.log, e.text()}, Times: e.times}
		default:
			updates[i] = Update{Key: e.key, Value: e.text(), Times: e.times}
		}
	}
	if err := o.host.Update(o.ctx, updates); err != nil {
		o.err = err
		close(o.failed)
	}
}

// flush sends everything now, unfinished lines included (each gets a
// newline): buildbot-worker's flush_command_output, done when a command
// completes or is interrupted. Streams are flushed in the order of their
// names.
func (o *output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := make([]streamKey, 0, len(o.lines))
	for k, lf := range o.lines {
		if len(lf.partial) > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b streamKey) int { return cmp.Compare(a.name, b.name) })
	for _, k := range keys {
		text, times := o.lines[k].flush(o.set.maxLine, o.set.newline)
		if len(times) > 0 {
			o.appendLines(k, text, times)
		}
	}
	o.sendBuffered()
}

// complete flushes what is left at the end of a command and stops the
// timer for good.
func (o *output) complete() {
	o.flush()
	o.mu.Lock()
	o.done = true
	o.mu.Unlock()
}

// failure returns the first error the Host returned.
func (o *output) failure() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// A lineFinder cuts one stream's text into whole lines: buildbot-worker's
// LineBoundaryFinder.
type lineFinder struct {
	partial string    // text after the last line end
	time    time.Time // when partial began to arrive
}

// append adds text received at t and returns the whole lines it completes,
// each ending in "\n", with the time each began to arrive.
func (lf *lineFinder) append(text string, t time.Time, maxLine int, newline func(string) string) (string, []time.Time) {
	return lf.appendBytes(text, nil, t, maxLine, newline)
}

// appendBytes is append for the text s followed by p, which is copied:
// the text after the unfinished line waiting from before is made in one
// copy.
func (lf *lineFinder) appendBytes(s string, p []byte, t time.Time, maxLine int, newline func(string) string) (string, []time.Time) {
	hadPartial := lf.partial != ""
	partialTime := lf.time
	var text string
	switch {
	case p == nil && !hadPartial:
		text = s
	case p == nil:
		text = lf.partial + s
	default:
		var sb strings.Builder
		sb.Grow(len(lf.partial) + len(s) + len(p))
		sb.WriteString(lf.partial)
		sb.WriteString(s)
		sb.Write(p)
		text = sb.String()
	}
	text = newline(text)

	// The lines are text[:end], unless an overlong line had to be cut:
	// then they are built in b.
	var b []byte
	end := 0
	var times []time.Time
	if n := strings.Count(text, "\n"); n > 0 {
		times = make([]time.Time, 0, n)
	}
	emit := func(from, to int, cut bool) {
		switch {
		case b == nil && !cut && from == end:
			end = to
		default:
			if b == nil {
				b = append(make([]byte, 0, len(text)+16), text[:end]...)
			}
			b = append(b, text[from:to]...)
			if cut {
				b = append(b, '\n')
			}
		}
		if len(times) == 0 && hadPartial {
			times = append(times, partialTime)
		} else {
			times = append(times, t)
		}
	}
	cut := max(maxLine-1, 1)
	start := 0
	for {
		i := strings.IndexByte(text[start:], '\n')
		if i < 0 {
			break
		}
		i += start
		for i-start >= maxLine {
			emit(start, start+cut, true)
			start += cut
		}
		emit(start, i+1, false)
		start = i + 1
	}
	for len(text)-start >= maxLine {
		emit(start, start+cut, true)
		start += cut
	}
	if len(times) > 0 || !hadPartial {
		lf.time = t
	}
	lf.partial = text[start:]
	if b != nil {
		return string(b), times
	}
	return text[:end], times
}

// flush returns the unfinished line, ended with a newline.
func (lf *lineFinder) flush(maxLine int, newline func(string) string) (string, []time.Time) {
	if lf.partial == "" {
		return "", nil
	}
	return lf.append("\n", lf.time, maxLine, newline)
}
