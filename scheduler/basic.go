package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnci/kiln/ci"
)

// AnyBranch is Buildbot's AnyBranchScheduler: it builds the changes its
// ChangeFilter lets through, on whatever branch they are.
//
// Without a TreeStableTimer, each change that passes the filter and is
// important (see FileIsImportant) is built at once: before Master.AddChange
// returns, a buildset is stored for the change's source stamp, with the
// change linked to it and its properties given to the builds (source
// "Change"). With a TreeStableTimer, changes are gathered per branch (with
// codebase, repository and project) until none has arrived on that branch
// for that long; the branch's newest change is then built, with every
// gathered change linked.
//
// The Ideascube master builds every new tag on three builders:
//
//	&scheduler.AnyBranch{
//		Name:         "tags",
//		ChangeFilter: scheduler.ChangeFilter{Category: []string{"new-tag"}},
//		Builders:     []string{"build-amd64-pkg", "build-armhf-pkg", "build-i386-pkg"},
//	}
//
// An AnyBranch value serves one master at a time; it must not be changed
// once the master runs.
type AnyBranch struct {
	// Name identifies the scheduler, and its state in the master's store.
	Name string
	// Builders lists the builders each buildset has a request for.
	Builders []string
	// ChangeFilter selects the changes; the zero value takes them all.
	ChangeFilter ChangeFilter
	// TreeStableTimer, when positive, delays each branch's build until no
	// change passing the filter has arrived on it for that long. Zero
	// builds each change at once.
	TreeStableTimer time.Duration
	// FileIsImportant, when set, says whether a change (which passed the
	// filter) deserves a build. An unimportant change never starts a
	// build nor, without a TreeStableTimer, is built at all; with one, it
	// restarts a running timer and is built with the important changes
	// around it. It must be quick and safe for concurrent use.
	FileIsImportant func(c *ci.Change) bool
	// OnlyImportant leaves unimportant changes out of the builds
	// altogether (they neither restart the timer nor appear in builds).
	OnlyImportant bool
	// Reason says why, for people; by default "The AnyBranchScheduler
	// scheduler named '<Name>' triggered this build", as in Buildbot.
	Reason string
	// Properties are given to the builds, with source "Scheduler"; the
	// changes' own properties override them.
	Properties map[string]any
	// Priority of the requests it submits.
	Priority int

	engine *treeStable
}

var (
	_ ci.Scheduler      = (*AnyBranch)(nil)
	_ ci.ChangeListener = (*AnyBranch)(nil)
	_ ci.Service        = (*AnyBranch)(nil)
)

// SchedulerName implements ci.Scheduler.
func (s *AnyBranch) SchedulerName() string { return s.Name }

// BuilderNames implements ci.Scheduler.
func (s *AnyBranch) BuilderNames() []string { return s.Builders }

// Validate checks the configuration; the master calls it before starting.
func (s *AnyBranch) Validate() error { return s.config().validate() }

// OnChange implements ci.ChangeListener.
func (s *AnyBranch) OnChange(ctx context.Context, m *ci.Master, c *ci.Change) error {
	return engineOf(&s.engine).onChange(ctx, m, c, s.config())
}

// Run implements ci.Service: it re-arms the timers of the changes a
// previous run left waiting (building at once those already due) and
// stops them when ctx ends.
func (s *AnyBranch) Run(ctx context.Context, m *ci.Master) error {
	return engineOf(&s.engine).serve(ctx, m, s.config())
}

func (s *AnyBranch) config() *basicConfig {
	return &basicConfig{
		builds:          builds{name: s.Name, builders: s.Builders, reason: defaultReason(s.Reason, "AnyBranchScheduler", s.Name), properties: s.Properties, priority: s.Priority},
		filter:          &s.ChangeFilter,
		treeStable:      s.TreeStableTimer,
		fileIsImportant: s.FileIsImportant,
		onlyImportant:   s.OnlyImportant,
	}
}

// SingleBranch is Buildbot's SingleBranchScheduler: it builds the changes
// of one branch, which its ChangeFilter selects (Buildbot's branch= is
// ChangeFilter.Branch). It behaves as AnyBranch, except that with a
// TreeStableTimer all the changes it lets through wait on one timer and
// are built together, newest revision of each codebase.
//
// A SingleBranch value serves one master at a time; it must not be changed
// once the master runs.
type SingleBranch struct {
	// Name identifies the scheduler, and its state in the master's store.
	Name string
	// Builders lists the builders each buildset has a request for.
	Builders []string
	// ChangeFilter selects the changes, and must select something: Validate
	// refuses the zero value, as Buildbot wants a branch or a filter.
	ChangeFilter ChangeFilter
	// TreeStableTimer, FileIsImportant, OnlyImportant, Reason,
	// Properties and Priority are as for AnyBranch (the default reason
	// names the SingleBranchScheduler).
	TreeStableTimer time.Duration
	FileIsImportant func(c *ci.Change) bool
	OnlyImportant   bool
	Reason          string
	Properties      map[string]any
	Priority        int

	engine *treeStable
}

var (
	_ ci.Scheduler      = (*SingleBranch)(nil)
	_ ci.ChangeListener = (*SingleBranch)(nil)
	_ ci.Service        = (*SingleBranch)(nil)
)

// SchedulerName implements ci.Scheduler.
func (s *SingleBranch) SchedulerName() string { return s.Name }

// BuilderNames implements ci.Scheduler.
func (s *SingleBranch) BuilderNames() []string { return s.Builders }

// Validate checks the configuration; the master calls it before starting.
func (s *SingleBranch) Validate() error {
	err := s.config().validate()
	if s.ChangeFilter.IsZero() {
		err = errors.Join(err, errors.New("ChangeFilter is empty: a SingleBranch scheduler builds one branch; set ChangeFilter.Branch (Buildbot's branch=) or another filter"))
	}
	return err
}

// OnChange implements ci.ChangeListener.
func (s *SingleBranch) OnChange(ctx context.Context, m *ci.Master, c *ci.Change) error {
	return engineOf(&s.engine).onChange(ctx, m, c, s.config())
}

// Run implements ci.Service, as AnyBranch.Run.
func (s *SingleBranch) Run(ctx context.Context, m *ci.Master) error {
	return engineOf(&s.engine).serve(ctx, m, s.config())
}

func (s *SingleBranch) config() *basicConfig {
	return &basicConfig{
		builds:          builds{name: s.Name, builders: s.Builders, reason: defaultReason(s.Reason, "SingleBranchScheduler", s.Name), properties: s.Properties, priority: s.Priority},
		filter:          &s.ChangeFilter,
		treeStable:      s.TreeStableTimer,
		fileIsImportant: s.FileIsImportant,
		onlyImportant:   s.OnlyImportant,
		single:          true,
	}
}

func defaultReason(reason, kind, name string) string {
	if reason != "" {
		return reason
	}
	return fmt.Sprintf("The %s scheduler named '%s' triggered this build", kind, name)
}

// basicConfig is what AnyBranch and SingleBranch have in common.
type basicConfig struct {
	builds
	filter          *ChangeFilter
	treeStable      time.Duration
	fileIsImportant func(*ci.Change) bool
	onlyImportant   bool
	single          bool // one group for every change (SingleBranch)
}

func (c *basicConfig) validate() error {
	var errs []error
	if c.treeStable < 0 {
		errs = append(errs, fmt.Errorf("TreeStableTimer is negative (%s)", c.treeStable))
	}
	if err := c.filter.Validate(); err != nil {
		errs = append(errs, prefixLines("ChangeFilter: ", err))
	}
	errs = append(errs, checkProperties(c.properties))
	return errors.Join(errs...)
}

// decide says whether a change concerns the scheduler, and how: whether it
// is kept and whether it is important. It reads only memory.
func (c *basicConfig) decide(m *ci.Master, ch *ci.Change) (keep, imp bool) {
	if !matches(m, c.name, c.filter, ch) {
		return false, false
	}
	imp, ok := important(m, c.name, c.fileIsImportant, ch)
	if !ok || (!imp && c.onlyImportant) {
		return false, false
	}
	if c.treeStable <= 0 && !imp {
		return false, false
	}
	return true, imp
}

func (c *basicConfig) key(ch *ci.Change) groupKey {
	if c.single {
		return groupKey{}
	}
	return groupKey{Codebase: ch.Codebase, Project: ch.Project, Repository: ch.Repository, Branch: ch.Branch}
}

// groupKey names the changes that wait on one tree-stable timer.
type groupKey struct {
	Codebase   string `json:"codebase"`
	Project    string `json:"project"`
	Repository string `json:"repository"`
	Branch     string `json:"branch"`
}

func compareKeys(a, b groupKey) int {
	return cmp.Or(cmp.Compare(a.Codebase, b.Codebase), cmp.Compare(a.Project, b.Project),
		cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Branch, b.Branch))
}

// A group is the changes waiting on one tree-stable timer.
type group struct {
	Key     groupKey     `json:"key"`
	Changes []classified `json:"changes"`
	// Since is when the timer was last (re)started; zero while no timer
	// runs (only unimportant changes arrived).
	Since time.Time `json:"since,omitzero"`

	timer ci.Timer
	gen   int
}

// treeStableState is the stored document (key "tree-stable").
type treeStableState struct {
	Groups  []*group `json:"groups,omitempty"`
	Pending []intent `json:"pending,omitempty"`
}

// engines guards the creation of schedulers' engines: a scheduler's
// engine is created when a master first uses it, so that a configuration
// value holds no lock and may be copied until then.
var engines sync.Mutex

// engineOf returns *p, creating it first if needed.
func engineOf[T any](p **T) *T {
	engines.Lock()
	defer engines.Unlock()
	if *p == nil {
		*p = new(T)
	}
	return *p
}

// treeStable runs AnyBranch and SingleBranch.
type treeStable struct {
	mu  sync.Mutex
	run *treeRun // nil until a master uses the scheduler
}

// treeRun is the state of the scheduler for one master.
type treeRun struct {
	m       *ci.Master
	st      ci.Store
	ctx     context.Context // Run's, without cancellation; set once serving
	serving bool            // Run has started: timers are armed
	stopped bool
	groups  map[groupKey]*group
	pending []intent
	cache   map[int64]*ci.Change
}

func (e *treeStable) onChange(ctx context.Context, m *ci.Master, c *ci.Change, cfg *basicConfig) error {
	keep, imp := cfg.decide(m, c)
	if !keep {
		return nil
	}
	if cfg.treeStable <= 0 {
		// The change's own key: told the change again (after a crash of the
		// master between storing it and telling the schedulers), the master
		// keeps the buildset submitted the first time.
		sub := cfg.forChanges([]*ci.Change{c})
		sub.ExternalID = fmt.Sprintf("%s:change:%d", cfg.name, c.ID)
		bs, _, err := m.Submit(ctx, sub)
		if err != nil {
			return fmt.Errorf("scheduler %q: build change %d: %w", cfg.name, c.ID, err)
		}
		m.Logger().Debug("scheduler: building change", "scheduler", cfg.name, "change", c.ID, "buildset", bs.ID)
		return nil
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.runFor(ctx, m, cfg)
	if err != nil {
		return err
	}
	key := cfg.key(c)
	g := r.groups[key]
	created := g == nil
	if created {
		g = &group{Key: key}
		r.groups[key] = g
	}
	for _, have := range g.Changes {
		if have.ID == c.ID {
			return nil // told again after a crash: it waits already
		}
	}
	since := g.Since
	g.Changes = append(g.Changes, classified{ID: c.ID, Important: imp})
	if imp || !g.Since.IsZero() {
		g.Since = m.Now()
	}
	if err := r.save(ctx, cfg.name); err != nil {
		g.Changes = g.Changes[:len(g.Changes)-1]
		g.Since = since
		if created {
			delete(r.groups, key)
		}
		return fmt.Errorf("scheduler %q: keep change %d: %w", cfg.name, c.ID, err)
	}
	cc := *c
	r.cache[c.ID] = &cc
	if r.serving && !g.Since.IsZero() {
		e.arm(r, g, cfg)
	}
	return nil
}

// runFor returns the scheduler's state for m, loading it from the store if
// m is new to it. e.mu is held.
func (e *treeStable) runFor(ctx context.Context, m *ci.Master, cfg *basicConfig) (*treeRun, error) {
	if e.run != nil && e.run.m == m {
		return e.run, nil
	}
	st, err := m.Store(ctx)
	if err != nil {
		return nil, err
	}
	var doc treeStableState
	if _, err := loadState(ctx, st, cfg.name, stateKeyTreeStable, &doc); err != nil {
		return nil, err
	}
	r := &treeRun{m: m, st: st, groups: map[groupKey]*group{}, pending: doc.Pending, cache: map[int64]*ci.Change{}}
	for _, g := range doc.Groups {
		if len(g.Changes) > 0 {
			r.groups[g.Key] = g
		}
	}
	e.run = r
	return r, nil
}

func (r *treeRun) save(ctx context.Context, name string) error {
	doc := treeStableState{Pending: r.pending}
	for _, g := range r.groups {
		doc.Groups = append(doc.Groups, g)
	}
	slices.SortFunc(doc.Groups, func(a, b *group) int { return compareKeys(a.Key, b.Key) })
	return saveState(ctx, r.st, name, stateKeyTreeStable, doc)
}

func (r *treeRun) sortedGroups() []*group {
	gs := make([]*group, 0, len(r.groups))
	for _, g := range r.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *group) int { return compareKeys(a.Key, b.Key) })
	return gs
}

// serve is Run: it builds what a previous run left to build, arms the
// timers, and stops them when ctx ends.
func (e *treeStable) serve(ctx context.Context, m *ci.Master, cfg *basicConfig) error {
	e.mu.Lock()
	r, err := e.runFor(ctx, m, cfg)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	r.serving = true
	r.ctx = context.WithoutCancel(ctx)
	e.retryPending(r, cfg)
	now := m.Now()
	dropped := false
	for _, g := range r.sortedGroups() {
		switch {
		case g.Since.IsZero() && cfg.treeStable <= 0:
			// Unimportant changes kept under a timer the configuration
			// no longer has: Buildbot forgets them too.
			delete(r.groups, g.Key)
			dropped = true
		case g.Since.IsZero():
		case !g.Since.Add(cfg.treeStable).After(now):
			e.build(r, g, cfg)
		default:
			e.arm(r, g, cfg)
		}
	}
	if dropped {
		if err := r.save(r.ctx, cfg.name); err != nil {
			m.Logger().Error("scheduler: could not save its state", "scheduler", cfg.name, "err", err)
		}
	}
	e.mu.Unlock()

	<-ctx.Done()

	e.mu.Lock()
	defer e.mu.Unlock()
	r.stopped = true
	for _, g := range r.groups {
		if g.timer != nil {
			g.timer.Stop()
			g.timer = nil
		}
	}
	if e.run == r {
		e.run = nil
	}
	return nil
}

// arm (re)starts a group's timer. e.mu is held.
func (e *treeStable) arm(r *treeRun, g *group, cfg *basicConfig) {
	if g.timer != nil {
		g.timer.Stop()
	}
	g.gen++
	gen, key := g.gen, g.Key
	d := g.Since.Add(cfg.treeStable).Sub(r.m.Now())
	g.timer = r.m.Clock().AfterFunc(d, func() { e.fire(r, key, gen, cfg) })
}

func (e *treeStable) fire(r *treeRun, key groupKey, gen int, cfg *basicConfig) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.run != r || r.stopped {
		return
	}
	g := r.groups[key]
	if g == nil || g.gen != gen {
		return
	}
	g.timer = nil
	e.build(r, g, cfg)
}

// build submits a buildset for a group whose tree is stable, exactly once
// (see intent). e.mu is held.
func (e *treeStable) build(r *treeRun, g *group, cfg *basicConfig) {
	ctx, m, log := r.ctx, r.m, r.m.Logger()
	e.retryPending(r, cfg)
	retry := func(what string, err error) {
		log.Error("scheduler: could not build stable changes; trying again after another tree-stable delay", "scheduler", cfg.name, "branch", g.Key.Branch, "step", what, "err", err)
		g.Since = m.Now()
		e.arm(r, g, cfg)
	}
	ids := make([]int64, len(g.Changes))
	for i, c := range g.Changes {
		ids[i] = c.ID
	}
	changes, err := loadChanges(ctx, m, cfg.name, ids, r.cache)
	if err != nil {
		retry("load changes", err)
		return
	}
	in, err := newIntent(ctx, r.st, fmt.Sprintf("%s:changes:%d", cfg.name, slices.Max(ids)))
	if err != nil {
		retry("record intent", err)
		return
	}
	in.Changes = ids
	delete(r.groups, g.Key)
	r.pending = append(r.pending, in)
	if err := r.save(ctx, cfg.name); err != nil {
		r.groups[g.Key] = g
		r.pending = r.pending[:len(r.pending)-1]
		retry("save state", err)
		return
	}
	e.submit(r, in, changes, cfg)
}

// submit submits an intent's buildset and forgets the intent. e.mu is held.
func (e *treeStable) submit(r *treeRun, in intent, changes []*ci.Change, cfg *basicConfig) {
	ctx, m := r.ctx, r.m
	sub := cfg.forChanges(changes)
	sub.ExternalID = in.Token
	bs, _, err := m.Submit(ctx, sub)
	if err != nil {
		m.Logger().Error("scheduler: could not submit a buildset; it will be submitted at the next start", "scheduler", cfg.name, "changes", in.Changes, "err", err)
		return
	}
	for _, id := range in.Changes {
		delete(r.cache, id)
	}
	m.Logger().Info("scheduler: tree stable, building", "scheduler", cfg.name, "changes", in.Changes, "buildset", bs.ID)
	r.pending = slices.DeleteFunc(r.pending, func(p intent) bool { return p.Token == in.Token })
	if err := r.save(ctx, cfg.name); err != nil {
		// The buildset's token keeps a restart from submitting it again.
		m.Logger().Error("scheduler: could not save its state", "scheduler", cfg.name, "err", err)
	}
}

// retryPending submits the buildsets of recorded intents that are not in
// the store. e.mu is held and r is serving.
func (e *treeStable) retryPending(r *treeRun, cfg *basicConfig) {
	for _, in := range slices.Clone(r.pending) {
		done, err := submitted(r.ctx, r.st, in)
		if err != nil {
			r.m.Logger().Error("scheduler: could not check a pending buildset", "scheduler", cfg.name, "token", in.Token, "err", err)
			continue
		}
		if done {
			r.pending = slices.DeleteFunc(r.pending, func(p intent) bool { return p.Token == in.Token })
			if err := r.save(r.ctx, cfg.name); err != nil {
				r.m.Logger().Error("scheduler: could not save its state", "scheduler", cfg.name, "err", err)
			}
			continue
		}
		changes, err := loadChanges(r.ctx, r.m, cfg.name, in.Changes, r.cache)
		if err != nil {
			r.m.Logger().Error("scheduler: could not load the changes of a pending buildset", "scheduler", cfg.name, "token", in.Token, "err", err)
			continue
		}
		e.submit(r, in, changes, cfg)
	}
}

// prefixLines prefixes every line of err's message.
func prefixLines(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	for _, line := range strings.Split(err.Error(), "\n") {
		errs = append(errs, errors.New(prefix+line))
	}
	return errors.Join(errs...)
}

// checkProperties checks that property values can be stored and rendered.
func checkProperties(props map[string]any) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if err := ci.CheckValue(props[k]); err != nil {
			errs = append(errs, fmt.Errorf("Properties[%q]: %w", k, err))
		}
	}
	return errors.Join(errs...)
}
