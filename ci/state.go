package ci

import (
	"context"
	"time"
)

// StateInterval bounds how often a running step's state is written to the
// store and told to subscribers: a step may set its state at every line
// of output it reads; the store and the pages see it at most this often,
// and always its last value.
const StateInterval = 250 * time.Millisecond

// The build's state while it runs: "building" until its first step
// starts, then the state of the step that runs (its description, then
// what the step says of itself), as Buildbot shows it.
const stateBuilding = "building"

// buildState follows the state of a running build's current step into
// the store.
type buildState struct {
	pending bool      // a write is scheduled
	written time.Time // when the last write was done (the build's start at first)
}

// stepStarted makes a step's first state the build's, written as any
// later state of the step: at most once per StateInterval, so that a step
// shorter than that (most are) costs no write of the build's state, and
// its final record carries its state. The build's start counts as a
// write (StartBuild stores its first state).
func (rb *runningBuild) stepStarted() {
	rb.stepStateChanged()
}

// setBuildState records the build's state and tells subscribers.
func (rb *runningBuild) setBuildState(state string) {
	m := rb.m
	state = m.redactor.Redact(state)
	rb.mu.Lock()
	same := rb.rec.StateString == state
	rb.rec.StateString = state
	rb.mu.Unlock()
	if same {
		return
	}
	if err := m.store.SetBuildState(context.Background(), rb.rec.ID, state); err != nil {
		m.log.Warn("could not record the build's state", "build", rb.rec.ID, "err", err)
		return
	}
	m.publish(Event{Type: EventBuildChanged, BuildID: rb.rec.ID, BuilderID: rb.builder.id})
}

// stepStateChanged schedules the write of the running step's new state,
// at most once per StateInterval.
func (rb *runningBuild) stepStateChanged() {
	rb.stateMu.Lock()
	defer rb.stateMu.Unlock()
	if rb.state.pending {
		return
	}
	rb.state.pending = true
	wait := StateInterval - rb.m.now().Sub(rb.state.written)
	if wait <= 0 {
		go rb.writeStepState()
		return
	}
	rb.m.clock.AfterFunc(wait, rb.writeStepState)
}

// writeStepState writes the state of the step running now, and the
// build's, unless the step has ended (its last record is then written by
// the runner). The write scheduled for an earlier step, which ended, is
// that of the next one.
func (rb *runningBuild) writeStepState() {
	rb.stateMu.Lock()
	defer rb.stateMu.Unlock()
	rb.state.pending = false
	rb.mu.Lock()
	s := rb.current
	rb.mu.Unlock()
	if s == nil || s.ended {
		return
	}
	rb.state.written = rb.m.now()
	m := rb.m
	s.mu.Lock()
	state := firstNonEmpty(s.state, s.opts.Description, s.rec.Name)
	rec := *s.rec
	s.mu.Unlock()
	rec.StateString = m.redactor.Redact(state)
	if err := m.store.UpdateStep(context.Background(), &rec); err != nil {
		m.log.Warn("could not record the step's state", "build", rb.rec.ID, "step", rec.Name, "err", err)
		return
	}
	m.publish(Event{Type: EventStepChanged, BuildID: rb.rec.ID, StepID: rec.ID, BuilderID: rb.builder.id})
	rb.setBuildState(state)
}

// stepEnded stops the writes of a step's running state: the runner
// writes its final record.
func (rb *runningBuild) stepEnded(s *StepRun) {
	rb.stateMu.Lock()
	s.ended = true
	rb.stateMu.Unlock()
}
