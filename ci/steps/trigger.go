package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Trigger starts builds through triggerable schedulers
// (scheduler.Triggerable), as Buildbot's step of that name: it submits a
// buildset to each scheduler named, with this build as their parent, and,
// with WaitForFinish, waits for them and takes the worst of their results
// as its own.
//
// # Source stamps
//
// By default the triggered builds build this build's source stamps with
// the revision this build actually got (its got_revision property, per
// codebase when it is a map), which is Buildbot's updateSourceStamp=True.
// KeepRevision keeps the revisions of this build's source stamps as they
// are (updateSourceStamp=False); AlwaysUseLatest gives no source stamps,
// so that the triggered builds take the newest revision of their default
// branch; SourceStamps gives them explicitly. At most one of the three
// may be set.
//
// # Properties
//
// The triggered builds get SetProperties (rendered in this build: values
// may be renderables) and the properties of this build named in
// CopyProperties (those set), all with source "Trigger"; copied
// properties override set ones, as in Buildbot. A "reason" property
// becomes the buildsets' reason.
//
// # Results
//
// Without WaitForFinish the step succeeds once the buildsets are stored.
// With it, the step waits for every buildset to complete; its result is
// the worst of their results (SUCCESS if they were all skipped), leaving
// out those of the schedulers in UnimportantSchedulerNames, and it links
// each triggered build (when the master has a PublicURL). If the build is
// stopped while the step waits, the triggered requests still pending are
// cancelled and the triggered builds running are stopped; the step is
// CANCELLED.
//
// A scheduler name that is not a triggerable scheduler of the master is a
// configuration error, reported by the master's configuration check, and
// makes the step an EXCEPTION if it runs all the same.
type Trigger struct {
	ci.StepOptions
	// SchedulerNames names the triggerable schedulers to trigger.
	// Required.
	SchedulerNames []string
	// UnimportantSchedulerNames are some of SchedulerNames whose results
	// do not count for the step's result.
	UnimportantSchedulerNames []string
	// WaitForFinish waits for the triggered builds and takes their results.
	WaitForFinish bool

	// KeepRevision passes this build's source stamps as they are, without
	// replacing their revisions by got_revision (Buildbot's
	// updateSourceStamp=False).
	KeepRevision bool
	// AlwaysUseLatest passes no source stamps: the triggered builds build
	// the newest revision of their default source.
	AlwaysUseLatest bool
	// SourceStamps, when set, are passed as they are, one per codebase.
	SourceStamps []ci.SourceStamp

	// CopyProperties names properties of this build to give to the
	// triggered builds.
	CopyProperties []string
	// SetProperties are properties to give to the triggered builds;
	// values may be renderables.
	SetProperties map[string]any
}

// triggerCancelTimeout bounds the cancellation of triggered builds when
// the triggering build is stopped.
const triggerCancelTimeout = 30 * time.Second

// Options implements ci.Step, naming the step "trigger" by default.
func (t *Trigger) Options() ci.StepOptions { return named(t.StepOptions, "trigger") }

// Validate checks the configuration.
func (t *Trigger) Validate() error {
	var errs []error
	if len(t.SchedulerNames) == 0 {
		errs = append(errs, errors.New("SchedulerNames is empty: name the schedulers to trigger"))
	}
	for _, n := range t.UnimportantSchedulerNames {
		if !slices.Contains(t.SchedulerNames, n) {
			errs = append(errs, fmt.Errorf("UnimportantSchedulerNames: %q is not one of SchedulerNames", n))
		}
	}
	set := 0
	for _, b := range []bool{t.KeepRevision, t.AlwaysUseLatest, len(t.SourceStamps) > 0} {
		if b {
			set++
		}
	}
	if set > 1 {
		errs = append(errs, errors.New("set at most one of KeepRevision, AlwaysUseLatest and SourceStamps"))
	}
	codebases := map[string]bool{}
	for _, ss := range t.SourceStamps {
		if codebases[ss.Codebase] {
			errs = append(errs, fmt.Errorf("SourceStamps: codebase %q is given twice", ss.Codebase))
		}
		codebases[ss.Codebase] = true
	}
	for _, k := range slices.Sorted(maps.Keys(t.SetProperties)) {
		if err := ci.CheckValue(t.SetProperties[k]); err != nil {
			errs = append(errs, fmt.Errorf("SetProperties[%q]: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// ValidateConfig checks that every scheduler named is a triggerable
// scheduler of the configuration; the master's configuration check calls
// it.
func (t *Trigger) ValidateConfig(c *ci.MasterConfig) error {
	var errs []error
	for _, name := range t.SchedulerNames {
		var found ci.Scheduler
		for _, s := range c.Schedulers {
			if s != nil && s.SchedulerName() == name {
				found = s
				break
			}
		}
		if err := checkTriggerable(name, found); err != nil {
			errs = append(errs, fmt.Errorf("SchedulerNames: %w", err))
		}
	}
	return errors.Join(errs...)
}

func checkTriggerable(name string, s ci.Scheduler) error {
	if s == nil {
		return fmt.Errorf("unknown scheduler %q: the configuration has no scheduler of that name", name)
	}
	if _, ok := s.(ci.TriggerableScheduler); !ok {
		return fmt.Errorf("scheduler %q is not triggerable (it is a %T); a Trigger step needs a scheduler.Triggerable", name, s)
	}
	return nil
}

// triggered is one buildset the step submitted.
type triggered struct {
	scheduler   string
	bs          *ci.Buildset
	unimportant bool
}

// Run implements ci.Step.
func (t *Trigger) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	m := s.Master()
	var scheds []ci.TriggerableScheduler
	for _, name := range t.SchedulerNames {
		sch, _ := m.Scheduler(name)
		if err := checkTriggerable(name, sch); err != nil {
			return ci.Exception, fmt.Errorf("trigger: %w", err)
		}
		scheds = append(scheds, sch.(ci.TriggerableScheduler))
	}
	props, err := t.properties(ctx, s)
	if err != nil {
		return ci.Exception, err
	}
	sources := t.sourceStamps(s)
	st, err := m.Store(ctx)
	if err != nil {
		return ci.Exception, err
	}
	var sub *ci.Subscription
	if t.WaitForFinish {
		// Subscribe first, so that no completion falls between.
		sub = m.Subscribe(4096)
		defer sub.Close()
	}

	result := ci.Success
	var sets []triggered
	var failures []string
	for i, sch := range scheds {
		name := t.SchedulerNames[i]
		bs, err := sch.Trigger(ctx, m, ci.TriggerRequest{
			SourceStamps:  slices.Clone(sources),
			Properties:    props.Clone(),
			ParentBuildID: s.BuildID(),
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures = append(failures, fmt.Sprintf("could not trigger %q: %v", name, err))
			result = ci.Exception
			continue
		}
		sets = append(sets, triggered{scheduler: name, bs: bs, unimportant: slices.Contains(t.UnimportantSchedulerNames, name)})
	}
	if len(failures) > 0 {
		if w, err := s.AddLog(ctx, "err.text", ci.LogText); err == nil {
			w.AddStdout(strings.Join(failures, "\n") + "\n")
		}
	}
	names := make([]string, len(sets))
	for i, x := range sets {
		names[i] = x.scheduler
	}
	s.SetStateString("triggered " + strings.Join(names, ", "))
	if ctx.Err() != nil {
		cancelTriggered(m, st, sets)
		s.SetStateString("interrupted")
		return ci.Cancelled, nil
	}
	if !t.WaitForFinish {
		return result, nil
	}

	if err := waitBuildsets(ctx, st, sub, sets); err != nil {
		if ctx.Err() != nil {
			cancelTriggered(m, st, sets)
			s.SetStateString("interrupted")
			return ci.Cancelled, nil
		}
		return ci.Exception, err
	}
	counts := map[ci.Result]int{}
	for _, x := range sets {
		if !x.unimportant {
			result = ci.Worst(result, x.bs.Results)
		}
		if err := linkBuilds(ctx, s, st, x.bs.ID, counts); err != nil {
			return ci.Exception, err
		}
	}
	summary := "triggered " + strings.Join(names, ", ")
	var parts []string
	for r := ci.Success; r <= ci.Cancelled; r++ {
		if counts[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[r], r))
		}
	}
	if len(parts) > 0 {
		summary += ": " + strings.Join(parts, ", ")
	}
	s.SetStateString(summary)
	return result, nil
}

// properties returns the properties to give to the triggered builds.
func (t *Trigger) properties(ctx context.Context, s *ci.StepRun) (ci.Properties, error) {
	props := ci.Properties{}
	for _, k := range slices.Sorted(maps.Keys(t.SetProperties)) {
		v, err := s.Render(ctx, t.SetProperties[k])
		if err != nil {
			return nil, fmt.Errorf("trigger: render SetProperties[%q]: %w", k, err)
		}
		props.Set(k, v, "Trigger")
	}
	for _, k := range t.CopyProperties {
		if v, ok := s.Property(k); ok {
			props.Set(k, v, "Trigger")
		}
	}
	return props, nil
}

// sourceStamps returns the source stamps to give to the triggered builds.
func (t *Trigger) sourceStamps(s *ci.StepRun) []ci.SourceStamp {
	switch {
	case len(t.SourceStamps) > 0:
		return slices.Clone(t.SourceStamps)
	case t.AlwaysUseLatest:
		return nil
	}
	ss := s.SourceStamps()
	if t.KeepRevision {
		// The very source stamps, stored already.
		for i := range ss {
			if ss[i].ID != 0 {
				ss[i] = ci.SourceStamp{ID: ss[i].ID}
			}
		}
		return ss
	}
	got := map[string]string{}
	v, _ := s.Property("got_revision")
	switch x := v.(type) {
	case string:
		got[""] = x
	case map[string]any:
		for cb, rev := range x {
			if r, ok := rev.(string); ok {
				got[cb] = r
			}
		}
	case map[string]string:
		maps.Copy(got, x)
	}
	for i := range ss {
		ss[i].ID, ss[i].CreatedAt = 0, time.Time{}
		ss[i].Changes = slices.Clone(ss[i].Changes)
		if rev := got[ss[i].Codebase]; rev != "" {
			ss[i].Revision = rev
		}
	}
	return ss
}

// waitBuildsets waits until every buildset is complete, updating sets with
// what the store says, or until ctx ends.
func waitBuildsets(ctx context.Context, st ci.Store, sub *ci.Subscription, sets []triggered) error {
	pending := map[int64]int{}
	for i, x := range sets {
		pending[x.bs.ID] = i
	}
	check := func(id int64) error {
		bs, err := st.GetBuildset(ctx, id)
		if err != nil {
			return fmt.Errorf("trigger: read buildset %d: %w", id, err)
		}
		if bs.Complete {
			sets[pending[id]].bs = bs
			delete(pending, id)
		}
		return nil
	}
	for _, x := range sets {
		if err := check(x.bs.ID); err != nil {
			return err
		}
	}
	dropped := sub.Dropped()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-sub.C:
			if !ok {
				return errors.New("trigger: the master's events stopped")
			}
			if n := sub.Dropped(); n != dropped {
				// Some events were missed: read them all again.
				dropped = n
				for id := range pending {
					if err := check(id); err != nil {
						return err
					}
				}
				continue
			}
			if _, ok := pending[e.BuildsetID]; ok && e.Type == ci.EventBuildsetComplete {
				if err := check(e.BuildsetID); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// linkBuilds links the step to the builds of a buildset, counting their
// results.
func linkBuilds(ctx context.Context, s *ci.StepRun, st ci.Store, bsID int64, counts map[ci.Result]int) error {
	m := s.Master()
	reqs, _, err := st.ListRequests(ctx, ci.RequestQuery{BuildsetID: bsID})
	if err != nil {
		return fmt.Errorf("trigger: list requests of buildset %d: %w", bsID, err)
	}
	for _, r := range reqs {
		if r.BuildID == 0 {
			counts[r.Results]++ // cancelled before being built
			continue
		}
		b, err := st.GetBuild(ctx, r.BuildID)
		if err != nil {
			return fmt.Errorf("trigger: read build %d: %w", r.BuildID, err)
		}
		counts[b.Results]++
		name := builderName(m, b.BuilderID)
		if url := m.BuildURL(name, b.Number); url != "" {
			s.AddURL(fmt.Sprintf("%s: %s #%d", b.Results, name, b.Number), url)
		}
	}
	return nil
}

func builderName(m *ci.Master, id int64) string {
	for _, b := range m.Config().Builders {
		if bid, ok := m.BuilderID(b.Name); ok && bid == id {
			return b.Name
		}
	}
	return fmt.Sprintf("builder %d", id)
}

// cancelTriggered cancels the triggered requests still pending and stops
// the triggered builds still running, as Buildbot does when the triggering
// build is interrupted.
func cancelTriggered(m *ci.Master, st ci.Store, sets []triggered) {
	ctx, cancel := context.WithTimeout(context.Background(), triggerCancelTimeout)
	defer cancel()
	sub := m.Subscribe(1024)
	defer sub.Close()
	log := m.Logger()
	for _, x := range sets {
		reqs, _, err := st.ListRequests(ctx, ci.RequestQuery{BuildsetID: x.bs.ID})
		if err != nil {
			log.Error("trigger: could not list the triggered requests to cancel them", "buildset", x.bs.ID, "err", err)
			continue
		}
		for _, r := range reqs {
			if err := cancelRequest(ctx, m, st, sub, r.ID); err != nil {
				log.Error("trigger: could not cancel a triggered request", "request", r.ID, "err", err)
			}
		}
	}
}

// cancelRequest cancels a request if it is pending, or stops its build if
// it is running, retrying while it is between the two (claimed, its build
// not started yet).
func cancelRequest(ctx context.Context, m *ci.Master, st ci.Store, sub *ci.Subscription, id int64) error {
	const reason = "parent build was interrupted"
	for {
		r, err := st.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		if r.Complete {
			return nil
		}
		if r.BuildID != 0 {
			err = m.StopBuild(ctx, r.BuildID, reason)
			if err == nil || !errors.Is(err, ci.ErrBuildNotRunning) {
				return err
			}
		} else {
			err = m.CancelRequest(ctx, id)
			if err == nil || !errors.Is(err, ci.ErrConflict) {
				return err
			}
		}
		// Between pending and running: wait for something to happen.
		wait := time.NewTimer(20 * time.Millisecond)
		select {
		case <-sub.C:
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return ctx.Err()
		}
		wait.Stop()
	}
}
