package ci

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// AddChange stores a change and hands it to the schedulers that listen for
// changes, which may submit buildsets for it. When AddChange returns nil the
// change and those buildsets are durable. On a database shared by several
// masters, only the master holding the claim on the schedulers hands them
// changes: another one returns once the change is stored, and the
// buildsets follow when the scheduling master hears of it. A change whose DedupKey was seen
// before is not stored again: c is filled from the stored one and added is
// false, and the schedulers are not told again.
func (m *Master) AddChange(ctx context.Context, c *Change) (added bool, err error) {
	if err := m.waitReady(ctx); err != nil {
		return false, err
	}
	if c.When.IsZero() {
		c.When = m.now()
	}
	m.changeMu.Lock()
	defer m.changeMu.Unlock()
	added, err = m.store.AddChange(ctx, c)
	if err != nil {
		return false, fmt.Errorf("add change: %w", err)
	}
	if !added {
		m.log.Info("change already received", "change", c.ID)
		if !m.SchedulesHere() {
			return false, nil
		}
		// Its first delivery may have stopped (a crash) after the change
		// was stored and before the schedulers had it: finish it now.
		if c.ID > m.scheduledChange {
			if err := m.scheduleChanges(ctx); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	m.publish(Event{Type: EventChangeNew, ChangeID: c.ID})
	m.log.Info("change added", "change", c.ID, "repository", c.Repository, "branch", c.Branch, "revision", c.Revision, "category", c.Category)
	if !m.SchedulesHere() {
		// The master running the schedulers hands them the change when
		// it hears of it (or at its next re-read).
		return true, nil
	}
	if err := m.scheduleChanges(ctx); err != nil {
		return true, err
	}
	return true, nil
}

// The state under which the master records the last change its schedulers
// have had.
const (
	stateObject       = "master"
	stateScheduledKey = "scheduled-change"
)

// scheduleChanges hands the schedulers, in order, the changes stored after
// the last one they had, and records how far they got: a change stored by a
// master that stopped before telling its schedulers is told by the next
// one. Schedulers submit with an ExternalID naming the change, so a change
// told twice is built once. m.changeMu is held.
func (m *Master) scheduleChanges(ctx context.Context) error {
	for {
		changes, err := m.store.ChangesAfter(ctx, m.scheduledChange, 100)
		if err != nil {
			return fmt.Errorf("schedule changes: %w", err)
		}
		if len(changes) == 0 {
			return nil
		}
		for _, c := range changes {
			for _, s := range m.cfg.Schedulers {
				l, ok := s.(ChangeListener)
				if !ok {
					continue
				}
				if err := l.OnChange(ctx, m, c); err != nil {
					m.log.Error("scheduler could not handle change", "scheduler", s.SchedulerName(), "change", c.ID, "err", err)
				}
			}
			m.scheduledChange = c.ID
			if err := m.store.SetState(ctx, stateObject, stateScheduledKey, []byte(strconv.FormatInt(c.ID, 10))); err != nil {
				return fmt.Errorf("schedule changes: record change %d: %w", c.ID, err)
			}
		}
	}
}

// A Submission asks for builds: one build request per builder, together a
// buildset.
type Submission struct {
	// Builders names the builders to build on.
	Builders []string
	// Reason says why, for people ("forced by alice: release").
	Reason string
	// SourceStamps say which source to build, one per codebase.
	SourceStamps []SourceStamp
	// Properties are given to the builds (with their own sources).
	Properties Properties
	// Priority orders pending requests: higher first, then oldest first.
	Priority int
	// Scheduler names the scheduler submitting.
	Scheduler string
	// ExternalID is an identifier for the submitter's own use, and an
	// idempotency key: submitting again with the same ExternalID stores
	// nothing and returns the first buildset. Schedulers use it so that a
	// change handed to them again after a crash is not built twice.
	ExternalID string
	// ParentBuildID is the build that triggered this submission, if any.
	ParentBuildID int64
}

// Submit stores a buildset with one pending request per builder, and
// returns them once durable. The requests are built when a worker is free.
func (m *Master) Submit(ctx context.Context, s Submission) (*Buildset, []*BuildRequest, error) {
	if err := m.waitReady(ctx); err != nil {
		return nil, nil, err
	}
	if len(s.Builders) == 0 {
		return nil, nil, errors.New("submit: no builders given")
	}
	var states []*builderState
	var ids []int64
	for _, name := range s.Builders {
		b, ok := m.builders[name]
		if !ok {
			return nil, nil, fmt.Errorf("submit: %w %q", ErrUnknownBuilder, name)
		}
		states = append(states, b)
		ids = append(ids, b.id)
	}
	props := s.Properties.Clone()
	if props == nil {
		props = Properties{}
	}
	bs := &Buildset{
		ExternalID:    s.ExternalID,
		Reason:        s.Reason,
		SubmittedAt:   m.now(),
		SourceStamps:  append([]SourceStamp(nil), s.SourceStamps...),
		Properties:    props,
		ParentBuildID: s.ParentBuildID,
		Scheduler:     s.Scheduler,
	}
	if len(bs.SourceStamps) == 0 {
		bs.SourceStamps = []SourceStamp{{}}
	}
	reqs, err := m.store.AddBuildset(ctx, bs, ids, s.Priority)
	if errors.Is(err, ErrDuplicate) {
		// Submitted before, under the same ExternalID: that one stands.
		m.log.Info("buildset already submitted", "buildset", bs.ID, "external_id", s.ExternalID)
		return bs, reqs, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("submit: %w", err)
	}
	m.publish(Event{Type: EventBuildsetNew, BuildsetID: bs.ID})
	m.mu.Lock()
	for i, r := range reqs {
		m.addPendingLocked(&pendingRequest{req: r, bs: bs, builder: states[i]})
	}
	m.mu.Unlock()
	for i, r := range reqs {
		m.publish(Event{Type: EventRequestNew, RequestID: r.ID, BuildsetID: bs.ID, BuilderID: states[i].id})
	}
	m.log.Info("buildset submitted", "buildset", bs.ID, "builders", s.Builders, "reason", s.Reason)
	m.poke()
	return bs, reqs, nil
}

// CancelRequest cancels a pending build request: it completes with result
// CANCELLED. A request already claimed by a build gives an error wrapping
// ErrConflict (stop the build instead).
func (m *Master) CancelRequest(ctx context.Context, id int64) error {
	if err := m.waitReady(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	var found *pendingRequest
	m.deletePendingLocked(func(p *pendingRequest) bool {
		if p.req.ID == id {
			found = p
			return true
		}
		return false
	})
	m.mu.Unlock()
	if found == nil {
		r, err := m.store.GetRequest(ctx, id)
		if err != nil {
			return fmt.Errorf("cancel request %d: %w", id, err)
		}
		if m.cluster == nil || r.Claimed || r.Complete {
			return fmt.Errorf("cancel request %d: %w: it is not pending", id, ErrConflict)
		}
		// Pending in the store, submitted on another master and not
		// yet heard of here.
		bs, err := m.store.GetBuildset(ctx, r.BuildsetID)
		if err != nil {
			return fmt.Errorf("cancel request %d: %w", id, err)
		}
		found = &pendingRequest{req: r, bs: bs, builder: &builderState{id: r.BuilderID}}
	}
	if err := m.store.CancelRequest(ctx, id, m.now()); err != nil {
		return fmt.Errorf("cancel request %d: %w", id, err)
	}
	m.publish(Event{Type: EventRequestCancelled, RequestID: id, BuildsetID: found.bs.ID, BuilderID: found.builder.id, Results: Cancelled})
	if bs, err := m.store.GetBuildset(ctx, found.bs.ID); err == nil && bs.Complete {
		m.publish(Event{Type: EventBuildsetComplete, BuildsetID: bs.ID, Results: bs.Results})
	}
	m.log.Info("build request cancelled", "request", id)
	return nil
}

// loadScheduled reads how far the schedulers got with the changes. A store
// that never recorded it (new, or from before this record) counts as
// having told them every change it holds.
func (m *Master) loadScheduled(ctx context.Context) error {
	v, err := m.store.GetState(ctx, stateObject, stateScheduledKey)
	if err == nil {
		id, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return fmt.Errorf("read the last scheduled change: %w", err)
		}
		m.scheduledChange = id
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("read the last scheduled change: %w", err)
	}
	last, _, err := m.store.ListChanges(ctx, Query{Desc: true, Limit: 1, NoTotal: true})
	if err != nil {
		return fmt.Errorf("read the last change: %w", err)
	}
	if len(last) > 0 {
		m.scheduledChange = last[0].ID
	}
	return m.store.SetState(ctx, stateObject, stateScheduledKey, []byte(strconv.FormatInt(m.scheduledChange, 10)))
}
