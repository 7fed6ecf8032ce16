package ci

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// StepRun is one step running in one build: what a Step's Run works
// through to reach the worker, the build's properties and the step's logs.
// It implements Props, so renderables can be rendered against it. Its
// methods are safe for concurrent use.
type StepRun struct {
	build *runningBuild
	rec   *StepRecord
	opts  StepOptions

	mu    sync.Mutex
	logs  []*LogWriter
	early []*LogWriter // logs stored with the step, not yet asked for by AddLog
	state string
	urls  []StepURL

	ended bool // guarded by build.stateMu
}

var _ Props = (*StepRun)(nil)

// Name returns the step's name in this build.
func (s *StepRun) Name() string { return s.rec.Name }

// Number returns the step's position in the build, from 0.
func (s *StepRun) Number() int { return s.rec.Number }

// StepID returns the stored step's ID.
func (s *StepRun) StepID() int64 { return s.rec.ID }

// BuildID returns the stored build's ID.
func (s *StepRun) BuildID() int64 { return s.build.rec.ID }

// BuildNumber returns the build's number within its builder.
func (s *StepRun) BuildNumber() int { return s.build.rec.Number }

// BuilderName returns the name of the build's builder.
func (s *StepRun) BuilderName() string { return s.build.builder.cfg.Name }

// Master returns the master running the build.
func (s *StepRun) Master() *Master { return s.build.m }

// Logger returns a logger that names the build and step.
func (s *StepRun) Logger() *slog.Logger {
	return s.build.m.log.With("builder", s.BuilderName(), "build", s.BuildNumber(), "step", s.Name())
}

// Property implements Props.
func (s *StepRun) Property(name string) (any, bool) {
	s.build.mu.Lock()
	defer s.build.mu.Unlock()
	return s.build.props.Get(name)
}

// SetProperty sets a property of the build, for this and later steps.
func (s *StepRun) SetProperty(name string, value any, source string) {
	s.build.mu.Lock()
	defer s.build.mu.Unlock()
	s.build.props.Set(name, value, source)
}

// Properties returns a copy of the build's properties.
func (s *StepRun) Properties() Properties {
	s.build.mu.Lock()
	defer s.build.mu.Unlock()
	return s.build.props.Clone()
}

// SourceStamp implements Props.
func (s *StepRun) SourceStamp(codebase string) (SourceStamp, bool) {
	for _, ss := range s.build.buildset.SourceStamps {
		if ss.Codebase == codebase {
			return ss, true
		}
	}
	return SourceStamp{}, false
}

// SourceStamps returns the build's source stamps.
func (s *StepRun) SourceStamps() []SourceStamp {
	return append([]SourceStamp(nil), s.build.buildset.SourceStamps...)
}

// Worker implements Props: the build's worker and what it said of itself.
func (s *StepRun) Worker() (string, WorkerInfo) {
	return s.build.worker.cfg.Name, s.build.conn.Info()
}

// Render renders v for this build; see the package function Render.
func (s *StepRun) Render(ctx context.Context, v any) (any, error) { return Render(ctx, s, v) }

// RenderString renders v to a string for this build.
func (s *StepRun) RenderString(ctx context.Context, v any) (string, error) {
	return RenderString(ctx, s, v)
}

// RenderList renders v to a list of strings for this build.
func (s *StepRun) RenderList(ctx context.Context, v any) ([]string, error) {
	return RenderList(ctx, s, v)
}

// BuilderDir returns the builder's folder on the worker, as an absolute
// path in the worker's own form.
func (s *StepRun) BuilderDir() string {
	info := s.build.conn.Info()
	return info.JoinPath(info.Basedir(), s.build.builder.cfg.BuildDir())
}

// MasterDir returns the master's base folder, to which master-side paths
// are relative.
func (s *StepRun) MasterDir() string {
	if s.build.m.cfg.BaseDir == "" {
		return "."
	}
	return s.build.m.cfg.BaseDir
}

// RunCommand runs a remote command on the build's worker and returns when it
// completes; see WorkerConn.RunCommand for the errors.
func (s *StepRun) RunCommand(ctx context.Context, cmd *RemoteCommand) error {
	cmd.RC = -1
	return s.build.conn.RunCommand(ctx, s.BuilderName(), cmd)
}

// AddLog creates a log for the step: LogStream for command output (stdout,
// stderr and header lines), LogText for plain text. The log is closed when
// the step ends, if the step does not close it first.
func (s *StepRun) AddLog(ctx context.Context, name, typ string) (*LogWriter, error) {
	if typ == "" {
		typ = LogStream
	}
	s.mu.Lock()
	for i, w := range s.early {
		if w.log.Name == name && w.log.Type == typ {
			s.early = slices.Delete(s.early, i, i+1)
			s.mu.Unlock()
			return w, nil
		}
	}
	s.mu.Unlock()
	l := Log{StepID: s.rec.ID, Name: name, Type: typ}
	if err := s.build.m.store.AddLog(context.WithoutCancel(ctx), &l); err != nil {
		return nil, fmt.Errorf("add log %q: %w", name, err)
	}
	return s.addLogWriter(l, false), nil
}

// addLogWriter makes the writer of a stored log of the step; early is a
// log stored with the step's start, which AddLog gives the step when it
// asks for it.
func (s *StepRun) addLogWriter(l Log, early bool) *LogWriter {
	m := s.build.m
	buildID, stepID := s.build.rec.ID, s.rec.ID
	w := newLogWriter(l, m.store, m.clock, m.redactor, func(l *Log, first, last, bytes int) {
		if first < 0 {
			m.publish(Event{Type: EventLogFinished, BuildID: buildID, StepID: stepID, LogID: l.ID})
			return
		}
		m.publish(Event{Type: EventLogLines, BuildID: buildID, StepID: stepID, LogID: l.ID, FirstLine: first, LastLine: last, Bytes: bytes})
	})
	s.mu.Lock()
	s.logs = append(s.logs, w)
	if early {
		s.early = append(s.early, w)
	}
	s.mu.Unlock()
	return w
}

// SetStateString sets the step's state, shown while it runs and after (for
// example "compiled 12 files"). While the step runs, its state is the
// build's too; the store, the pages and the API see it within
// StateInterval.
func (s *StepRun) SetStateString(state string) {
	s.mu.Lock()
	changed := s.state != state
	s.state = state
	s.mu.Unlock()
	if changed {
		s.build.stepStateChanged()
	}
}

// AddURL attaches a link to the step, stored when the step ends.
func (s *StepRun) AddURL(name, url string) {
	s.mu.Lock()
	s.urls = append(s.urls, StepURL{Name: name, URL: url})
	s.rec.URLs = append([]StepURL(nil), s.urls...)
	s.mu.Unlock()
}

// errorLog writes an error into the step's "err.text" log, as Buildbot
// does with exceptions.
func (s *StepRun) errorLog(text string) {
	w, err := s.AddLog(context.Background(), "err.text", LogText)
	if err != nil {
		s.build.m.log.Error("could not write step error log", "err", err, "error", text)
		return
	}
	w.AddStdout(text + "\n")
	w.Close()
}

// A stepEnd is the end of a step not stored yet: its final record and the
// logs it left open, detached from their writers with their last lines.
// With a StepFinishStore it is stored with the next write of the build
// (the next step's start, or the build's end), in one transaction.
type stepEnd struct {
	s    *StepRun
	rec  *StepRecord
	logs []*LogWriter
	ends []LogEnd
}

// end detaches the logs the step left open and returns its end, rec.
func (s *StepRun) end(rec *StepRecord) *stepEnd {
	s.mu.Lock()
	logs := s.logs
	s.logs = nil
	s.mu.Unlock()
	e := &stepEnd{s: s, rec: rec}
	for _, w := range logs {
		if text, ok := w.detach(); ok {
			e.logs = append(e.logs, w)
			e.ends = append(e.ends, LogEnd{LogID: w.log.ID, Text: text})
		}
	}
	return e
}

// stored tells the logs' readers and the subscribers that the end is
// stored.
func (e *stepEnd) stored() {
	for i, w := range e.logs {
		w.finish(e.ends[i].Text, e.ends[i].First, e.ends[i].Last, nil)
	}
	e.published()
}

func (e *stepEnd) published() {
	rb := e.s.build
	rb.m.publish(Event{Type: EventStepFinished, BuildID: rb.rec.ID, StepID: e.rec.ID, BuilderID: rb.builder.id, Results: e.rec.Results})
}

// writeApart stores each log's end, and then the step's, in writes of
// their own: with a store that cannot store them with the build's next
// write, or when that write failed, so that a log that cannot be stored
// does not cost the others or the step's end.
func (e *stepEnd) writeApart(ctx context.Context) {
	m := e.s.build.m
	for i, w := range e.logs {
		first, last, err := m.store.FinishLog(ctx, e.ends[i].LogID, e.ends[i].Text)
		if err := w.finish(e.ends[i].Text, first, last, err); err != nil {
			m.log.Error("could not store log", "log", w.Name(), "err", err)
		}
	}
	if err := m.store.UpdateStep(ctx, e.rec); err != nil {
		m.log.Error("could not record step end", "build", e.s.build.rec.ID, "step", e.rec.Name, "err", err)
	}
	e.published()
}

// finalState returns the step's state string once it ended.
func (s *StepRun) finalState(r Result) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := firstNonEmpty(s.state, s.opts.DescriptionDone, s.rec.Name)
	if r != Success && r != Skipped {
		state += " (" + r.String() + ")"
	}
	return s.build.m.redactor.Redact(state)
}
