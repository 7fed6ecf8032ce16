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

// Periodic is Buildbot's Periodic scheduler: it builds every Interval
// (Buildbot's periodicBuildTimer). The first build is at start, unless the
// store says when the last one was: the next is then Interval after it, at
// once if that time has passed (once, however many intervals were
// missed), so that a restart neither builds twice nor skips a build.
//
// It builds the newest changes it gathered (with OnlyIfChanged), or
// SourceStamps.
//
// A Periodic value serves one master at a time; it must not be changed
// once the master runs.
type Periodic struct {
	// Name identifies the scheduler, and its state in the master's store.
	Name string
	// Builders lists the builders each buildset has a request for.
	Builders []string
	// Interval is the time from one build to the next; it must be
	// positive.
	Interval time.Duration

	// OnlyIfChanged skips a build when no important change passing
	// ChangeFilter arrived since the last build. The first build after
	// OnlyIfChanged is turned on is not skipped, as in Buildbot, so that
	// what the builders last built is known. ChangeFilter,
	// FileIsImportant and OnlyImportant are as for AnyBranch and are only
	// used with OnlyIfChanged.
	OnlyIfChanged   bool
	ChangeFilter    ChangeFilter
	FileIsImportant func(c *ci.Change) bool
	OnlyImportant   bool

	// SourceStamps say what to build when no change is known: one per
	// codebase. Nil builds one empty source stamp: the steps' default
	// repository and branch, newest revision.
	SourceStamps []ci.SourceStamp
	// Reason says why, for people; by default "The Periodic scheduler
	// named '<Name>' triggered this build", as in Buildbot.
	Reason string
	// Properties are given to the builds, with source "Scheduler".
	Properties map[string]any
	// Priority of the requests it submits.
	Priority int

	engine *timed
}

var (
	_ ci.Scheduler      = (*Periodic)(nil)
	_ ci.ChangeListener = (*Periodic)(nil)
	_ ci.Service        = (*Periodic)(nil)
)

// SchedulerName implements ci.Scheduler.
func (p *Periodic) SchedulerName() string { return p.Name }

// BuilderNames implements ci.Scheduler.
func (p *Periodic) BuilderNames() []string { return p.Builders }

// Validate checks the configuration; the master calls it before starting.
func (p *Periodic) Validate() error {
	var errs []error
	if p.Interval <= 0 {
		errs = append(errs, fmt.Errorf("Interval must be positive (Buildbot's periodicBuildTimer), not %s", p.Interval))
	}
	errs = append(errs, p.config().validate())
	return errors.Join(errs...)
}

// OnChange implements ci.ChangeListener: with OnlyIfChanged, it keeps the
// changes passing the filter for the next build.
func (p *Periodic) OnChange(ctx context.Context, m *ci.Master, c *ci.Change) error {
	return engineOf(&p.engine).onChange(ctx, m, c, p.config())
}

// Run implements ci.Service: it builds on time until ctx ends.
func (p *Periodic) Run(ctx context.Context, m *ci.Master) error {
	return engineOf(&p.engine).serve(ctx, m, p.config())
}

func (p *Periodic) config() *timedConfig {
	return &timedConfig{
		builds:          builds{name: p.Name, builders: p.Builders, reason: defaultReason(p.Reason, "Periodic", p.Name), properties: p.Properties, priority: p.Priority},
		onlyIfChanged:   p.OnlyIfChanged,
		filter:          &p.ChangeFilter,
		fileIsImportant: p.FileIsImportant,
		onlyImportant:   p.OnlyImportant,
		sourceStamps:    p.SourceStamps,
		next: func(last, now time.Time) (time.Time, error) {
			if last.IsZero() {
				return now, nil
			}
			return last.Add(p.Interval), nil
		},
	}
}

// Nightly is Buildbot's Nightly scheduler: it builds at the times a cron
// specification gives, on the wall clock of a time zone.
//
// The times are given either as a standard cron Spec string or, as in
// Buildbot, field by field (Minute, Hour, DayOfMonth, Month, DayOfWeek),
// not both:
//
//	Spec: "0 3 * * 1-5"                        // 03:00, Monday to Friday
//	Hour: []int{3}, DayOfWeek: []time.Weekday{time.Monday, time.Tuesday,
//		time.Wednesday, time.Thursday, time.Friday} // the same
//
// # The cron dialect
//
// Spec has five fields separated by spaces: minute (0-59), hour (0-23),
// day of month (1-31), month (1-12 or jan-dec) and day of week (0-7 or
// sun-sat; 0 and 7 are both Sunday). Each field is a comma-separated list
// of elements: * (every value), N, N-M (a range), each optionally followed
// by /S (every S-th value of the range; N/S is N-max/S). Names are
// case-insensitive. When both day fields are restricted (neither starts
// with *), a day matches if either matches, as in Vixie cron ("0 0 1 * mon"
// is the first of the month and every Monday). The descriptors @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly stand for
// their usual specifications. Seconds, L, W, # and ? are not supported.
//
// # Buildbot's fields
//
// Buildbot's minute, hour, dayOfMonth and month arguments are Minute, Hour,
// DayOfMonth and Month; nil means every value, except Minute, where nil
// means 0 (Buildbot's default: Hour: []int{3} is 03:00 daily). Buildbot's
// dayOfWeek counts from Monday = 0; DayOfWeek is a list of time.Weekday
// values instead, so Buildbot's dayOfWeek=0 is time.Monday and
// dayOfWeek=6 is time.Sunday. (In Spec, numbers are cron's: 1 is Monday,
// 0 or 7 Sunday.)
//
// # Time zones and daylight saving
//
// Times are read on the wall clock of Location, or of the zone named by
// TimeZone (an IANA name such as "Europe/Paris", loaded when the
// configuration is checked), or of time.Local if neither is set. Each
// matching wall-clock time builds once: a time that occurs twice when
// clocks are set back builds at its first occurrence only, and a time that
// does not occur when clocks are set forward builds at the instant of the
// change (02:30 in Europe/Paris on the last Sunday of March builds at
// 03:00 CEST), as Vixie cron does.
//
// # Restarts
//
// The time of the last build is stored. After a restart, the next build is
// the first scheduled time after it: if that time passed while the master
// was stopped, the build runs at once (once, however many times were
// missed); otherwise at its time. A restart so neither builds twice nor
// skips a build. Without a stored time (the first start), the first build
// is the first scheduled time after start.
//
// A Nightly value serves one master at a time; it must not be changed once
// the master runs.
type Nightly struct {
	// Name identifies the scheduler, and its state in the master's store.
	Name string
	// Builders lists the builders each buildset has a request for.
	Builders []string

	// Spec is a cron specification (see the type's documentation).
	Spec string
	// Minute, Hour, DayOfMonth, Month and DayOfWeek are Buildbot's
	// fields, an alternative to Spec.
	Minute     []int
	Hour       []int
	DayOfMonth []int
	Month      []time.Month
	DayOfWeek  []time.Weekday

	// Location is the time zone of the schedule; or TimeZone names it.
	// time.Local if neither is set.
	Location *time.Location
	TimeZone string

	// OnlyIfChanged, ChangeFilter, FileIsImportant, OnlyImportant,
	// SourceStamps, Properties and Priority are as for Periodic.
	OnlyIfChanged   bool
	ChangeFilter    ChangeFilter
	FileIsImportant func(c *ci.Change) bool
	OnlyImportant   bool
	SourceStamps    []ci.SourceStamp
	// Reason says why, for people; by default "The Nightly scheduler named
	// '<Name>' triggered this build", as in Buildbot.
	Reason     string
	Properties map[string]any
	Priority   int

	engine *timed
}

var (
	_ ci.Scheduler      = (*Nightly)(nil)
	_ ci.ChangeListener = (*Nightly)(nil)
	_ ci.Service        = (*Nightly)(nil)
)

// SchedulerName implements ci.Scheduler.
func (n *Nightly) SchedulerName() string { return n.Name }

// BuilderNames implements ci.Scheduler.
func (n *Nightly) BuilderNames() []string { return n.Builders }

func (n *Nightly) hasFields() bool {
	return n.Minute != nil || n.Hour != nil || n.DayOfMonth != nil || n.Month != nil || n.DayOfWeek != nil
}

// schedule parses the schedule.
func (n *Nightly) schedule() (*cronSchedule, error) {
	switch {
	case n.Spec != "" && n.hasFields():
		return nil, errors.New("set Spec or the fields Minute, Hour, DayOfMonth, Month and DayOfWeek, not both")
	case n.Spec != "":
		c, err := parseCron(n.Spec)
		if err != nil {
			return nil, fmt.Errorf("Spec %q: %w", n.Spec, err)
		}
		return c, nil
	case n.hasFields():
		return fieldsSchedule(n.Minute, n.Hour, n.DayOfMonth, n.Month, n.DayOfWeek)
	}
	return nil, errors.New(`no schedule: set Spec (such as "0 3 * * *") or the fields Minute, Hour, DayOfMonth, Month and DayOfWeek`)
}

// location returns the schedule's time zone.
func (n *Nightly) location() (*time.Location, error) {
	switch {
	case n.Location != nil && n.TimeZone != "":
		return nil, errors.New("set Location or TimeZone, not both")
	case n.Location != nil:
		return n.Location, nil
	case n.TimeZone != "":
		loc, err := time.LoadLocation(n.TimeZone)
		if err != nil {
			return nil, fmt.Errorf("TimeZone %q: %w", n.TimeZone, err)
		}
		return loc, nil
	}
	return time.Local, nil
}

// Validate checks the configuration; the master calls it before starting.
// An invalid Spec is reported with the field and the token at fault.
func (n *Nightly) Validate() error {
	var errs []error
	c, err := n.schedule()
	if err != nil {
		errs = append(errs, err)
	} else if c.next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.UTC).IsZero() {
		what := "the fields"
		if n.Spec != "" {
			what = fmt.Sprintf("Spec %q", n.Spec)
		}
		errs = append(errs, fmt.Errorf("%s never matches: no such day", what))
	}
	if _, err := n.location(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, n.config(nil, nil).validate())
	return errors.Join(errs...)
}

// Next returns the first scheduled time after after, or an error if the
// schedule or the time zone is invalid. It does not know what was built:
// it is for showing a schedule.
func (n *Nightly) Next(after time.Time) (time.Time, error) {
	c, err := n.schedule()
	if err != nil {
		return time.Time{}, err
	}
	loc, err := n.location()
	if err != nil {
		return time.Time{}, err
	}
	return c.next(after, loc), nil
}

// OnChange implements ci.ChangeListener: with OnlyIfChanged, it keeps the
// changes passing the filter for the next build.
func (n *Nightly) OnChange(ctx context.Context, m *ci.Master, c *ci.Change) error {
	return engineOf(&n.engine).onChange(ctx, m, c, n.config(nil, nil))
}

// Run implements ci.Service: it builds on schedule until ctx ends.
func (n *Nightly) Run(ctx context.Context, m *ci.Master) error {
	c, err := n.schedule()
	if err != nil {
		return fmt.Errorf("scheduler %q: %w", n.Name, err)
	}
	loc, err := n.location()
	if err != nil {
		return fmt.Errorf("scheduler %q: %w", n.Name, err)
	}
	return engineOf(&n.engine).serve(ctx, m, n.config(c, loc))
}

func (n *Nightly) config(c *cronSchedule, loc *time.Location) *timedConfig {
	return &timedConfig{
		builds:          builds{name: n.Name, builders: n.Builders, reason: defaultReason(n.Reason, "Nightly", n.Name), properties: n.Properties, priority: n.Priority},
		onlyIfChanged:   n.OnlyIfChanged,
		filter:          &n.ChangeFilter,
		fileIsImportant: n.FileIsImportant,
		onlyImportant:   n.OnlyImportant,
		sourceStamps:    n.SourceStamps,
		next: func(last, now time.Time) (time.Time, error) {
			base := last
			if base.IsZero() {
				base = now
			}
			t := c.next(base, loc)
			if t.IsZero() {
				return t, errors.New("the schedule never matches")
			}
			return t, nil
		},
	}
}

// timedConfig is what Periodic and Nightly have in common.
type timedConfig struct {
	builds
	onlyIfChanged   bool
	filter          *ChangeFilter
	fileIsImportant func(*ci.Change) bool
	onlyImportant   bool
	sourceStamps    []ci.SourceStamp
	// next returns the time of the next build given the last (zero if
	// none) and the present.
	next func(last, now time.Time) (time.Time, error)
}

func (c *timedConfig) validate() error {
	var errs []error
	if err := c.filter.Validate(); err != nil {
		errs = append(errs, prefixLines("ChangeFilter: ", err))
	}
	errs = append(errs, checkProperties(c.properties))
	return errors.Join(errs...)
}

// timedState is the stored document (key "timed").
type timedState struct {
	// LastBuild is the time of the last build (skipped or not).
	LastBuild time.Time `json:"last_build,omitzero"`
	// OnlyIfChanged is Buildbot's last_only_if_changed: whether the last
	// build was decided with OnlyIfChanged.
	OnlyIfChanged bool         `json:"only_if_changed,omitempty"`
	Changes       []classified `json:"changes,omitempty"`
	Pending       []intent     `json:"pending,omitempty"`
}

// timedRetry is how long a timed scheduler waits before trying again to
// build when its store failed.
const timedRetry = time.Minute

// timed runs Periodic and Nightly.
type timed struct {
	mu  sync.Mutex
	run *timedRun
}

type timedRun struct {
	m       *ci.Master
	st      ci.Store
	ctx     context.Context
	serving bool
	stopped bool
	state   timedState
	cache   map[int64]*ci.Change
	timer   ci.Timer
	gen     int
	at      time.Time // when the timer fires
}

func (e *timed) onChange(ctx context.Context, m *ci.Master, c *ci.Change, cfg *timedConfig) error {
	if !cfg.onlyIfChanged || !matches(m, cfg.name, cfg.filter, c) {
		return nil
	}
	imp, ok := important(m, cfg.name, cfg.fileIsImportant, c)
	if !ok || (!imp && cfg.onlyImportant) {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.runFor(ctx, m, cfg)
	if err != nil {
		return err
	}
	r.state.Changes = append(r.state.Changes, classified{ID: c.ID, Important: imp})
	if err := saveState(ctx, r.st, cfg.name, stateKeyTimed, r.state); err != nil {
		r.state.Changes = r.state.Changes[:len(r.state.Changes)-1]
		return fmt.Errorf("scheduler %q: keep change %d: %w", cfg.name, c.ID, err)
	}
	cc := *c
	r.cache[c.ID] = &cc
	return nil
}

func (e *timed) runFor(ctx context.Context, m *ci.Master, cfg *timedConfig) (*timedRun, error) {
	if e.run != nil && e.run.m == m {
		return e.run, nil
	}
	st, err := m.Store(ctx)
	if err != nil {
		return nil, err
	}
	r := &timedRun{m: m, st: st, cache: map[int64]*ci.Change{}}
	if _, err := loadState(ctx, st, cfg.name, stateKeyTimed, &r.state); err != nil {
		return nil, err
	}
	e.run = r
	return r, nil
}

func (e *timed) serve(ctx context.Context, m *ci.Master, cfg *timedConfig) error {
	e.mu.Lock()
	r, err := e.runFor(ctx, m, cfg)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	r.serving = true
	r.ctx = context.WithoutCancel(ctx)
	if !cfg.onlyIfChanged && len(r.state.Changes) > 0 {
		// Changes kept under an OnlyIfChanged the configuration no longer
		// has: Buildbot forgets them too.
		r.state.Changes = nil
	}
	e.retryPending(r, cfg)
	e.schedule(r, cfg)
	e.mu.Unlock()

	<-ctx.Done()

	e.mu.Lock()
	defer e.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
	if e.run == r {
		e.run = nil
	}
	return nil
}

// schedule builds if a build is due and arms the timer for the next one.
// e.mu is held.
func (e *timed) schedule(r *timedRun, cfg *timedConfig) {
	log := r.m.Logger()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	for {
		now := r.m.Now()
		next, err := cfg.next(r.state.LastBuild, now)
		if err != nil {
			log.Error("scheduler: no next build", "scheduler", cfg.name, "err", err)
			return
		}
		if next.After(now) {
			e.arm(r, cfg, next)
			log.Debug("scheduler: next build", "scheduler", cfg.name, "at", next)
			return
		}
		if !r.state.LastBuild.IsZero() && next.Before(now) {
			log.Info("scheduler: a scheduled build time passed while the master was stopped; building now", "scheduler", cfg.name, "scheduled", next)
		}
		if !e.actuate(r, cfg, now) {
			e.arm(r, cfg, now.Add(timedRetry))
			return
		}
	}
}

func (e *timed) arm(r *timedRun, cfg *timedConfig, at time.Time) {
	r.gen++
	gen := r.gen
	r.at = at
	r.timer = r.m.Clock().AfterFunc(at.Sub(r.m.Now()), func() { e.fire(r, gen, cfg) })
}

func (e *timed) fire(r *timedRun, gen int, cfg *timedConfig) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.run != r || r.stopped || r.gen != gen {
		return
	}
	r.timer = nil
	if !e.actuate(r, cfg, r.at) {
		e.arm(r, cfg, r.m.Now().Add(timedRetry))
		return
	}
	e.schedule(r, cfg)
}

// actuate records a build at time at and submits it, exactly once (see
// intent); it reports false if the store failed before anything was
// recorded. e.mu is held.
func (e *timed) actuate(r *timedRun, cfg *timedConfig, at time.Time) bool {
	ctx, log := r.ctx, r.m.Logger()
	e.retryPending(r, cfg)
	next := r.state
	next.LastBuild = at
	next.OnlyIfChanged = cfg.onlyIfChanged
	anyImportant := slices.ContainsFunc(r.state.Changes, func(c classified) bool { return c.Important })
	if cfg.onlyIfChanged && r.state.OnlyIfChanged && !anyImportant {
		if err := saveState(ctx, r.st, cfg.name, stateKeyTimed, next); err != nil {
			log.Error("scheduler: could not record a skipped build", "scheduler", cfg.name, "err", err)
			return false
		}
		r.state = next
		log.Info("scheduler: no important change since the last build; skipping this one", "scheduler", cfg.name, "at", at)
		return true
	}
	in, err := newIntent(ctx, r.st, fmt.Sprintf("%s:at:%s", cfg.name, at.UTC().Format(time.RFC3339Nano)))
	if err != nil {
		log.Error("scheduler: could not build", "scheduler", cfg.name, "err", err)
		return false
	}
	for _, c := range r.state.Changes {
		in.Changes = append(in.Changes, c.ID)
	}
	next.Changes = nil
	next.Pending = append(slices.Clone(r.state.Pending), in)
	if err := saveState(ctx, r.st, cfg.name, stateKeyTimed, next); err != nil {
		log.Error("scheduler: could not record a build", "scheduler", cfg.name, "err", err)
		return false
	}
	r.state = next
	e.submit(r, in, cfg)
	return true
}

// submit submits an intent's buildset and forgets the intent. e.mu is held.
func (e *timed) submit(r *timedRun, in intent, cfg *timedConfig) {
	ctx, m := r.ctx, r.m
	changes, err := loadChanges(ctx, m, cfg.name, in.Changes, r.cache)
	if err != nil {
		m.Logger().Error("scheduler: could not load the changes to build; the build will be submitted at the next start", "scheduler", cfg.name, "err", err)
		return
	}
	var sub ci.Submission
	if len(changes) > 0 {
		sub = cfg.forChanges(changes)
	} else {
		sub = cfg.submission()
		sub.SourceStamps = slices.Clone(cfg.sourceStamps)
	}
	sub.ExternalID = in.Token
	bs, _, err := m.Submit(ctx, sub)
	if err != nil {
		m.Logger().Error("scheduler: could not submit a buildset; it will be submitted at the next start", "scheduler", cfg.name, "err", err)
		return
	}
	for _, id := range in.Changes {
		delete(r.cache, id)
	}
	m.Logger().Info("scheduler: building on schedule", "scheduler", cfg.name, "buildset", bs.ID, "changes", in.Changes)
	r.state.Pending = slices.DeleteFunc(slices.Clone(r.state.Pending), func(p intent) bool { return p.Token == in.Token })
	if err := saveState(ctx, r.st, cfg.name, stateKeyTimed, r.state); err != nil {
		m.Logger().Error("scheduler: could not save its state", "scheduler", cfg.name, "err", err)
	}
}

// retryPending submits the buildsets of recorded intents missing from the
// store. e.mu is held and r is serving.
func (e *timed) retryPending(r *timedRun, cfg *timedConfig) {
	for _, in := range slices.Clone(r.state.Pending) {
		done, err := submitted(r.ctx, r.st, in)
		if err != nil {
			r.m.Logger().Error("scheduler: could not check a pending buildset", "scheduler", cfg.name, "token", in.Token, "err", err)
			continue
		}
		if !done {
			e.submit(r, in, cfg)
			continue
		}
		r.state.Pending = slices.DeleteFunc(slices.Clone(r.state.Pending), func(p intent) bool { return p.Token == in.Token })
		if err := saveState(r.ctx, r.st, cfg.name, stateKeyTimed, r.state); err != nil {
			r.m.Logger().Error("scheduler: could not save its state", "scheduler", cfg.name, "err", err)
		}
	}
}
