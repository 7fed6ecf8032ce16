// Package citest runs a user's pipelines under go test: Start starts a real
// master (SQLite store in a temporary folder, in-process workers running
// real commands) from the same ci.MasterConfig the user's master program
// uses, and the test submits changes or builds and reads what happened —
// results, steps, logs and properties — from the master's own records.
//
//	func TestBuilders(t *testing.T) {
//		m := citest.Start(t, myconfig.Config())
//		b := m.Build(t, citest.Request{Builder: "test"})
//		require.Equal(t, ci.Success, b.Results())
//		require.Contains(t, b.Log("compile", "stdio"), "ok")
//	}
package citest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/sqlite" // the store
	"github.com/kilnci/kiln/worker/local"
)

// DefaultTimeout bounds each wait of a test master, unless the test's own
// deadline comes first.
const DefaultTimeout = 2 * time.Minute

// A Master is a master started by Start, with the helpers a test needs.
type Master struct {
	*ci.Master
	// Dir is the master's base folder; workers' folders are under
	// Dir/workers/<name>.
	Dir string
	// Store is the master's store.
	Store ci.Store

	timeout time.Duration
}

// Options adjust Start.
type Options struct {
	// NoWorkers starts no in-process workers: the test attaches its own.
	NoWorkers bool
	// Timeout bounds each wait (DefaultTimeout if zero).
	Timeout time.Duration
	// LogLevel is the level of the master's log written to the test log
	// (slog.LevelWarn if nil, so that only problems show), as in
	// slog.HandlerOptions: a slog.Level, or a *slog.LevelVar to change it
	// while the test runs.
	LogLevel slog.Leveler
}

// Start starts a master from cfg for the test and stops it when the test
// ends, failing the test if the master failed. Unless opts say otherwise,
// each configured worker is served by an in-process worker, and Start waits
// until they are attached.
//
// cfg may be the very configuration a master program uses: Start runs it
// in a temporary folder (an empty or relative BaseDir is taken within
// one; an absolute one is kept, for tests that restart a master on the
// same folder), without the services that would listen on the network
// (ci.NetworkService: the web server and the worker port, unless given a
// listener) and without the program's own in-process workers (replaced
// by Start's).
func Start(tb testing.TB, cfg ci.MasterConfig, opts ...Options) *Master {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.LogLevel == nil {
		o.LogLevel = slog.LevelWarn
	}
	if !filepath.IsAbs(cfg.BaseDir) {
		cfg.BaseDir = filepath.Join(tb.TempDir(), cfg.BaseDir)
	}
	services := cfg.Services
	cfg.Services = nil
	for _, s := range services {
		if n, ok := s.(ci.NetworkService); ok && n.ListensOnNetwork() {
			continue
		}
		if _, ok := s.(*local.Worker); ok && !o.NoWorkers {
			continue
		}
		cfg.Services = append(cfg.Services, s)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(&testWriter{tb: tb}, &slog.HandlerOptions{Level: o.LogLevel}))
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = -1
	}
	if !o.NoWorkers {
		for _, w := range cfg.Workers {
			cfg.Services = append(cfg.Services, &local.Worker{Name: w.Name, Dir: filepath.Join(cfg.BaseDir, "workers", w.Name)})
		}
	}
	m, err := ci.NewMaster(cfg)
	if err != nil {
		tb.Fatalf("citest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			tb.Errorf("citest: master stopped with an error: %v", err)
		}
	})
	tm := &Master{Master: m, Dir: cfg.BaseDir, timeout: o.Timeout}
	wctx, wcancel := tm.waitContext(tb)
	defer wcancel()
	st, err := m.Store(wctx)
	if err != nil {
		tb.Fatalf("citest: master did not start: %v", err)
	}
	tm.Store = st
	if !o.NoWorkers {
		tm.WaitWorkers(tb)
	}
	return tm
}

// waitContext bounds a wait by the timeout (DefaultTimeout for a Master
// made by hand rather than by Start) and the test's deadline.
func (m *Master) waitContext(tb testing.TB) (context.Context, context.CancelFunc) {
	d := m.timeout
	if d == 0 {
		d = DefaultTimeout
	}
	if dl, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if t, ok := dl.Deadline(); ok {
			if left := time.Until(t) - time.Second; left < d {
				d = left
			}
		}
	}
	return context.WithTimeout(context.Background(), d)
}

// WaitWorkers waits until every configured worker is attached.
func (m *Master) WaitWorkers(tb testing.TB) {
	tb.Helper()
	m.WaitFor(tb, "every worker to attach", func() bool {
		for _, w := range m.Workers() {
			if !w.Connected {
				return false
			}
		}
		return true
	})
}

// WaitFor waits until cond is true, re-checking on every event of the
// master and every 50 ms (for what changes without an event). It fails
// the test, naming what it waited for, when the wait's timeout passes
// (Options.Timeout, or less when the test's deadline comes first) or the
// master stops. It must be called from the test's goroutine.
func (m *Master) WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	sub := m.Subscribe(1024)
	defer sub.Close()
	ctx, cancel := m.waitContext(tb)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-sub.C:
		case <-tick.C:
		case <-ctx.Done():
			tb.Fatalf("citest: timed out waiting for %s", what)
		case <-m.Done():
			tb.Fatalf("citest: master stopped while waiting for %s", what)
		}
	}
}

// A Request asks for a build of one builder or more.
type Request struct {
	// Builder is the builder to build (or Builders, for several).
	Builder  string
	Builders []string
	// SourceStamp is the source to build.
	SourceStamp ci.SourceStamp
	// Properties are given to the build, with source "Force Build Form".
	Properties map[string]any
	// Reason defaults to "citest".
	Reason string
}

// Submit submits a buildset for r and returns its ID, without waiting.
func (m *Master) Submit(tb testing.TB, r Request) int64 {
	tb.Helper()
	builders := r.Builders
	if r.Builder != "" {
		builders = append([]string{r.Builder}, builders...)
	}
	props := ci.Properties{}
	props.SetAll(r.Properties, ci.SourceForce)
	if r.Reason == "" {
		r.Reason = "citest"
	}
	ctx, cancel := m.waitContext(tb)
	defer cancel()
	bs, _, err := m.Master.Submit(ctx, ci.Submission{
		Builders:     builders,
		Reason:       r.Reason,
		SourceStamps: []ci.SourceStamp{r.SourceStamp},
		Properties:   props,
		Scheduler:    "citest",
	})
	if err != nil {
		tb.Fatalf("citest: submit: %v", err)
	}
	return bs.ID
}

// Build submits a build of one builder and waits for it to finish.
func (m *Master) Build(tb testing.TB, r Request) *Build {
	tb.Helper()
	bs := m.Submit(tb, r)
	builds := m.WaitBuildset(tb, bs)
	if len(builds) != 1 {
		tb.Fatalf("citest: buildset %d has %d builds, want 1", bs, len(builds))
	}
	return builds[0]
}

// AddChange adds a change as a change hook would, and returns the IDs of
// the buildsets the schedulers submitted for it.
func (m *Master) AddChange(tb testing.TB, c ci.Change) []int64 {
	tb.Helper()
	ctx, cancel := m.waitContext(tb)
	defer cancel()
	sub := m.Subscribe(4096)
	defer sub.Close()
	if _, err := m.Master.AddChange(ctx, &c); err != nil {
		tb.Fatalf("citest: add change: %v", err)
	}
	var ids []int64
	for {
		select {
		case e := <-sub.C:
			if e.Type == ci.EventBuildsetNew {
				ids = append(ids, e.BuildsetID)
			}
			continue
		default:
		}
		break
	}
	return ids
}

// WaitBuildset waits until a buildset is complete and returns its builds,
// one per builder (the last build of each request).
func (m *Master) WaitBuildset(tb testing.TB, id int64) []*Build {
	tb.Helper()
	ctx := context.Background()
	m.WaitFor(tb, fmt.Sprintf("buildset %d to complete", id), func() bool {
		bs, err := m.Store.GetBuildset(ctx, id)
		if err != nil {
			tb.Fatalf("citest: %v", err)
		}
		return bs.Complete
	})
	reqs, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: id})
	if err != nil {
		tb.Fatalf("citest: %v", err)
	}
	var builds []*Build
	for _, r := range reqs {
		if r.BuildID == 0 {
			continue // cancelled before it was built
		}
		builds = append(builds, m.LoadBuild(tb, r.BuildID))
	}
	return builds
}

// WaitBuild waits until a build is finished and returns it.
func (m *Master) WaitBuild(tb testing.TB, id int64) *Build {
	tb.Helper()
	ctx := context.Background()
	m.WaitFor(tb, fmt.Sprintf("build %d to finish", id), func() bool {
		b, err := m.Store.GetBuild(ctx, id)
		if err != nil {
			tb.Fatalf("citest: %v", err)
		}
		return b.Complete
	})
	return m.LoadBuild(tb, id)
}

// WaitRunning waits until a build of the builder is running and returns
// its ID.
func (m *Master) WaitRunning(tb testing.TB, builder string) int64 {
	tb.Helper()
	return m.WaitRunningN(tb, builder, 1)[0]
}

// WaitRunningN waits until at least n builds of the builder are running
// and returns their IDs.
func (m *Master) WaitRunningN(tb testing.TB, builder string, n int) []int64 {
	tb.Helper()
	bid, ok := m.BuilderID(builder)
	if !ok {
		tb.Fatalf("citest: no builder %q", builder)
	}
	var ids []int64
	running := false
	m.WaitFor(tb, fmt.Sprintf("%d builds of %q to run", n, builder), func() bool {
		bs, _, err := m.Store.ListBuilds(context.Background(), ci.BuildQuery{BuilderID: bid, Complete: &running})
		if err != nil {
			tb.Fatalf("citest: %v", err)
		}
		ids = ids[:0]
		for _, b := range bs {
			ids = append(ids, b.ID)
		}
		return len(ids) >= n
	})
	return ids
}

// WaitStep waits until the build has started the step called name, and
// returns its record.
func (m *Master) WaitStep(tb testing.TB, buildID int64, name string) *ci.StepRecord {
	tb.Helper()
	var found *ci.StepRecord
	m.WaitFor(tb, fmt.Sprintf("step %q of build %d to start", name, buildID), func() bool {
		steps, err := m.Store.ListSteps(context.Background(), buildID)
		if err != nil {
			tb.Fatalf("citest: %v", err)
		}
		for _, s := range steps {
			if s.Name == name {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// LoadBuild reads a build and its steps from the store.
func (m *Master) LoadBuild(tb testing.TB, id int64) *Build {
	tb.Helper()
	ctx := context.Background()
	rec, err := m.Store.GetBuild(ctx, id)
	if err != nil {
		tb.Fatalf("citest: %v", err)
	}
	steps, err := m.Store.ListSteps(ctx, id)
	if err != nil {
		tb.Fatalf("citest: %v", err)
	}
	return &Build{Record: rec, Steps: steps, m: m, tb: tb}
}

// A Build is a build as stored, with helpers to read it.
type Build struct {
	Record *ci.Build
	Steps  []*ci.StepRecord
	m      *Master
	tb     testing.TB
}

// Results returns the build's results.
func (b *Build) Results() ci.Result { return b.Record.Results }

// Property returns a property of the build.
func (b *Build) Property(name string) any {
	v, _ := b.Record.Properties.Get(name)
	return v
}

// Step returns the step of that name, failing the test if there is none.
func (b *Build) Step(name string) *ci.StepRecord {
	b.tb.Helper()
	for _, s := range b.Steps {
		if s.Name == name {
			return s
		}
	}
	var names []string
	for _, s := range b.Steps {
		names = append(names, s.Name)
	}
	b.tb.Fatalf("citest: build %d has no step %q (steps: %s)", b.Record.Number, name, strings.Join(names, ", "))
	return nil
}

// StepResults returns each step's name and result, in order.
func (b *Build) StepResults() map[string]ci.Result {
	out := map[string]ci.Result{}
	for _, s := range b.Steps {
		out[s.Name] = s.Results
	}
	return out
}

// LogLines returns a log of a step as stored: for stream logs, each line
// starts with its stream's letter ('o', 'e', 'h').
func (b *Build) LogLines(step, log string) string {
	b.tb.Helper()
	_, text := b.readLog(step, log)
	return text
}

func (b *Build) readLog(step, log string) (*ci.Log, string) {
	b.tb.Helper()
	s := b.Step(step)
	ctx := context.Background()
	logs, err := b.m.Store.ListLogs(ctx, s.ID)
	if err != nil {
		b.tb.Fatalf("citest: %v", err)
	}
	for _, l := range logs {
		if l.Name == log {
			text, err := b.m.Store.LogLines(ctx, l.ID, 0, -1)
			if err != nil {
				b.tb.Fatalf("citest: %v", err)
			}
			return l, text
		}
	}
	var names []string
	for _, l := range logs {
		names = append(names, l.Name)
	}
	b.tb.Fatalf("citest: step %q has no log %q (logs: %s)", step, log, strings.Join(names, ", "))
	return nil, ""
}

// Log returns the text of a step's log; for a stream log, only standard
// output and standard error, without the stream letters.
func (b *Build) Log(step, log string) string {
	b.tb.Helper()
	l, text := b.readLog(step, log)
	if l.Type != ci.LogStream {
		return text
	}
	return Output(text, "oe")
}

// Header returns the header lines of a step's stream log (what the worker
// and Kiln said about the command).
func (b *Build) Header(step, log string) string {
	return Output(b.LogLines(step, log), "h")
}

// Output keeps the lines of a stored stream log whose stream letter is in
// streams, without the letters.
func Output(stored, streams string) string {
	var out strings.Builder
	for _, line := range strings.SplitAfter(stored, "\n") {
		if line == "" {
			continue
		}
		if strings.ContainsRune(streams, rune(line[0])) {
			out.WriteString(line[1:])
		}
	}
	return out.String()
}

// testWriter writes the master's log to the test log.
type testWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)
