package ci

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// errStopped is the cause of a step's cancellation by StopBuild.
type errStopped struct{ reason string }

func (e errStopped) Error() string { return "build stopped: " + e.reason }

// pingTimeout bounds the check that a worker answers before a build.
const pingTimeout = 30 * time.Second

// runningBuild is the master's state of one running build.
type runningBuild struct {
	m        *Master
	rec      *Build
	builder  *builderState
	worker   *workerState
	conn     WorkerConn
	buildset *Buildset
	requests []*pendingRequest

	mu         sync.Mutex
	props      Properties
	stopped    bool
	stopReason string
	cancelStep context.CancelCauseFunc
	stepNames  map[string]int
	current    *StepRun

	stateMu sync.Mutex // guards state and StepRun.ended
	state   buildState

	// ended is the end of the last step, when it waits to be stored with
	// the next write of the build (a StepFinishStore). Only the build's
	// goroutine uses it.
	ended *stepEnd
}

// heardRecently reports whether conn heard from its worker less than
// PingQuiet ago.
func (m *Master) heardRecently(conn WorkerConn) bool {
	hr, ok := conn.(HeardReporter)
	return ok && m.now().Sub(hr.LastHeard()) < PingQuiet
}

// runBuild runs one build decided on by the distributor.
func (m *Master) runBuild(ctx context.Context, s *buildStart) {
	defer m.buildWG.Done()
	b, w := s.builder, s.worker
	registered := false
	release := func() {
		m.mu.Lock()
		m.locks.release(b.cfg.Locks, w.cfg.Name)
		w.running--
		delete(w.busy, b)
		if !registered {
			m.starting--
		}
		m.idle.Broadcast()
		conn := w.conn
		shutdown := w.graceful && w.running == 0 && conn != nil
		m.mu.Unlock()
		if shutdown {
			go m.shutdownWorker(w, conn)
		}
		m.poke()
	}
	defer release()

	// Check that the worker answers before claiming anything, as Buildbot
	// does, unless it was heard from just now; one that does not answer
	// is dropped.
	if !m.heardRecently(s.conn) {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := s.conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("worker did not answer before a build; disconnecting it", "worker", w.cfg.Name, "err", err)
				s.conn.Close()
			}
			m.requeue(s.requests)
			return
		}
	}

	newest := s.requests[0]
	bs := newest.bs
	info := s.conn.Info()
	props := Properties{}
	props.SetAll(b.cfg.Properties, SourceBuilder)
	props.SetAll(w.cfg.Properties, SourceWorker)
	if len(bs.SourceStamps) > 0 {
		ss := bs.SourceStamps[0]
		for _, c := range bs.SourceStamps {
			if c.Codebase == "" {
				ss = c
			}
		}
		props.Set("branch", ss.Branch, SourceBuild)
		props.Set("revision", ss.Revision, SourceBuild)
		props.Set("repository", ss.Repository, SourceBuild)
		props.Set("project", ss.Project, SourceBuild)
		props.Set("codebase", ss.Codebase, SourceBuild)
	}
	props.Update(bs.Properties)
	if bs.Scheduler != "" {
		props.Set("scheduler", bs.Scheduler, SourceScheduler)
	}
	props.Set("buildername", b.cfg.Name, SourceBuilder)
	props.Set("workername", w.cfg.Name, SourceWorker)
	props.Set("builddir", info.JoinPath(info.Basedir(), b.cfg.BuildDir()), SourceWorker)

	rec := &Build{
		BuilderID:   b.id,
		WorkerID:    w.id,
		StartedAt:   m.now(),
		StateString: stateBuilding,
		Properties:  m.redactor.RedactProperties(props.Clone()),
		MasterID:    m.masterID,
	}
	ids := make([]int64, len(s.requests))
	for i, r := range s.requests {
		ids[i] = r.req.ID
	}
	if err := m.store.StartBuild(ctx, rec, ids); err != nil {
		m.handleStartFailure(ctx, s, err)
		return
	}
	props.Set("buildnumber", rec.Number, SourceBuild)
	rb := &runningBuild{m: m, rec: rec, builder: b, worker: w, conn: s.conn, buildset: bs, requests: s.requests, props: props, stepNames: map[string]int{}}
	rb.state.written = rec.StartedAt
	m.mu.Lock()
	m.running[rec.ID] = rb
	m.starting--
	registered = true
	m.mu.Unlock()
	for _, r := range s.requests {
		r.req.Claimed, r.req.ClaimedAt, r.req.BuildID = true, rec.StartedAt, rec.ID
	}
	m.publish(Event{Type: EventBuildStarted, BuildID: rec.ID, BuilderID: b.id, WorkerID: w.id, RequestID: ids[0], BuildsetID: bs.ID})
	m.log.Info("build started", "builder", b.cfg.Name, "number", rec.Number, "build", rec.ID, "worker", w.cfg.Name, "requests", ids)

	results, summary := rb.run(ctx)
	m.mu.Lock()
	delete(m.running, rec.ID)
	m.mu.Unlock()
	m.finishBuild(rb, results, summary)
}

// handleStartFailure puts back the requests of a build that could not be
// stored: those still pending go back in the queue.
func (m *Master) handleStartFailure(ctx context.Context, s *buildStart, err error) {
	if !errors.Is(err, ErrConflict) {
		m.log.Error("could not start build; retrying its requests shortly", "builder", s.builder.cfg.Name, "err", err)
		m.clock.AfterFunc(time.Second, func() { m.requeue(s.requests) })
		return
	}
	var back []*pendingRequest
	for _, r := range s.requests {
		cur, gerr := m.store.GetRequest(context.WithoutCancel(ctx), r.req.ID)
		if gerr == nil && !cur.Claimed && !cur.Complete {
			back = append(back, r)
		}
	}
	m.requeue(back)
}

// run runs the steps of the build and returns its results and a summary.
func (rb *runningBuild) run(ctx context.Context) (Result, string) {
	results := Success
	terminate := false
	var failed []string
	for i, step := range rb.builder.cfg.Steps {
		opts := step.Options()
		rb.mu.Lock()
		stopped := rb.stopped
		rb.mu.Unlock()
		if (terminate || stopped) && !opts.AlwaysRun {
			continue
		}
		r := rb.runStep(ctx, i, step, opts)
		var term bool
		results, term = buildResult(opts, r, results)
		terminate = terminate || term
		if r != Success && r != Skipped {
			failed = append(failed, opts.Name)
		}
	}
	rb.mu.Lock()
	if rb.stopped {
		results = Worst(results, Cancelled)
	}
	rb.mu.Unlock()
	if ctx.Err() != nil && context.Cause(ctx) == errShutdown && results != Cancelled {
		results = Retry
	}
	return results, buildSummary(results, failed)
}

func buildSummary(r Result, failed []string) string {
	switch r {
	case Success:
		return "build successful"
	case Skipped:
		return "build skipped"
	case Cancelled:
		return "build cancelled"
	case Retry:
		return "retry: build interrupted"
	}
	return fmt.Sprintf("%s %s", map[Result]string{Warnings: "warnings", Failure: "failed", Exception: "exception"}[r], strings.Join(failed, " "))
}

// uniqueName gives a step name not used before in the build.
func (rb *runningBuild) uniqueName(name string) string {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	n, seen := rb.stepNames[name]
	rb.stepNames[name] = n + 1
	if !seen {
		return name
	}
	for {
		cand := fmt.Sprintf("%s_%d", name, n)
		if _, dup := rb.stepNames[cand]; !dup {
			rb.stepNames[cand] = 1
			return cand
		}
		n++
	}
}

// runStep runs one step and records it; it returns the step's result.
func (rb *runningBuild) runStep(ctx context.Context, number int, step Step, opts StepOptions) Result {
	m := rb.m
	name := opts.Name
	if name == "" {
		name = "step"
	}
	name = rb.uniqueName(name)
	rec := &StepRecord{
		BuildID:     rb.rec.ID,
		Number:      number,
		Name:        name,
		StartedAt:   m.now(),
		StateString: firstNonEmpty(opts.Description, name),
	}
	var logs []*Log
	if sl, ok := step.(StartLogger); ok && opts.RunIf == nil {
		for _, l := range sl.StartLogs() {
			if l.Type == "" {
				l.Type = LogStream
			}
			logs = append(logs, &Log{Name: l.Name, Type: l.Type})
		}
	}
	logs, err := rb.addStep(context.WithoutCancel(ctx), rec, logs)
	if err != nil {
		m.log.Error("could not record step; the build ends", "build", rb.rec.ID, "step", name, "err", err)
		return Exception
	}
	m.publish(Event{Type: EventStepStarted, BuildID: rb.rec.ID, StepID: rec.ID, BuilderID: rb.builder.id})

	stepCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rb.mu.Lock()
	rb.cancelStep = cancel
	// A stop that came after run checked for one (while this step was
	// being recorded) found no step to interrupt: interrupt this one.
	if rb.stopped && !opts.AlwaysRun {
		cancel(errStopped{rb.stopReason})
	}
	rb.mu.Unlock()
	s := &StepRun{build: rb, rec: rec, opts: opts}
	for _, l := range logs {
		s.addLogWriter(*l, true)
	}
	rb.mu.Lock()
	rb.current = s
	rb.mu.Unlock()
	rb.stepStarted()

	var result Result
	if len(opts.Locks) > 0 {
		s.SetStateString("waiting for locks")
		err = m.acquireStepLocks(stepCtx, opts.Locks, rb.worker.cfg.Name)
		if err == nil {
			s.SetStateString("")
			defer m.releaseStepLocks(opts.Locks, rb.worker.cfg.Name)
		}
	}
	if err == nil {
		result, err = rb.callStep(stepCtx, s, step, opts)
	}
	if stepCtx.Err() != nil {
		if cause := context.Cause(stepCtx); cause == errShutdown {
			result, err = Retry, nil
		} else if _, ok := cause.(errStopped); ok {
			result, err = Cancelled, nil
			s.errorLog("step interrupted: " + cause.Error())
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrWorkerLost):
			result = Retry
		default:
			result = Exception
		}
		s.errorLog(err.Error())
		m.log.Warn("step could not run", "build", rb.rec.ID, "step", name, "result", result, "err", err)
	}
	rb.stepEnded(s)

	rb.mu.Lock()
	rb.cancelStep = nil
	rb.current = nil
	rb.mu.Unlock()
	rec.Results = result
	rec.Complete = true
	rec.CompleteAt = m.now()
	rec.StateString = s.finalState(result)
	if opts.HideIf != nil {
		rec.Hidden = opts.HideIf(result, s)
	}
	for i, u := range rec.URLs {
		rec.URLs[i].URL = m.redactor.Redact(u.URL)
	}
	e := s.end(rec)
	if _, ok := m.store.(StepFinishStore); ok {
		rb.ended = e // stored with the next step's start, or the build's end
	} else {
		e.writeApart(context.WithoutCancel(ctx))
	}
	return result
}

// addStep stores a step that starts, with the end of the step before it
// when that waits to be stored, and with the logs it adds first when the
// store can store them together (a StepLogStore). It returns the logs
// stored: logs, or none.
func (rb *runningBuild) addStep(ctx context.Context, rec *StepRecord, logs []*Log) ([]*Log, error) {
	m := rb.m
	e := rb.ended
	rb.ended = nil
	if ls, ok := m.store.(StepLogStore); ok && len(logs) > 0 {
		var prev *StepRecord
		var ends []LogEnd
		if e != nil {
			prev, ends = e.rec, e.ends
		}
		err := ls.AddStepLogs(ctx, prev, ends, rec, logs)
		if err == nil {
			if e != nil {
				e.stored()
			}
			return logs, nil
		}
		m.log.Warn("could not record the start of a step with its logs; recording them apart", "build", rb.rec.ID, "step", rec.Name, "err", err)
		rec.ID = 0
		if e != nil {
			e.writeApart(ctx)
			e = nil
		}
	}
	if e == nil {
		return nil, m.store.AddStep(ctx, rec)
	}
	err := m.store.(StepFinishStore).FinishStepAddStep(ctx, e.rec, e.ends, rec)
	if err == nil {
		e.stored()
		return nil, nil
	}
	m.log.Warn("could not record the end of a step with the start of the next; recording them apart", "build", rb.rec.ID, "step", e.rec.ID, "err", err)
	e.writeApart(ctx)
	return nil, m.store.AddStep(ctx, rec)
}

// callStep evaluates RunIf and runs the step, turning a panic into an
// error.
func (rb *runningBuild) callStep(ctx context.Context, s *StepRun, step Step, opts StepOptions) (result Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			result, err = Exception, fmt.Errorf("step panicked: %v\n%s", p, debug.Stack())
		}
	}()
	if opts.RunIf != nil {
		run, err := opts.RunIf(ctx, s)
		if err != nil {
			return Exception, fmt.Errorf("RunIf: %w", err)
		}
		if !run {
			s.SetStateString("skipped")
			return Skipped, nil
		}
	}
	return step.Run(ctx, s)
}

// finishBuild records the end of a build and wakes who waits for it.
func (m *Master) finishBuild(rb *runningBuild, results Result, summary string) {
	rec := rb.rec
	rec.Results = results
	rec.Complete = true
	rec.CompleteAt = m.now()
	rec.StateString = m.redactor.Redact(summary)
	rb.mu.Lock()
	rec.Properties = m.redactor.RedactProperties(rb.props.Clone())
	rb.mu.Unlock()
	resubmit := results == Retry
	var completed []BuildsetResult
	var err error
	if e := rb.ended; e != nil {
		// The last step's end waits: stored with the build's.
		rb.ended = nil
		completed, err = m.store.(StepFinishStore).FinishStepAndBuild(context.Background(), e.rec, e.ends, rec, resubmit)
		if err == nil {
			e.stored()
		} else {
			m.log.Warn("could not record the end of the last step with the build's; recording them apart", "build", rec.ID, "step", e.rec.ID, "err", err)
			e.writeApart(context.Background())
			completed, err = m.storeBuildEnd(rec, resubmit)
		}
	} else {
		completed, err = m.storeBuildEnd(rec, resubmit)
	}
	if err != nil {
		m.log.Error("could not record build end; it will be closed at the next start", "build", rec.ID, "err", err)
		return
	}
	if resubmit {
		for _, r := range rb.requests {
			r.req.Claimed, r.req.BuildID = false, 0
		}
		m.mu.Lock()
		stopping := m.stopping
		m.mu.Unlock()
		if !stopping {
			m.requeue(rb.requests)
		}
	}
	m.publish(Event{Type: EventBuildFinished, BuildID: rec.ID, BuilderID: rb.builder.id, WorkerID: rb.worker.id, RequestID: rec.BuildRequestID, BuildsetID: rb.buildset.ID, Results: results})
	for _, bs := range completed {
		m.publish(Event{Type: EventBuildsetComplete, BuildsetID: bs.ID, Results: bs.Results})
	}
	m.log.Info("build finished", "builder", rb.builder.cfg.Name, "number", rec.Number, "build", rec.ID, "results", results)
}

// storeBuildEnd records the end of a build and returns the results of
// the buildsets it completes.
func (m *Master) storeBuildEnd(rec *Build, resubmit bool) ([]BuildsetResult, error) {
	if rs, ok := m.store.(BuildsetResultStore); ok {
		return rs.FinishBuildResults(context.Background(), rec, resubmit)
	}
	ids, err := m.store.FinishBuild(context.Background(), rec, resubmit)
	var completed []BuildsetResult
	for _, id := range ids {
		// The buildset's results, read back.
		if bs, gerr := m.store.GetBuildset(context.Background(), id); gerr == nil {
			completed = append(completed, BuildsetResult{ID: id, Results: bs.Results})
		}
	}
	return completed, err
}

// StopBuild stops a running build: its current step is interrupted and ends
// CANCELLED, and only steps with AlwaysRun run after it. It returns an error
// wrapping ErrBuildNotRunning if no such build is running. Among masters
// sharing a database, a build another master runs is stopped by that
// master, asked with a build.stop event: StopBuild returns once it is
// asked.
func (m *Master) StopBuild(ctx context.Context, buildID int64, reason string) error {
	if err := m.waitReady(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	rb := m.running[buildID]
	m.mu.Unlock()
	if reason == "" {
		reason = "stopped"
	}
	if rb == nil && m.cluster != nil {
		b, err := m.store.GetBuild(ctx, buildID)
		if err == nil && !b.Complete && b.MasterID != 0 && b.MasterID != m.masterID {
			stop := Event{Type: EventBuildStop, BuildID: buildID, BuilderID: b.BuilderID, Reason: reason}
			m.publish(stop)
			m.log.Info("asked another master to stop a build", "build", buildID, "master", b.MasterID, "reason", reason)
			go m.askStopAgain(stop)
			return nil
		}
	}
	if rb == nil {
		return fmt.Errorf("stop build %d: %w", buildID, ErrBuildNotRunning)
	}
	rb.mu.Lock()
	if !rb.stopped {
		rb.stopped = true
		rb.stopReason = reason
		if rb.cancelStep != nil {
			rb.cancelStep(errStopped{reason})
		}
	}
	rb.mu.Unlock()
	m.log.Info("build stopped", "build", buildID, "reason", reason)
	return nil
}

// Asking another master to stop a build is repeated every restopEvery,
// restopTimes times at most, while the build runs: a master that was not
// listening when it was first asked (its connection for events dropped
// and not yet made again) hears it next time, and one that is stopping
// the build already ignores it.
const (
	restopEvery = 2 * time.Second
	restopTimes = 30
)

// askStopAgain publishes stop again while its build runs, until the
// master detaches its workers (it stops).
func (m *Master) askStopAgain(stop Event) {
	for range restopTimes {
		if Sleep(m.detaching, m.clock, restopEvery) != nil {
			return
		}
		b, err := m.store.GetBuild(m.detaching, stop.BuildID)
		if err != nil || b.Complete {
			return
		}
		m.log.Debug("asking again another master to stop a build", "build", stop.BuildID, "master", b.MasterID)
		m.publish(stop)
	}
}

// RunningBuilds returns the IDs of the builds running now.
func (m *Master) RunningBuilds() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]int64, 0, len(m.running))
	for id := range m.running {
		ids = append(ids, id)
	}
	return ids
}

// BuildProperties returns the current properties of a running build.
func (m *Master) BuildProperties(buildID int64) (Properties, bool) {
	m.mu.Lock()
	rb := m.running[buildID]
	m.mu.Unlock()
	if rb == nil {
		return nil, false
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return m.redactor.RedactProperties(rb.props.Clone()), true
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
