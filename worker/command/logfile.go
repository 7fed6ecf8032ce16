package command

import (
	"io"
	"os"
	"time"
)

// A logWatcher follows one of a shell command's log files ("logfiles"):
// buildbot-worker's LogFileWatcher. The file is read once it changes from
// what it was when the command started (or appears); with follow, what it
// held when the command started is skipped. (buildbot-worker skips what
// it holds when it is first seen changed, which depends on when it
// looks.)
type logWatcher struct {
	name   string
	path   string
	follow bool

	old     *logStat // the file before the command, nil if absent
	started bool
	failed  bool
	f       *os.File
	dec     utf8Decoder
	buf     []byte
}

type logStat struct {
	ctime, mtime time.Time
	size         int64
}

func statLog(path string) *logStat {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return &logStat{ctime: changeTime(fi), mtime: fi.ModTime(), size: fi.Size()}
}

// poll returns the text added to the file since the last poll.
func (w *logWatcher) poll(r *run) string {
	if w.failed {
		return ""
	}
	if !w.started {
		s := statLog(w.path)
		switch {
		case s == nil:
			// Deleted (or not there yet): whatever it was before does
			// not count any more.
			w.old = nil
			return ""
		case w.old != nil && *s == *w.old:
			return "" // not written yet
		}
		// Open it only if it is still inside the base folder.
		if _, err := r.resolve(w.path); err != nil {
			w.failed = true
			r.send(Update{Key: "header", Value: "cannot follow log file " + w.name + ": " + err.Error() + "\n"})
			return ""
		}
		f, err := os.Open(w.path)
		if err != nil {
			return ""
		}
		if w.follow && w.old != nil && s.size >= w.old.size {
			// Skip what the file held when the command started.
			if _, err := f.Seek(w.old.size, io.SeekStart); err != nil {
				f.Close()
				return ""
			}
		}
		w.f, w.started = f, true
		w.buf = make([]byte, 10000)
	}
	var text []byte
	for {
		n, err := w.f.Read(w.buf)
		text = append(text, w.buf[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	if len(text) == 0 {
		return ""
	}
	return w.dec.decode(text)
}

func (w *logWatcher) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}
