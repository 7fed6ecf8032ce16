package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/postgres"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
)

// clusterMaster starts a master called name on the database at url, with
// in-process workers for the builder "b" (each worker named after the
// master), and the given clock (the system clock if nil).
type clusterOpts struct {
	clock      ci.Clock
	workers    int // in-process workers, 1 if zero; -1 for none
	step       ci.Step
	schedulers []ci.Scheduler
	heartbeat  time.Duration
	deadAfter  time.Duration
	store      ci.Store // opened from the URL if nil
}

func clusterMaster(t *testing.T, url, name string, o clusterOpts) *citest.Master {
	t.Helper()
	n := o.workers
	if n == 0 {
		n = 1
	}
	var workers []ci.WorkerConfig
	var names []string
	for i := range max(n, 1) {
		w := fmt.Sprintf("%s-w%d", name, i)
		workers = append(workers, ci.WorkerConfig{Name: w})
		names = append(names, w)
	}
	step := o.step
	if step == nil {
		step = &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "say"}, Command: []any{"sh", "-c", "echo built on " + name}}
	}
	cfg := ci.MasterConfig{
		Name:       name,
		BaseDir:    t.TempDir(),
		Database:   url,
		Workers:    workers,
		Builders:   []ci.BuilderConfig{{Name: "b", Workers: names, Steps: []ci.Step{step}}},
		Schedulers: o.schedulers,
		Clock:      o.clock,
		Heartbeat:  o.heartbeat,
		DeadAfter:  o.deadAfter,
		Store:      o.store,
	}
	if o.store != nil {
		cfg.Database = ""
	}
	return citest.Start(t, cfg, citest.Options{NoWorkers: n < 0})
}

// builds returns the stored builds of the request, oldest first.
func buildsOf(t *testing.T, st ci.Store, reqID int64) []*ci.Build {
	t.Helper()
	all, _, err := st.ListBuilds(t.Context(), ci.BuildQuery{})
	require.NoError(t, err)
	var out []*ci.Build
	for _, b := range all {
		if b.BuildRequestID == reqID {
			out = append(out, b)
		}
	}
	return out
}

// A request submitted on a master with no worker is built by the worker
// of another master, once.
func TestCluster_RequestBuiltByAnotherMaster(t *testing.T) {
	url := migrated.NewDatabase(t)
	a := clusterMaster(t, url, "a", clusterOpts{workers: -1})
	b := clusterMaster(t, url, "b", clusterOpts{})
	require.NotEqual(t, a.MasterID(), b.MasterID())
	require.True(t, a.Clustered() && b.Clustered())

	var reqs []int64
	for range 5 {
		_, rs, err := a.Master.Submit(t.Context(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
		require.NoError(t, err)
		reqs = append(reqs, rs[0].ID)
	}
	a.WaitFor(t, "every request built", func() bool {
		for _, id := range reqs {
			r, err := a.Store.GetRequest(t.Context(), id)
			require.NoError(t, err)
			if !r.Complete {
				return false
			}
		}
		return true
	})
	for _, id := range reqs {
		list := buildsOf(t, a.Store, id)
		require.Len(t, list, 1, "request %d built once", id)
		assert.Equal(t, ci.Success, list[0].Results)
		assert.Equal(t, b.MasterID(), list[0].MasterID, "built by master b")
		bb := b.LoadBuild(t, list[0].ID)
		assert.Contains(t, bb.Log("say", "stdio"), "built on b")
	}
}

// Requests submitted on three masters, each with workers, are each built
// exactly once, whichever master's worker claims them.
func TestCluster_ExactlyOnce(t *testing.T) {
	url := migrated.NewDatabase(t)
	ms := []*citest.Master{
		clusterMaster(t, url, "a", clusterOpts{workers: 2}),
		clusterMaster(t, url, "b", clusterOpts{workers: 2}),
		clusterMaster(t, url, "c", clusterOpts{workers: 2}),
	}
	const n = 60
	var mu sync.Mutex
	var reqs []int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, rs, err := ms[i%3].Master.Submit(context.Background(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
			if assert.NoError(t, err) {
				mu.Lock()
				reqs = append(reqs, rs[0].ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, reqs, n)
	st := ms[0].Store
	ms[0].WaitFor(t, "every request built", func() bool {
		incomplete := false
		_, total, err := st.ListRequests(t.Context(), ci.RequestQuery{Complete: &incomplete})
		require.NoError(t, err)
		return total == 0
	})
	all, total, err := st.ListBuilds(t.Context(), ci.BuildQuery{})
	require.NoError(t, err)
	assert.Equal(t, n, total, "one build per request, no more")
	seen := map[int64]int{}
	byMaster := map[int64]int{}
	for _, b := range all {
		seen[b.BuildRequestID]++
		byMaster[b.MasterID]++
		assert.Equal(t, ci.Success, b.Results)
	}
	for _, id := range reqs {
		assert.Equal(t, 1, seen[id], "request %d", id)
	}
	t.Logf("builds by master: %v", byMaster)
}

// A master whose heartbeat stops is found dead by another: its running
// build ends as RETRY and its request is built again by the other's
// worker.
func TestCluster_DeadMaster(t *testing.T) {
	url := migrated.NewDatabase(t)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clockA, clockB := citest.NewClock(t0), citest.NewClock(t0)
	release := make(chan struct{})
	defer close(release)
	hang := ci.WithOptions(ci.StepOptions{Name: "say"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ci.Failure, nil
	}))
	a := clusterMaster(t, url, "a", clusterOpts{clock: clockA, step: hang})
	_, rs, err := a.Master.Submit(t.Context(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
	require.NoError(t, err)
	first := a.WaitRunning(t, "b")
	// b starts once a's build runs, so that its worker cannot take it.
	b := clusterMaster(t, url, "b", clusterOpts{clock: clockB})
	rec, err := b.Store.GetBuild(t.Context(), first)
	require.NoError(t, err)
	assert.Equal(t, a.MasterID(), rec.MasterID)

	// b's heartbeats: a's last one (at t0) is older than DeadAfter (20 s)
	// at t0+40s.
	ctx := t.Context()
	for i := 1; i <= 4; i++ {
		next := t0.Add(time.Duration(i) * ci.DefaultHeartbeat)
		require.True(t, clockB.WaitTimer(ctx, next))
		clockB.Set(next)
	}
	b.WaitFor(t, "the request built again", func() bool {
		r, err := b.Store.GetRequest(t.Context(), rs[0].ID)
		require.NoError(t, err)
		return r.Complete
	})
	list := buildsOf(t, b.Store, rs[0].ID)
	require.Len(t, list, 2)
	assert.Equal(t, first, list[0].ID)
	assert.Equal(t, ci.Retry, list[0].Results)
	assert.Equal(t, "retry: its master stopped answering", list[0].StateString)
	assert.Equal(t, ci.Success, list[1].Results)
	assert.Equal(t, b.MasterID(), list[1].MasterID)

	// a is found dead at b's heartbeat of t0+30s, which may be before
	// b's heartbeat of t0+40s is written: wait for that one.
	var masters []*ci.MasterRecord
	b.WaitFor(t, "b's heartbeat at t0+40s recorded", func() bool {
		masters, err = b.Masters(ctx)
		require.NoError(t, err)
		return len(masters) == 2 && masters[1].LastActive.Equal(t0.Add(40*time.Second))
	})
	assert.Equal(t, "a", masters[0].Name)
	assert.False(t, masters[0].Active, "a is marked inactive")
	assert.Equal(t, t0, masters[0].LastActive)
	assert.Equal(t, "b", masters[1].Name)
	assert.True(t, masters[1].Active)
}

// A master that starts closes its own unfinished builds only, not those
// of another master running.
func TestCluster_StartClosesOwnBuildsOnly(t *testing.T) {
	url := migrated.NewDatabase(t)
	release := make(chan struct{})
	defer close(release)
	hang := ci.WithOptions(ci.StepOptions{Name: "say"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ci.Success, nil
	}))
	a := clusterMaster(t, url, "a", clusterOpts{step: hang})
	a.Submit(t, citest.Request{Builder: "b"})
	running := a.WaitRunning(t, "b")
	b := clusterMaster(t, url, "b", clusterOpts{workers: -1})
	rec, err := b.Store.GetBuild(t.Context(), running)
	require.NoError(t, err)
	assert.False(t, rec.Complete, "b's start left a's build running")

	// A second master under a's name does not start while a is alive.
	cfg := ci.MasterConfig{Name: "a", BaseDir: t.TempDir(), Database: url,
		Workers:  []ci.WorkerConfig{{Name: "x"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"x"}, Steps: []ci.Step{hang}}}}
	m, err := ci.NewMaster(cfg)
	require.NoError(t, err)
	err = m.Run(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `master "a": a master of that name was active`)
	rec, err = b.Store.GetBuild(t.Context(), running)
	require.NoError(t, err)
	assert.False(t, rec.Complete, "the refused master closed nothing")
}

// Events of a build on master b reach the subscribers of master a, log
// lines included, which a reads from the store.
func TestCluster_EventsCrossMasters(t *testing.T) {
	url := migrated.NewDatabase(t)
	a := clusterMaster(t, url, "a", clusterOpts{workers: -1})
	sub := a.Subscribe(4096)
	defer sub.Close()
	b := clusterMaster(t, url, "b", clusterOpts{})
	bb := b.Build(t, citest.Request{Builder: "b"})
	require.Equal(t, ci.Success, bb.Results())

	got := map[ci.EventType]bool{}
	var lines string
	timeout := time.After(time.Minute)
	for !got[ci.EventBuildFinished] {
		select {
		case e := <-sub.C:
			if e.BuildID != bb.Record.ID && e.Type != ci.EventRequestNew && e.Type != ci.EventBuildsetNew {
				continue
			}
			assert.Equal(t, b.MasterID(), e.MasterID, "%s comes from b", e.Type)
			got[e.Type] = true
			if e.Type == ci.EventLogLines {
				text, err := a.Store.LogLines(t.Context(), e.LogID, e.FirstLine, e.LastLine)
				require.NoError(t, err)
				lines += text
			}
		case <-timeout:
			t.Fatalf("timed out; events seen: %v", got)
		}
	}
	for _, typ := range []ci.EventType{ci.EventRequestNew, ci.EventBuildStarted, ci.EventStepStarted, ci.EventLogLines, ci.EventStepFinished} {
		assert.True(t, got[typ], "a saw %s", typ)
	}
	assert.Contains(t, lines, "built on b")
}

// When the connection receiving events drops, the relay connects again
// and the master re-reads the pending requests: a request submitted on
// another master meanwhile is built.
func TestCluster_ListenerReconnects(t *testing.T) {
	url := migrated.NewDatabase(t)
	a := clusterMaster(t, url, "a", clusterOpts{})
	b := clusterMaster(t, url, "b", clusterOpts{workers: -1})
	st := a.Store.(*postgres.Store)
	a.WaitFor(t, "a's listener", func() bool { return st.DropListener() })
	_, rs, err := b.Master.Submit(t.Context(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
	require.NoError(t, err)
	a.WaitFor(t, "the request built by a", func() bool {
		r, err := a.Store.GetRequest(t.Context(), rs[0].ID)
		require.NoError(t, err)
		return r.Complete
	})
	list := buildsOf(t, a.Store, rs[0].ID)
	require.Len(t, list, 1)
	assert.Equal(t, a.MasterID(), list[0].MasterID)
}

// Two masters receiving the same delivery at once store one change.
func TestCluster_SameChangeTwice(t *testing.T) {
	url := migrated.NewDatabase(t)
	a := clusterMaster(t, url, "a", clusterOpts{workers: -1})
	b := clusterMaster(t, url, "b", clusterOpts{workers: -1})
	for i := range 20 {
		key := fmt.Sprintf("github:delivery-%d", i)
		var wg sync.WaitGroup
		var added [2]bool
		var ids [2]int64
		for j, m := range []*citest.Master{a, b} {
			wg.Go(func() {
				c := &ci.Change{Repository: "r", Branch: "main", Revision: fmt.Sprint(i), DedupKey: key}
				ok, err := m.Master.AddChange(context.Background(), c)
				assert.NoError(t, err)
				added[j], ids[j] = ok, c.ID
			})
		}
		wg.Wait()
		assert.True(t, added[0] != added[1], "one of the two stored change %d", i)
		assert.Equal(t, ids[0], ids[1])
	}
	_, total, err := a.Store.ListChanges(t.Context(), ci.Query{})
	require.NoError(t, err)
	assert.Equal(t, 20, total)
}

// The store's own AddChange, called at once on two connections with one
// dedup key, stores one change.
func TestStore_AddChangeDedupRace(t *testing.T) {
	url := migrated.NewDatabase(t)
	s1, s2 := MustOpen(t, url), MustOpen(t, url)
	for i := range 50 {
		key := fmt.Sprintf("k%d", i)
		var wg sync.WaitGroup
		var added [2]bool
		for j, s := range []*postgres.Store{s1, s2} {
			wg.Go(func() {
				ok, err := s.AddChange(context.Background(), &ci.Change{Branch: "main", DedupKey: key})
				assert.NoError(t, err)
				added[j] = ok
			})
		}
		wg.Wait()
		assert.True(t, added[0] != added[1], "key %s stored once", key)
	}
	_, total, err := s1.ListChanges(t.Context(), ci.Query{})
	require.NoError(t, err)
	assert.Equal(t, 50, total)
}

// buildsetsOf returns the stored buildsets submitted by the scheduler.
func buildsetsOf(t *testing.T, st ci.Store, scheduler string) []*ci.Buildset {
	t.Helper()
	all, _, err := st.ListBuildsets(t.Context(), ci.BuildsetQuery{})
	require.NoError(t, err)
	var out []*ci.Buildset
	for _, bs := range all {
		if bs.Scheduler == scheduler {
			out = append(out, bs)
		}
	}
	return out
}

// stepClock moves a fake clock to t one heartbeat at a time, waiting each
// time for the master to set its next heartbeat, so that each is taken.
func stepClock(t *testing.T, c *citest.Clock, hb time.Duration, to time.Time) {
	t.Helper()
	for c.Now().Before(to) {
		next := c.Now().Add(hb)
		if next.After(to) {
			next = to
		}
		require.True(t, c.WaitTimer(t.Context(), c.Now().Truncate(hb).Add(hb)), "heartbeat timer at %s", next)
		c.Set(next)
	}
}

// A Nightly configured on two masters fires once a night: on the master
// holding the schedulers' claim, and after that one dies, on the other,
// which neither fires again for the night already built nor skips the
// next.
func TestCluster_NightlyOnce(t *testing.T) {
	url := migrated.NewDatabase(t)
	day1 := time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC)
	clockA, clockB := citest.NewClock(day1), citest.NewClock(day1)
	nightly := func() ci.Scheduler {
		return &scheduler.Nightly{Name: "nightly", Builders: []string{"b"}, Spec: "0 3 * * *", Location: time.UTC}
	}
	const hb = time.Hour
	start := func(name string, clock *citest.Clock) *citest.Master {
		return clusterMaster(t, url, name, clusterOpts{clock: clock, schedulers: []ci.Scheduler{nightly()},
			heartbeat: hb, deadAfter: 2 * hb})
	}
	a := start("a", clockA)
	a.WaitFor(t, "a to claim the schedulers", a.SchedulesHere)
	b := start("b", clockB)
	// b's first heartbeat has tried to claim them: its next is set.
	require.True(t, clockB.WaitTimer(t.Context(), day1.Add(hb)))
	assert.False(t, b.SchedulesHere(), "a holds the schedulers")

	night1 := day1.Add(time.Hour)
	// a's Nightly starts once a holds the claim, and sets its timer for
	// the night from the clock's time then: the clock moves only after,
	// beside a's next heartbeat.
	require.True(t, clockA.WaitTimers(t.Context(), 2), "a's heartbeat and nightly timers; pending: %v", clockA.Timers())
	clockB.Set(night1)
	clockA.Set(night1)
	a.WaitFor(t, "the first night's build", func() bool { return len(buildsetsOf(t, a.Store, "nightly")) > 0 })

	// a's clock stops (its heartbeats too); b finds it dead after two
	// hours and takes the schedulers over.
	stepClock(t, clockB, hb, night1.Add(3*hb))
	for !b.SchedulesHere() {
		masters, err := b.Masters(t.Context())
		require.NoError(t, err)
		require.True(t, clockB.Now().Before(night1.Add(12*hb)), "b never took the schedulers over; masters: %+v %+v", *masters[0], *masters[1])
		// The heartbeat timer of the next hour is set once the beat of
		// this one is done.
		stepClock(t, clockB, hb, clockB.Now().Add(hb))
	}
	night2 := night1.Add(24 * time.Hour)
	require.True(t, clockB.WaitTimer(t.Context(), night2), "b's Nightly waits for the next night")
	assert.Len(t, buildsetsOf(t, b.Store, "nightly"), 1, "the night built by a is not built again")
	stepClock(t, clockB, hb, night2)
	b.WaitFor(t, "the second night's build", func() bool { return len(buildsetsOf(t, b.Store, "nightly")) > 1 })

	sets := buildsetsOf(t, b.Store, "nightly")
	require.Len(t, sets, 2)
	assert.Equal(t, night1, sets[0].SubmittedAt)
	assert.Equal(t, night2, sets[1].SubmittedAt)
}

// A change received by a master that does not run the schedulers is
// handed to the change-based schedulers of the master that does, once;
// the same delivery received by both gives one change and one buildset.
func TestCluster_ChangeScheduledOnce(t *testing.T) {
	url := migrated.NewDatabase(t)
	anyBranch := func() []ci.Scheduler {
		return []ci.Scheduler{&scheduler.AnyBranch{Name: "any", Builders: []string{"b"}}}
	}
	a := clusterMaster(t, url, "a", clusterOpts{workers: -1, schedulers: anyBranch()})
	a.WaitFor(t, "a to claim the schedulers", a.SchedulesHere)
	b := clusterMaster(t, url, "b", clusterOpts{workers: -1, schedulers: anyBranch()})
	require.False(t, b.SchedulesHere())

	// To b alone.
	c := &ci.Change{Repository: "r", Branch: "main", Revision: "1"}
	added, err := b.Master.AddChange(t.Context(), c)
	require.NoError(t, err)
	require.True(t, added)
	b.WaitFor(t, "a buildset for the change", func() bool { return len(buildsetsOf(t, b.Store, "any")) == 1 })

	// To both at once.
	var wg sync.WaitGroup
	for _, m := range []*citest.Master{a, b} {
		wg.Go(func() {
			_, err := m.Master.AddChange(context.Background(), &ci.Change{Repository: "r", Branch: "main", Revision: "2", DedupKey: "delivery-2"})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	a.WaitFor(t, "a buildset for the second change", func() bool { return len(buildsetsOf(t, a.Store, "any")) == 2 })
	_, total, err := a.Store.ListChanges(t.Context(), ci.Query{})
	require.NoError(t, err)
	assert.Equal(t, 2, total)

	// To a master with no schedulers of its own.
	mc := clusterMaster(t, url, "c", clusterOpts{workers: -1})
	_, err = mc.Master.AddChange(t.Context(), &ci.Change{Repository: "r", Branch: "main", Revision: "3"})
	require.NoError(t, err)
	mc.WaitFor(t, "a buildset for the third change", func() bool { return len(buildsetsOf(t, mc.Store, "any")) == 3 })
	assert.False(t, mc.SchedulesHere())

	stored, _, err := a.Store.ListBuildsets(t.Context(), ci.BuildsetQuery{})
	require.NoError(t, err)
	require.Len(t, stored, 3)
	for i, bs := range stored {
		assert.Equal(t, fmt.Sprint(i+1), bs.SourceStamps[0].Revision)
	}
}

// untilStopped returns a step that runs until its build is stopped, and
// a channel told each time it starts.
func untilStopped() (ci.Step, <-chan struct{}) {
	started := make(chan struct{}, 1)
	return ci.WithOptions(ci.StepOptions{Name: "say"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		return ci.Cancelled, nil
	})), started
}

// A request pending on another master is cancelled, and a build running
// on another master stopped, through any master.
func TestCluster_CancelAndStopAcrossMasters(t *testing.T) {
	url := migrated.NewDatabase(t)
	hang, started := untilStopped()
	a := clusterMaster(t, url, "a", clusterOpts{workers: -1})
	b := clusterMaster(t, url, "b", clusterOpts{workers: -1, step: hang})

	_, rs, err := b.Master.Submit(t.Context(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
	require.NoError(t, err)
	require.NoError(t, a.CancelRequest(t.Context(), rs[0].ID))
	r, err := b.Store.GetRequest(t.Context(), rs[0].ID)
	require.NoError(t, err)
	assert.True(t, r.Complete)
	assert.Equal(t, ci.Cancelled, r.Results)

	b2 := clusterMaster(t, url, "b2", clusterOpts{step: hang})
	_, rs, err = a.Master.Submit(t.Context(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
	require.NoError(t, err)
	<-started
	id := b2.WaitRunning(t, "b")
	require.NoError(t, a.StopBuild(t.Context(), id, "no longer wanted"))
	bb := b2.WaitBuild(t, id)
	assert.Equal(t, ci.Cancelled, bb.Results())
	assert.Equal(t, b2.MasterID(), bb.Record.MasterID)
	err = a.StopBuild(t.Context(), id, "again")
	assert.ErrorIs(t, err, ci.ErrBuildNotRunning, "a finished build is not running anywhere")
}

// A stop asked through another master while the build's master is not
// listening (its connection for events dropped) is asked again, and
// reaches it once it listens again.
func TestCluster_StopWhileNotListening(t *testing.T) {
	url := migrated.NewDatabase(t)
	hang, started := untilStopped()
	a := clusterMaster(t, url, "a", clusterOpts{workers: -1})
	b := clusterMaster(t, url, "b", clusterOpts{step: hang})
	_, _, err := a.Master.Submit(t.Context(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
	require.NoError(t, err)
	<-started
	id := b.WaitRunning(t, "b")

	// b connects again a second after losing its listener: the first
	// notification of the stop is lost.
	st := b.Store.(*postgres.Store)
	require.True(t, st.DropListener())
	require.NoError(t, a.StopBuild(t.Context(), id, "no longer wanted"))
	bb := b.WaitBuild(t, id)
	assert.Equal(t, ci.Cancelled, bb.Results())
}

// lateListener is a store whose relay listens only once listen is
// closed, as one slow to connect.
type lateListener struct {
	*postgres.Store
	listen chan struct{}
}

func (s lateListener) RelayEvents(ctx context.Context, masterID int64, out <-chan ci.Event, in func(ci.Event), resync func()) error {
	select {
	case <-s.listen:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.RelayEvents(ctx, masterID, out, in, resync)
}

// A master starts no build before it receives the other masters' events:
// a build it started before would miss a stop asked through another
// master.
func TestCluster_NoBuildBeforeListening(t *testing.T) {
	url := migrated.NewDatabase(t)
	hang, started := untilStopped()
	a := clusterMaster(t, url, "a", clusterOpts{workers: -1})
	_, rs, err := a.Master.Submit(t.Context(), ci.Submission{Builders: []string{"b"}, Reason: "test"})
	require.NoError(t, err)

	st, err := postgres.Open(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	late := lateListener{Store: st, listen: make(chan struct{})}
	b := clusterMaster(t, url, "b", clusterOpts{step: hang, store: late})
	b.WaitFor(t, "b to know the request", func() bool { return b.PendingRequests() == 1 })
	r, err := b.Store.GetRequest(t.Context(), rs[0].ID)
	require.NoError(t, err)
	assert.False(t, r.Claimed, "claimed while b does not listen")
	select {
	case <-started:
		t.Fatal("a build started before its master listened")
	case <-time.After(200 * time.Millisecond):
	}

	close(late.listen)
	<-started
	id := b.WaitRunning(t, "b")
	require.NoError(t, a.StopBuild(t.Context(), id, "no longer wanted"))
	assert.Equal(t, ci.Cancelled, b.WaitBuild(t, id).Results())
}

// BenchmarkCluster_Builds submits b.N requests spread over one master or
// three on one database, each master with two in-process workers and a
// one-step build that runs on the master, and reports the builds per
// second: what coordinating the masters costs (claims, events, re-reads).
//
//	go test ./ci/postgres -run '^$' -bench Cluster_Builds -benchtime 300x
func BenchmarkCluster_Builds(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("masters=%d", n), func(b *testing.B) {
			url := migrated.NewDatabase(b)
			quick := ci.WithOptions(ci.StepOptions{Name: "say"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
				return ci.Success, nil
			}))
			var ms []*citest.Master
			for i := range n {
				name := fmt.Sprintf("m%d", i)
				ms = append(ms, citest.Start(b, ci.MasterConfig{
					Name: name, BaseDir: b.TempDir(), Database: url,
					Workers:  []ci.WorkerConfig{{Name: name + "-w0"}, {Name: name + "-w1"}},
					Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{name + "-w0", name + "-w1"}, Steps: []ci.Step{quick}}},
				}))
			}
			st := ms[0].Store
			db, err := pgx.Connect(b.Context(), url)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close(context.Background())
			// Transactions committed in the database, all masters
			// together (the statistics of other backends come in within
			// a second or so: read again after the masters stop).
			commits := func() int64 {
				var n int64
				db.Exec(b.Context(), `SELECT pg_stat_clear_snapshot()`)
				if err := db.QueryRow(b.Context(), `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
					b.Fatal(err)
				}
				return n
			}
			before := commits()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if _, _, err := ms[i%n].Master.Submit(b.Context(), ci.Submission{Builders: []string{"b"}, Reason: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			incomplete := false
			for {
				_, left, err := st.ListRequests(b.Context(), ci.RequestQuery{Complete: &incomplete})
				if err != nil {
					b.Fatal(err)
				}
				if left == 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			_, builds, err := st.ListBuilds(b.Context(), ci.BuildQuery{})
			if err != nil {
				b.Fatal(err)
			}
			if builds != b.N {
				b.Fatalf("%d builds for %d requests", builds, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "builds/s")
			time.Sleep(2 * time.Second) // the backends report their statistics
			b.ReportMetric(float64(commits()-before)/float64(b.N), "xacts/build")
		})
	}
}

// When the master running the schedulers stops, another takes them over
// at its next heartbeat and schedules the changes from then on.
func TestCluster_SchedulersTakenOverAtStop(t *testing.T) {
	url := migrated.NewDatabase(t)
	anyBranch := func() []ci.Scheduler {
		return []ci.Scheduler{&scheduler.AnyBranch{Name: "any", Builders: []string{"b"}}}
	}
	a, err := ci.NewMaster(ci.MasterConfig{
		Name: "a", BaseDir: t.TempDir(), Database: url,
		Workers:    []ci.WorkerConfig{{Name: "a-w"}},
		Builders:   []ci.BuilderConfig{{Name: "b", Workers: []string{"a-w"}, Steps: []ci.Step{&steps.ShellCommand{Command: []string{"true"}}}}},
		Schedulers: anyBranch(),
		Logger:     slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	// a claims the schedulers at its first heartbeat, which may follow
	// Ready: b, started before it, would claim them first (and, its clock
	// standing still, keep them until a finds it dead).
	require.Eventually(t, a.SchedulesHere, time.Minute, 10*time.Millisecond, "a to claim the schedulers")

	clockB := citest.NewClock(time.Now())
	b := clusterMaster(t, url, "b", clusterOpts{workers: -1, clock: clockB, schedulers: anyBranch()})
	b.WaitFor(t, "a to claim the schedulers", a.SchedulesHere)
	require.False(t, b.SchedulesHere())
	_, err = b.Master.AddChange(t.Context(), &ci.Change{Repository: "r", Branch: "main", Revision: "1"})
	require.NoError(t, err)
	b.WaitFor(t, "a to build the change", func() bool { return len(buildsetsOf(t, b.Store, "any")) == 1 })

	stop()
	require.NoError(t, <-done)
	masters, err := b.Masters(t.Context())
	require.NoError(t, err)
	assert.False(t, masters[0].Active, "a recorded its stop")
	require.True(t, clockB.WaitTimer(t.Context(), clockB.Now().Add(ci.DefaultHeartbeat)))
	clockB.Advance(ci.DefaultHeartbeat)
	b.WaitFor(t, "b to take the schedulers over", b.SchedulesHere)

	added, err := b.Master.AddChange(t.Context(), &ci.Change{Repository: "r", Branch: "main", Revision: "2"})
	require.NoError(t, err)
	require.True(t, added)
	// b schedules it before AddChange returns.
	sets := buildsetsOf(t, b.Store, "any")
	require.Len(t, sets, 2)
	assert.Equal(t, "2", sets[1].SourceStamps[0].Revision)
}

// A master under its default name that was killed is started again at
// once: its base folder's lock shows that no process of this host runs
// it, so its record's fresh heartbeat is its own previous run's, whose
// builds end as RETRY and are built again. Under a name given in the
// configuration the same record keeps a master out (see
// TestCluster_StartClosesOwnBuildsOnly).
func TestCluster_RestartAfterKill(t *testing.T) {
	url := migrated.NewDatabase(t)
	ctx := t.Context()
	st, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer st.Close()

	// What a master killed mid-build leaves: its record active with a
	// heartbeat of a moment ago, and a build it was running.
	dir := t.TempDir()
	prev, err := st.RegisterMaster(ctx, ci.DefaultMasterName(dir), time.Now())
	require.NoError(t, err)
	builder, err := st.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	worker, err := st.EnsureWorker(ctx, "w")
	require.NoError(t, err)
	reqs, err := st.AddBuildset(ctx, &ci.Buildset{Reason: "before the kill", SubmittedAt: time.Now()}, []int64{builder.ID}, 0)
	require.NoError(t, err)
	killed := &ci.Build{BuilderID: builder.ID, WorkerID: worker.ID, StartedAt: time.Now(), MasterID: prev.ID}
	require.NoError(t, st.StartBuild(ctx, killed, []int64{reqs[0].ID}))

	m := citest.Start(t, ci.MasterConfig{BaseDir: dir, Database: url,
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "say"}, Command: []any{"sh", "-c", "echo built again"}},
		}}}})
	assert.Equal(t, prev.ID, m.MasterID(), "the master took its own record back")
	rec, err := st.GetBuild(ctx, killed.ID)
	require.NoError(t, err)
	assert.True(t, rec.Complete)
	assert.Equal(t, ci.Retry, rec.Results, "the killed run's build")
	m.WaitFor(t, "the request built again", func() bool {
		builds := buildsOf(t, st, reqs[0].ID)
		return len(builds) == 2 && builds[1].Complete
	})
	builds := buildsOf(t, st, reqs[0].ID)
	assert.Equal(t, ci.Success, builds[1].Results, "the request built again")
}

// A build its master finishes while another master expires that master
// is left out of the builds ended as RETRY; the expiry still happens.
func TestStore_ExpireMasterWhileABuildFinishes(t *testing.T) {
	url := migrated.NewDatabase(t)
	ctx := t.Context()
	st, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer st.Close()

	long := time.Now().Add(-time.Hour)
	dead, err := st.RegisterMaster(ctx, "slow", long)
	require.NoError(t, err)
	builder, err := st.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	worker, err := st.EnsureWorker(ctx, "w")
	require.NoError(t, err)
	reqs, err := st.AddBuildset(ctx, &ci.Buildset{SubmittedAt: long}, []int64{builder.ID}, 0)
	require.NoError(t, err)
	b := &ci.Build{BuilderID: builder.ID, WorkerID: worker.ID, StartedAt: long, MasterID: dead.ID}
	require.NoError(t, st.StartBuild(ctx, b, []int64{reqs[0].ID}))

	// The slow master finishing its build, not yet committed.
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE builds SET complete = true, results = 0 WHERE id = $1`, b.ID)
	require.NoError(t, err)

	type answer struct {
		expired bool
		closed  []*ci.Build
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		expired, closed, err := st.ExpireMaster(ctx, dead.ID, time.Now(), time.Now(), "retry: its master stopped answering")
		done <- answer{expired, closed, err}
	}()
	// Wait until the expiry waits on the build's row.
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&n)
		return err == nil && n > 0
	}, time.Minute, 10*time.Millisecond, "the expiry never waited on the finishing build")
	require.NoError(t, tx.Commit(ctx))

	a := <-done
	require.NoError(t, a.err)
	assert.True(t, a.expired, "the master was expired")
	assert.Empty(t, a.closed, "the build finished by its master is not ended again")
	rec, err := st.GetBuild(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, ci.Success, rec.Results)
	m, err := st.GetMaster(ctx, dead.ID)
	require.NoError(t, err)
	assert.False(t, m.Active)
}
