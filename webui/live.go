package webui

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Live updates are Server-Sent Events. A log's page (and the build page,
// for the logs of running steps) follows /logs/{id}/live: the lines from
// ?from= (or the Last-Event-ID the browser sends when it reconnects) as
// they are stored, rendered as HTML, then "done" when the log is complete.
// Each "lines" event holds whole lines, as many as were stored since the
// last one up to maxLivePiece lines and about maxLiveBytes, and its ID is
// the line after its last, so that a browser that reconnects gets each
// line once. With ?keep=N (the lines the page keeps), a stream more than N
// lines behind the log skips to its last N lines with a "skip" event
// whose ID is the first line it goes on with: a page that fell behind
// (hidden, slow, or reconnecting after a while) is sent what it will
// show, not every line it would drop.
// The stream reads the store when the master says lines were added
// (ci.EventLogLines), and every few seconds in case events were dropped: it
// never reaches into the worker or the build. Pages follow /live for the
// events that change what they show, and fetch themselves again.

const (
	// keepAlive is how often a quiet stream sends a comment, so that
	// proxies do not time it out.
	keepAlive = 15 * time.Second
	// recheck is how often a log stream re-reads the store in case the
	// events it waits for were dropped.
	recheck = 2 * time.Second
	// maxLivePiece bounds the lines read from the store at once.
	maxLivePiece = 2000
	// maxLiveBytes bounds the stored text sent in one event (lines are
	// not cut: an event holds one line or more), so that a page gets a
	// burst of long lines in pieces it parses quickly.
	maxLiveBytes = 256 << 10
)

// sseRetry is the reconnection delay a stream asks of browsers.
const sseRetry = time.Second

// sse starts an event stream on w, or fails if w cannot stream.
func sse(w http.ResponseWriter) (*sseWriter, error) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// nginx passes events on at once with this header, whatever its
	// proxy_buffering setting.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: rc}
	// A browser reconnects a broken stream after this long (Chromium's
	// default is 3 s): a page is back soon after a restart of the master.
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", sseRetry.Milliseconds()); err != nil {
		return nil, err
	}
	if err := s.flush(); err != nil {
		return nil, err
	}
	// A stream outlives the server's write timeout, if it has one.
	rc.SetWriteDeadline(time.Time{})
	return s, nil
}

type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s *sseWriter) flush() error { return s.rc.Flush() }

// event sends one event; data may hold several lines. Control
// characters in data (a carriage return above all, which would end an
// event's line) are shown as pictures: data cannot forge an event.
func (s *sseWriter) event(name, id, data string) error {
	data = showControlsString(data)
	var b strings.Builder
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	for line := range strings.SplitSeq(data, "\n") {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteString("\n")
	if _, err := s.w.Write([]byte(b.String())); err != nil {
		return err
	}
	return s.flush()
}

func (s *sseWriter) comment() error {
	if _, err := s.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return err
	}
	return s.flush()
}

// liveLog streams a log's lines, rendered, from line ?from= on.
func (a *app) liveLog(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		a.apiError(w, r, err)
		return
	}
	next := 0
	from := r.Header.Get("Last-Event-ID")
	if from == "" {
		from = r.URL.Query().Get("from")
	}
	if from != "" {
		if next, err = strconv.Atoi(from); err != nil || next < 0 {
			a.apiError(w, r, fmt.Errorf("%w: from %q is not a line number", errBadRequest, from))
			return
		}
	}
	keep := 0
	if s := r.URL.Query().Get("keep"); s != "" {
		if keep, err = strconv.Atoi(s); err != nil || keep < 1 {
			a.apiError(w, r, fmt.Errorf("%w: keep %q is not a number of lines", errBadRequest, s))
			return
		}
	}
	sctx, cancel := context.WithTimeout(ctx, requestTimeout)
	st, err := a.store(sctx)
	cancel()
	if err != nil {
		a.apiError(w, r, err)
		return
	}
	// Subscribe before the first read, so that no line is missed between.
	sub := a.m.Subscribe(1024)
	defer sub.Close()
	if _, err := st.GetLog(ctx, id); err != nil {
		a.apiError(w, r, notFound(err, "no log %d", id))
		return
	}
	s, err := sse(w)
	if err != nil {
		return
	}
	// send sends the lines stored past next, and "done" once the log is
	// complete and every line was sent. It reports whether the stream is
	// over.
	send := func() (bool, error) {
		l, err := st.GetLog(ctx, id)
		if err != nil {
			return true, err
		}
		for next < l.NumLines {
			if keep > 0 && l.NumLines-next > keep {
				next = l.NumLines - keep
				if err := s.event("skip", strconv.Itoa(next), strconv.Itoa(next)); err != nil {
					return true, err
				}
			}
			last := min(l.NumLines, next+maxLivePiece) - 1
			text, err := st.LogLines(ctx, id, next, last)
			if err != nil {
				return true, err
			}
			if text == "" {
				return false, nil // not readable yet: the next wake-up reads them
			}
			for text != "" {
				piece, n := cutLines(text, maxLiveBytes)
				text = text[len(piece):]
				next += n
				if err := s.event("lines", strconv.Itoa(next), string(renderLog(piece, l.Type == ci.LogStream))); err != nil {
					return true, err
				}
			}
		}
		if l.Complete {
			return true, s.event("done", strconv.Itoa(next), "")
		}
		return false, nil
	}
	tick := time.NewTicker(recheck)
	defer tick.Stop()
	quiet := time.NewTicker(keepAlive)
	defer quiet.Stop()
	for {
		done, err := send()
		if err != nil && ctx.Err() == nil {
			a.log.Debug("live log stream ended", "log", id, "err", err)
		}
		if done || err != nil {
			return
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.m.Done():
				return
			case <-a.closing:
				return
			case e, ok := <-sub.C:
				if !ok {
					return
				}
				// Lines already sent (read with earlier ones) wake
				// nobody.
				if e.LogID == id && (e.Type == ci.EventLogLines && e.LastLine >= next || e.Type == ci.EventLogFinished) {
					break wait
				}
			case <-tick.C:
				break wait
			case <-quiet.C:
				if s.comment() != nil {
					return
				}
			}
		}
	}
}

// cutLines returns the first lines of text (each ending in "\n") that
// hold at most max bytes, or its first line if that one is longer, and
// how many lines that is.
func cutLines(text string, max int) (string, int) {
	n, end := 0, 0
	for end < len(text) {
		i := strings.IndexByte(text[end:], '\n')
		if i < 0 {
			i = len(text) - end - 1 // an unfinished last line, whole
		}
		if n > 0 && end+i+1 > max {
			break
		}
		end += i + 1
		n++
	}
	return text[:end], n
}

// liveURL is the event stream a page follows, with the stamp of what it
// shows (see liveStamp). Pages call it before they read what they show, so
// that the stamp is never newer than the page.
func (a *app) liveURL(ctx context.Context, st ci.Store, q url.Values) string {
	stamp, err := a.liveStamp(ctx, st, q)
	if err != nil {
		a.log.Debug("no stamp for a live page", "err", err)
	}
	return a.liveURLStamp(q, stamp)
}

func (a *app) liveURLStamp(q url.Values, stamp string) string {
	q.Set("stamp", stamp)
	return a.base + "live?" + q.Encode()
}

// liveStamp sums up the state a page shows, so that the stream it
// follows can tell it at once that it changed between the page being made
// and the stream being opened: for a build, whether it is complete, its
// steps and the logs of its running steps; for a builder, its newest build and its pending requests; for the
// other pages, the newest build, the running builds, the pending requests,
// the changes and the connected workers.
func (a *app) liveStamp(ctx context.Context, st ci.Store, q url.Values) (string, error) {
	if s := q.Get("build"); s != "" {
		id, _ := strconv.ParseInt(s, 10, 64)
		b, err := st.GetBuild(ctx, id)
		if err != nil {
			return "", err
		}
		steps, err := st.ListSteps(ctx, id)
		if err != nil {
			return "", err
		}
		logs, err := runningLogs(ctx, st, steps)
		if err != nil {
			return "", err
		}
		return a.buildStamp(b, steps, len(logs)), nil
	}
	var builderID int64
	if s := q.Get("builder"); s != "" {
		builderID, _ = strconv.ParseInt(s, 10, 64)
	}
	last, _, err := st.ListBuilds(ctx, ci.BuildQuery{BuilderID: builderID, Query: ci.Query{Desc: true, Limit: 1, NoTotal: true}})
	if err != nil {
		return "", err
	}
	newest := "none"
	if len(last) > 0 {
		newest = fmt.Sprintf("%d.%t", last[0].ID, last[0].Complete)
	}
	_, pending, err := st.ListRequests(ctx, ci.RequestQuery{BuilderID: builderID, Claimed: ptr(false), Complete: ptr(false), Query: ci.Query{Limit: 1}})
	if err != nil {
		return "", err
	}
	if builderID != 0 {
		return fmt.Sprintf("%s.%d", newest, pending), nil
	}
	_, changes, err := st.ListChanges(ctx, ci.Query{Limit: 1})
	if err != nil {
		return "", err
	}
	connected := 0
	for _, w := range a.m.Workers() {
		if w.Connected {
			connected++
		}
	}
	return fmt.Sprintf("%s.%d.%d.%d.%d", newest, len(a.m.RunningBuilds()), pending, changes, connected), nil
}

// buildStamp sums up a build as its page shows it: its end, its steps, the
// number of logs of its running steps, whether it waits on a silent
// worker, and a hash of the states shown (the build's and its running
// steps'), which change while the steps and logs stay the same.
func (a *app) buildStamp(b *ci.Build, steps []*ci.StepRecord, logs int) string {
	done := 0
	h := fnv.New32a()
	io.WriteString(h, b.StateString)
	for _, s := range steps {
		if s.Complete {
			done++
			continue
		}
		h.Write([]byte{0})
		io.WriteString(h, s.StateString)
	}
	return fmt.Sprintf("%t.%d.%d.%d.%t.%x", b.Complete, len(steps), done, logs, a.waitsOnSilent(b.WorkerID, b.Complete), h.Sum32())
}

// runningLogs returns the IDs of the logs of the steps that run.
func runningLogs(ctx context.Context, st ci.Store, steps []*ci.StepRecord) (map[int64]bool, error) {
	ids := map[int64]bool{}
	for _, s := range steps {
		if s.Complete {
			continue
		}
		logs, err := st.ListLogs(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		for _, l := range logs {
			ids[l.ID] = true
		}
	}
	return ids, nil
}

// waitsOnSilent reports whether a build running on worker workerID waits
// on it while it is silent.
func (a *app) waitsOnSilent(workerID int64, complete bool) bool {
	if complete {
		return false
	}
	_, silent := a.silentWorkers()[workerID]
	return silent
}

// silencePoll is how often a running build's stream checks whether its
// worker has gone silent or answered again: silence is a state of the
// worker's connection, with no event of its own.
const silencePoll = time.Second

// How long a stream of page changes gathers events into one: what a page
// shows the structure of (steps, logs, builds starting and ending) is told
// soon; state strings, which a running step may change at every line it
// reads, at most about once a second, so that a page fetching itself on
// each event does so at most that often.
const (
	changeDelay = 200 * time.Millisecond
	stateDelay  = time.Second
)

// liveEvents streams a "change" event whenever something a page shows
// changes: with ?build=ID, that build's steps (starting, ending, their
// state), its state and end, a log added to a running step (when its first
// lines are stored: a step may add a log at any time, after it started),
// and its worker going silent or answering again; with ?builder=ID, that
// builder's builds (and the state of its running ones) and requests;
// otherwise builds starting, ending and changing state, requests, changes
// and workers. Events are gathered: the data of a "change" event is the
// type of the first event of its burst. With ?stamp=, a first event comes
// at once if the page is out of date.
func (a *app) liveEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	var buildID, builderID int64
	var err error
	if s := q.Get("build"); s != "" {
		if buildID, err = strconv.ParseInt(s, 10, 64); err != nil {
			a.apiError(w, r, fmt.Errorf("%w: build %q is not an ID", errBadRequest, s))
			return
		}
	}
	if s := q.Get("builder"); s != "" {
		if builderID, err = strconv.ParseInt(s, 10, 64); err != nil {
			a.apiError(w, r, fmt.Errorf("%w: builder %q is not an ID", errBadRequest, s))
			return
		}
	}
	sub := a.m.Subscribe(1024)
	defer sub.Close()
	// A running build's page also changes when its worker goes silent or
	// answers again, and when a running step gets a new log. The state it
	// starts from is read before the stream answers, so that no change is
	// missed.
	var silenceTick <-chan time.Time
	var workerID int64
	var silent bool
	logs := map[int64]bool{}
	if buildID != 0 {
		sctx, cancel := context.WithTimeout(ctx, requestTimeout)
		if st, err := a.store(sctx); err == nil {
			if b, err := st.GetBuild(sctx, buildID); err == nil && !b.Complete {
				workerID, silent = b.WorkerID, a.waitsOnSilent(b.WorkerID, false)
				t := time.NewTicker(silencePoll)
				defer t.Stop()
				silenceTick = t.C
			}
			if steps, err := st.ListSteps(sctx, buildID); err == nil {
				if ids, err := runningLogs(sctx, st, steps); err == nil {
					logs = ids
				}
			}
		}
		cancel()
	}
	s, err := sse(w)
	if err != nil {
		return
	}
	// delay says how soon an event must be told: 0 if the page does not
	// show what it changes.
	delay := func(e ci.Event) time.Duration {
		switch {
		case buildID != 0:
			if e.BuildID != buildID {
				return 0
			}
			switch e.Type {
			case ci.EventLogLines:
				if !logs[e.LogID] {
					logs[e.LogID] = true
					return changeDelay
				}
			case ci.EventStepStarted, ci.EventStepFinished, ci.EventBuildFinished:
				return changeDelay
			case ci.EventStepChanged, ci.EventBuildChanged:
				return stateDelay
			}
			return 0
		case builderID != 0:
			if e.BuilderID != builderID {
				return 0
			}
			switch e.Type {
			case ci.EventBuildStarted, ci.EventBuildFinished, ci.EventRequestNew, ci.EventRequestCancelled:
				return changeDelay
			case ci.EventBuildChanged:
				return stateDelay
			}
			return 0
		}
		switch e.Type {
		case ci.EventBuildStarted, ci.EventBuildFinished, ci.EventRequestNew, ci.EventRequestCancelled,
			ci.EventChangeNew, ci.EventWorkerConnected, ci.EventWorkerDisconnected:
			return changeDelay
		case ci.EventBuildChanged:
			return stateDelay
		}
		return 0
	}
	quiet := time.NewTicker(keepAlive)
	defer quiet.Stop()
	// A burst: what its first event was, and when it is told.
	var pending string
	var due time.Time
	burst := time.NewTimer(time.Hour)
	burst.Stop()
	defer burst.Stop()
	tell := func(what string, d time.Duration) {
		at := time.Now().Add(d)
		if pending != "" && !at.Before(due) {
			return
		}
		if pending == "" {
			pending = what
		}
		due = at
		burst.Reset(d)
	}
	if stamp := q.Get("stamp"); stamp != "" {
		sctx, cancel := context.WithTimeout(ctx, requestTimeout)
		st, err := a.store(sctx)
		if err == nil {
			var now string
			if now, err = a.liveStamp(sctx, st, q); err == nil && now != stamp {
				tell("stale", 0)
			}
		}
		cancel()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.m.Done():
			return
		case <-a.closing:
			return
		case e, ok := <-sub.C:
			if !ok {
				return
			}
			if buildID != 0 && e.Type == ci.EventBuildFinished && e.BuildID == buildID {
				silenceTick = nil // the build no longer waits on anyone
			}
			if d := delay(e); d > 0 {
				tell(string(e.Type), d)
			}
		case <-burst.C:
			if s.event("change", "", pending) != nil {
				return
			}
			pending = ""
		case <-quiet.C:
			if s.comment() != nil {
				return
			}
		case <-silenceTick:
			if now := a.waitsOnSilent(workerID, false); now != silent {
				silent = now
				tell("worker", 0)
			}
		}
	}
}
