package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Dependent is Buildbot's Dependent scheduler: when a buildset of the
// Upstream scheduler completes with SUCCESS or WARNINGS, it builds the same
// source stamps on its own builders.
//
// It keeps in the store the upstream buildsets it waits for and how far it
// has looked, so that a restart neither misses an upstream buildset that
// completed while it was not running nor builds one twice. On its first
// start it follows the upstream buildsets not yet complete; earlier ones
// are history and are not built.
//
// A Dependent value serves one master at a time.
type Dependent struct {
	// Name identifies the scheduler, and its state in the master's store.
	Name string
	// Upstream names the scheduler whose buildsets this one follows; it
	// must be a scheduler of the same configuration.
	Upstream string
	// Builders lists the builders each buildset has a request for.
	Builders []string
	// Reason says why, for people; "downstream" by default, as in Buildbot.
	Reason string
	// Properties are given to the builds, with source "Scheduler".
	Properties map[string]any
	// Priority of the requests it submits.
	Priority int

	mu       sync.Mutex
	prepared *dependentSub // taken by Prepare, for Run
}

// A dependentSub is a subscription to the master's events and when it
// began.
type dependentSub struct {
	since time.Time
	sub   *ci.Subscription
}

var (
	_ ci.Scheduler = (*Dependent)(nil)
	_ ci.Service   = (*Dependent)(nil)
	_ ci.Preparer  = (*Dependent)(nil)
)

// Prepare implements ci.Preparer: it subscribes to the master's events
// before the master starts its first build, so that an upstream buildset
// left pending by the last run, and built as soon as the master starts, is
// seen completing.
func (d *Dependent) Prepare(m *ci.Master) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prepared == nil {
		d.prepared = &dependentSub{since: m.Now(), sub: m.Subscribe(dependentQueue)}
	}
}

// dependentQueue is how many events a Dependent's subscription holds;
// beyond, it catches up from the store.
const dependentQueue = 4096

// SchedulerName implements ci.Scheduler.
func (d *Dependent) SchedulerName() string { return d.Name }

// BuilderNames implements ci.Scheduler.
func (d *Dependent) BuilderNames() []string { return d.Builders }

// Validate checks the configuration; the master calls it before starting.
func (d *Dependent) Validate() error {
	var errs []error
	switch {
	case d.Upstream == "":
		errs = append(errs, errors.New("Upstream is empty: name the scheduler whose buildsets this one follows"))
	case d.Upstream == d.Name:
		errs = append(errs, fmt.Errorf("Upstream %q is the scheduler itself", d.Upstream))
	}
	errs = append(errs, checkProperties(d.Properties))
	return errors.Join(errs...)
}

// ValidateConfig checks that Upstream is a scheduler of the configuration;
// the master calls it with the whole configuration before starting.
func (d *Dependent) ValidateConfig(c *ci.MasterConfig) error {
	if d.Upstream == "" || d.Upstream == d.Name {
		return nil // Validate says it
	}
	for _, s := range c.Schedulers {
		if s != nil && s.SchedulerName() == d.Upstream {
			return nil
		}
	}
	return fmt.Errorf("Upstream %q is not a scheduler of the configuration", d.Upstream)
}

func (d *Dependent) builds() builds {
	reason := d.Reason
	if reason == "" {
		reason = "downstream"
	}
	return builds{name: d.Name, builders: d.Builders, reason: reason, properties: d.Properties, priority: d.Priority}
}

// dependentState is the stored document (key "dependent").
type dependentState struct {
	// Seen is the buildset ID up to which every buildset was looked at.
	Seen int64 `json:"seen"`
	// Waiting lists the upstream buildsets not yet complete.
	Waiting []int64  `json:"waiting,omitempty"`
	Pending []intent `json:"pending,omitempty"`
}

type dependentRun struct {
	d     *Dependent
	m     *ci.Master
	st    ci.Store
	ctx   context.Context
	state dependentState
	// On the first start, the buildsets up to initSeen that complete from
	// since on are followed too: init may find one complete that a
	// subscriber would see complete after it subscribed.
	initSeen int64
	since    time.Time
	// done has the upstream buildsets this run saw complete.
	done map[int64]bool
}

// Run implements ci.Service: it follows the upstream scheduler's buildsets
// until ctx ends. It fails, stopping the master, if Upstream is not a
// scheduler of the master.
func (d *Dependent) Run(ctx context.Context, m *ci.Master) error {
	// Subscribe before looking at the store, so that nothing falls between:
	// in Prepare, before the master started anything, unless Run is
	// called without it.
	d.mu.Lock()
	p := d.prepared
	d.prepared = nil
	d.mu.Unlock()
	if p == nil {
		p = &dependentSub{since: m.Now(), sub: m.Subscribe(dependentQueue)}
	}
	since, sub := p.since, p.sub
	defer sub.Close()
	if _, ok := m.Scheduler(d.Upstream); !ok {
		return fmt.Errorf("scheduler %q: Upstream %q is not a scheduler of the configuration", d.Name, d.Upstream)
	}
	st, err := m.Store(ctx)
	if err != nil {
		return err
	}
	r := &dependentRun{d: d, m: m, st: st, ctx: context.WithoutCancel(ctx), since: since, done: map[int64]bool{}}
	found, err := loadState(ctx, st, d.Name, stateKeyDependent, &r.state)
	if err != nil {
		return err
	}
	if !found {
		if err := r.init(); err != nil {
			return fmt.Errorf("scheduler %q: %w", d.Name, err)
		}
	}
	r.retryPending()
	r.catchUp()
	dropped := sub.Dropped()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-sub.C:
			if n := sub.Dropped(); n != dropped {
				dropped = n
				r.catchUp()
				continue
			}
			switch e.Type {
			case ci.EventBuildsetNew:
				if e.BuildsetID == r.state.Seen+1 {
					r.examine(e.BuildsetID)
				} else if e.BuildsetID > r.state.Seen {
					r.catchUp()
				}
			case ci.EventBuildsetComplete:
				switch {
				case slices.Contains(r.state.Waiting, e.BuildsetID):
					r.check(e.BuildsetID)
				case e.BuildsetID <= r.initSeen:
					r.completedAtFirstStart(e.BuildsetID)
				}
			}
		}
	}
}

// init starts following from the newest buildset, with the upstream
// buildsets not yet complete.
func (r *dependentRun) init() error {
	seen, err := lastBuildsetID(r.ctx, r.st)
	if err != nil {
		return err
	}
	r.state.Seen = seen
	r.initSeen = seen
	incomplete := false
	reqs, _, err := r.st.ListRequests(r.ctx, ci.RequestQuery{Complete: &incomplete})
	if err != nil {
		return fmt.Errorf("list incomplete requests: %w", err)
	}
	for _, req := range reqs {
		if req.BuildsetID > seen || slices.Contains(r.state.Waiting, req.BuildsetID) {
			continue
		}
		bs, err := r.st.GetBuildset(r.ctx, req.BuildsetID)
		if err != nil {
			return err
		}
		if bs.Scheduler == r.d.Upstream && !bs.Complete {
			r.state.Waiting = append(r.state.Waiting, bs.ID)
		}
	}
	return r.save()
}

// completedAtFirstStart follows an upstream buildset that init found
// complete but that completed after the scheduler subscribed.
func (r *dependentRun) completedAtFirstStart(id int64) {
	bs, err := r.st.GetBuildset(r.ctx, id)
	if err != nil {
		r.logError("could not read a completed buildset", err)
		return
	}
	if r.done[id] || bs.Scheduler != r.d.Upstream || bs.CompleteAt.Before(r.since) {
		return
	}
	r.state.Waiting = append(r.state.Waiting, id)
	r.check(id)
}

func (r *dependentRun) save() error {
	return saveState(r.ctx, r.st, r.d.Name, stateKeyDependent, r.state)
}

func (r *dependentRun) logError(msg string, err error) {
	r.m.Logger().Error("scheduler: "+msg, "scheduler", r.d.Name, "upstream", r.d.Upstream, "err", err)
}

// examine looks at the buildset just after Seen.
func (r *dependentRun) examine(id int64) {
	bs, err := r.st.GetBuildset(r.ctx, id)
	if err != nil {
		r.logError("could not read a new buildset", err)
		r.catchUp()
		return
	}
	r.state.Seen = id
	if bs.Scheduler != r.d.Upstream {
		return // Seen is saved with the next change that matters
	}
	r.state.Waiting = append(r.state.Waiting, id)
	if err := r.save(); err != nil {
		r.logError("could not save its state", err)
	}
	if bs.Complete {
		r.check(id)
	}
}

// catchUp looks at every buildset after Seen, then at every upstream
// buildset waited for.
func (r *dependentRun) catchUp() {
	var newer []int64
	var seen int64
	err := buildsetsAfter(r.ctx, r.st, r.state.Seen, func(bs *ci.Buildset) (bool, error) {
		seen = max(seen, bs.ID)
		if bs.Scheduler == r.d.Upstream {
			newer = append(newer, bs.ID)
		}
		return true, nil
	})
	if err != nil {
		r.logError("could not look for upstream buildsets", err)
		return
	}
	if seen > r.state.Seen {
		slices.Reverse(newer)
		for _, id := range newer {
			if !slices.Contains(r.state.Waiting, id) {
				r.state.Waiting = append(r.state.Waiting, id)
			}
		}
		r.state.Seen = seen
		if err := r.save(); err != nil {
			r.logError("could not save its state", err)
		}
	}
	for _, id := range slices.Clone(r.state.Waiting) {
		r.check(id)
	}
}

// check builds an upstream buildset's source if it completed well, and
// stops waiting for it once it completed.
func (r *dependentRun) check(id int64) {
	bs, err := r.st.GetBuildset(r.ctx, id)
	if errors.Is(err, ci.ErrNotFound) {
		r.state.Waiting = slices.DeleteFunc(r.state.Waiting, func(x int64) bool { return x == id })
		return
	}
	if err != nil {
		r.logError("could not read an upstream buildset", err)
		return
	}
	if !bs.Complete {
		return
	}
	r.done[id] = true
	waiting := slices.DeleteFunc(slices.Clone(r.state.Waiting), func(x int64) bool { return x == id })
	if bs.Results != ci.Success && bs.Results != ci.Warnings {
		r.state.Waiting = waiting
		if err := r.save(); err != nil {
			r.logError("could not save its state", err)
		}
		r.m.Logger().Info("scheduler: upstream buildset did not succeed; not building", "scheduler", r.d.Name, "upstream_buildset", id, "results", bs.Results)
		return
	}
	in, err := newIntent(r.ctx, r.st, fmt.Sprintf("%s:upstream:%d", r.d.Name, id))
	if err != nil {
		r.logError("could not build after an upstream buildset", err)
		return
	}
	in.Upstream = id
	prev := r.state
	r.state.Waiting = waiting
	r.state.Pending = append(slices.Clone(r.state.Pending), in)
	if err := r.save(); err != nil {
		r.state = prev
		r.logError("could not build after an upstream buildset", err)
		return
	}
	r.submit(in, bs)
}

// submit submits an intent's buildset and forgets the intent.
func (r *dependentRun) submit(in intent, upstream *ci.Buildset) {
	sub := r.d.builds().submission()
	for _, ss := range upstream.SourceStamps {
		sub.SourceStamps = append(sub.SourceStamps, ci.SourceStamp{ID: ss.ID})
	}
	sub.ExternalID = in.Token
	bs, _, err := r.m.Submit(r.ctx, sub)
	if err != nil {
		r.logError("could not submit a buildset; it will be submitted at the next start", err)
		return
	}
	r.m.Logger().Info("scheduler: upstream buildset succeeded; building", "scheduler", r.d.Name, "upstream_buildset", upstream.ID, "buildset", bs.ID)
	r.state.Pending = slices.DeleteFunc(slices.Clone(r.state.Pending), func(p intent) bool { return p.Token == in.Token })
	if err := r.save(); err != nil {
		r.logError("could not save its state", err)
	}
}

// retryPending submits the buildsets of recorded intents missing from the
// store.
func (r *dependentRun) retryPending() {
	for _, in := range slices.Clone(r.state.Pending) {
		done, err := submitted(r.ctx, r.st, in)
		if err != nil {
			r.logError("could not check a pending buildset", err)
			continue
		}
		if !done {
			up, err := r.st.GetBuildset(r.ctx, in.Upstream)
			if err != nil {
				r.logError("could not read an upstream buildset", err)
				continue
			}
			r.submit(in, up)
			continue
		}
		r.state.Pending = slices.DeleteFunc(slices.Clone(r.state.Pending), func(p intent) bool { return p.Token == in.Token })
		if err := r.save(); err != nil {
			r.logError("could not save its state", err)
		}
	}
}
