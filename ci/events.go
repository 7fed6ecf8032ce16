package ci

import (
	"sync"
	"sync/atomic"
)

// EventType says what happened.
type EventType string

// The events a master publishes.
const (
	EventChangeNew        EventType = "change.new"
	EventBuildsetNew      EventType = "buildset.new"
	EventBuildsetComplete EventType = "buildset.complete"
	EventRequestNew       EventType = "buildrequest.new"
	EventRequestCancelled EventType = "buildrequest.cancelled"
	EventBuildStarted     EventType = "build.started"
	EventBuildFinished    EventType = "build.finished"
	// EventBuildChanged: a running build's state changed.
	EventBuildChanged EventType = "build.changed"
	EventStepStarted  EventType = "step.started"
	// EventStepChanged: a running step's state changed.
	EventStepChanged        EventType = "step.changed"
	EventStepFinished       EventType = "step.finished"
	EventLogLines           EventType = "log.lines"
	EventLogFinished        EventType = "log.finished"
	EventWorkerConnected    EventType = "worker.connected"
	EventWorkerDisconnected EventType = "worker.disconnected"
	// EventWorkerChanged: a worker was paused, unpaused or asked to stop.
	EventWorkerChanged EventType = "worker.changed"
	// EventHookDelivery: a change hook answered a request (Dialect,
	// Status).
	EventHookDelivery EventType = "hook.delivery"
	// EventBuildStop: a master asks the master running a build (BuildID)
	// to stop it (Reason), among masters sharing a database.
	EventBuildStop EventType = "build.stop"
)

// An Event tells subscribers that a record changed; they read the record
// from the store. Only the IDs relevant to the event type are set.
type Event struct {
	Type       EventType
	ChangeID   int64
	BuildsetID int64
	RequestID  int64
	BuilderID  int64
	BuildID    int64
	StepID     int64
	LogID      int64
	WorkerID   int64
	// FirstLine and LastLine are the lines a log.lines event added, Bytes
	// their size.
	FirstLine, LastLine int
	Bytes               int
	// Dialect and Status are the change hook and HTTP status of a
	// hook.delivery event.
	Dialect string
	Status  int
	// Reason is why a build.stop event asks to stop a build.
	Reason string
	// Results is set on build.finished, step.finished and
	// buildset.complete.
	Results Result
	// MasterID is the master the event happened on, among masters
	// sharing a database (MasterRecord.ID); 0 on a master alone. A
	// master publishes the events of the others to its own subscribers:
	// its web UI shows every build.
	MasterID int64
}

// A Subscription receives the master's events on C, in the order they
// happened, until Close. Events are never waited for: when C's buffer is
// full an event is dropped and Dropped counts it, so a subscriber that falls
// behind must re-read what it follows from the store.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	bus     *bus
	dropped atomic.Int64
	once    sync.Once
}

// Dropped returns how many events were dropped because C was full.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		s.bus.mu.Unlock()
		close(s.c)
	})
}

type bus struct {
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
}

func newBus() *bus { return &bus{subs: map[*Subscription]struct{}{}} }

func (b *bus) subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = 256
	}
	c := make(chan Event, buffer)
	s := &Subscription{C: c, c: c, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *bus) publish(e Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
		}
	}
}
