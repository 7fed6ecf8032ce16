package scheduler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/scheduler"
)

// tags is the Ideascube scheduler: every new tag is built on three
// builders.
func tags() *scheduler.AnyBranch {
	return &scheduler.AnyBranch{
		Name:         "tags",
		ChangeFilter: scheduler.ChangeFilter{Category: []string{"new-tag"}},
		Builders:     []string{"a", "b", "c"},
	}
}

func TestAnyBranch_BuildsAtOnce(t *testing.T) {
	s := tags()
	s.Properties = map[string]any{"dist": "jessie", "x": "scheduler"}
	m := citest.Start(t, config("", nil, s))

	c := addChange(t, m, ci.Change{Category: "new-tag", Branch: "0.9.1", Revision: "0.9.1", Repository: "https://github.com/ideascube/ideascube",
		Author: "alice", Properties: map[string]any{"x": "change", "pusher": "alice"}})
	addChange(t, m, ci.Change{Category: "push", Branch: "master", Revision: "abc"})

	got := buildsets(t, m, "tags")
	require.Len(t, got, 1, "a buildset for the tag, none for the push, before AddChange returned")
	bs := got[0]
	assert.Equal(t, "The AnyBranchScheduler scheduler named 'tags' triggered this build", bs.Reason)
	assert.Equal(t, []string{"a", "b", "c"}, requestsOf(t, m, bs))
	ss := sourceOf(t, bs)
	assert.Equal(t, c.SourceStampID, ss.ID, "the change's own source stamp")
	assert.Equal(t, []int64{c.ID}, ss.Changes)
	assert.Equal(t, "0.9.1", ss.Branch)
	assert.Equal(t, "https://github.com/ideascube/ideascube", ss.Repository)

	builds := m.WaitBuildset(t, bs.ID)
	require.Len(t, builds, 3)
	for _, b := range builds {
		assert.Equal(t, ci.Success, b.Results())
		assert.Equal(t, ci.Property{Value: "change", Source: ci.SourceChange}, b.Record.Properties["x"], "change properties override the scheduler's")
		assert.Equal(t, ci.Property{Value: "alice", Source: ci.SourceChange}, b.Record.Properties["pusher"])
		assert.Equal(t, ci.Property{Value: "jessie", Source: ci.SourceScheduler}, b.Record.Properties["dist"])
		assert.Equal(t, "tags", b.Property("scheduler"))
		assert.Equal(t, "0.9.1", b.Property("branch"))
	}
}

func TestAnyBranch_Importance(t *testing.T) {
	docs := func(c *ci.Change) bool {
		for _, f := range c.Files {
			if !strings.HasPrefix(f, "docs/") {
				return true
			}
		}
		return false
	}
	s := &scheduler.AnyBranch{Name: "s", Builders: []string{"a"}, FileIsImportant: docs}
	m := startIdle(t, config("", nil, s))
	addChange(t, m, ci.Change{Branch: "main", Files: []string{"docs/index.md"}})
	assert.Empty(t, buildsets(t, m, "s"), "without a tree-stable timer, an unimportant change is not built")
	c := addChange(t, m, ci.Change{Branch: "main", Files: []string{"docs/index.md", "main.go"}})
	got := buildsets(t, m, "s")
	require.Len(t, got, 1)
	assert.Equal(t, []int64{c.ID}, sourceOf(t, got[0]).Changes)
}

func TestAnyBranch_TreeStable(t *testing.T) {
	clock := citest.NewClock(t0)
	s := &scheduler.AnyBranch{Name: "s", Builders: []string{"a", "b"}, TreeStableTimer: 5 * time.Minute,
		Properties: map[string]any{"x": "scheduler"}}
	m := startIdle(t, config("", clock, s))

	c1 := addChange(t, m, ci.Change{Branch: "main", Revision: "r1", Properties: map[string]any{"x": "c1", "first": "yes"}})
	clock.Advance(2 * time.Minute)
	c2 := addChange(t, m, ci.Change{Branch: "main", Revision: "r2", Properties: map[string]any{"x": "c2"}})
	clock.Advance(time.Minute)
	c3 := addChange(t, m, ci.Change{Branch: "dev", Revision: "r3"})
	other := addChange(t, m, ci.Change{Branch: "main", Revision: "r4", Repository: "other"})
	assert.Empty(t, buildsets(t, m, "s"), "nothing before the tree is stable")
	waitTimers(t, clock, 3)
	assert.Equal(t, []time.Time{t0.Add(7 * time.Minute), t0.Add(8 * time.Minute), t0.Add(8 * time.Minute)}, clock.Timers(),
		"one timer per branch and repository, restarted by each change")

	clock.Set(t0.Add(7*time.Minute - time.Second))
	assert.Empty(t, buildsets(t, m, "s"))
	clock.Set(t0.Add(7 * time.Minute))
	got := buildsets(t, m, "s")
	require.Len(t, got, 1)
	ss := sourceOf(t, got[0])
	assert.Equal(t, "main", ss.Branch)
	assert.Equal(t, "r2", ss.Revision, "the newest change is built")
	assert.Equal(t, []int64{c1.ID, c2.ID}, ss.Changes, "with every change it gathered")
	assert.Equal(t, ci.Property{Value: "c2", Source: ci.SourceChange}, got[0].Properties["x"])
	assert.Equal(t, ci.Property{Value: "yes", Source: ci.SourceChange}, got[0].Properties["first"])
	assert.Equal(t, []string{"a", "b"}, requestsOf(t, m, got[0]))

	clock.Set(t0.Add(8 * time.Minute))
	got = buildsets(t, m, "s")
	require.Len(t, got, 3)
	byRev := map[string][]int64{}
	for _, bs := range got[1:] {
		ss := sourceOf(t, bs)
		byRev[ss.Revision] = ss.Changes
	}
	assert.Equal(t, map[string][]int64{"r3": {c3.ID}, "r4": {other.ID}}, byRev)
	assert.Empty(t, clock.Timers())
	doc := waitSettled(t, m, "s", "tree-stable")
	assert.Nil(t, doc["groups"], "nothing left waiting")
}

func TestAnyBranch_TreeStableImportance(t *testing.T) {
	important := func(c *ci.Change) bool { return c.Comments != "typo" }
	tests := []struct {
		name          string
		onlyImportant bool
		fires         time.Duration
		changes       []int // indexes of the changes built
	}{
		// An unimportant change waits for an important one, restarts its
		// timer, and is built with it.
		{"Default", false, 17 * time.Minute, []int{0, 1, 2}},
		// With OnlyImportant, unimportant changes are ignored.
		{"OnlyImportant", true, 15 * time.Minute, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := citest.NewClock(t0)
			s := &scheduler.SingleBranch{Name: "s", Builders: []string{"a"}, ChangeFilter: scheduler.ChangeFilter{Branch: []string{"main"}},
				TreeStableTimer: 5 * time.Minute, FileIsImportant: important, OnlyImportant: tt.onlyImportant}
			m := startIdle(t, config("", clock, s))
			var cs []*ci.Change
			cs = append(cs, addChange(t, m, ci.Change{Branch: "main", Revision: "u1", Comments: "typo"}))
			clock.Advance(10 * time.Minute)
			assert.Empty(t, buildsets(t, m, "s"), "an unimportant change starts no timer")
			cs = append(cs, addChange(t, m, ci.Change{Branch: "main", Revision: "i1"}))
			clock.Advance(2 * time.Minute)
			cs = append(cs, addChange(t, m, ci.Change{Branch: "main", Revision: "u2", Comments: "typo"}))
			waitTimers(t, clock, 1)
			clock.Set(t0.Add(tt.fires - time.Second))
			assert.Empty(t, buildsets(t, m, "s"))
			clock.Set(t0.Add(tt.fires))
			got := buildsets(t, m, "s")
			require.Len(t, got, 1)
			var want []int64
			for _, i := range tt.changes {
				want = append(want, cs[i].ID)
			}
			ss := sourceOf(t, got[0])
			assert.Equal(t, want, ss.Changes)
			assert.Equal(t, cs[tt.changes[len(tt.changes)-1]].Revision, ss.Revision)
		})
	}
}

func TestSingleBranch(t *testing.T) {
	t.Run("AtOnce", func(t *testing.T) {
		s := &scheduler.SingleBranch{Name: "s", Builders: []string{"a"}, ChangeFilter: scheduler.ChangeFilter{Branch: []string{"main"}}}
		m := startIdle(t, config("", nil, s))
		c := addChange(t, m, ci.Change{Branch: "main", Revision: "r1"})
		addChange(t, m, ci.Change{Branch: "dev", Revision: "r2"})
		got := buildsets(t, m, "s")
		require.Len(t, got, 1)
		assert.Equal(t, "The SingleBranchScheduler scheduler named 's' triggered this build", got[0].Reason)
		assert.Equal(t, []int64{c.ID}, sourceOf(t, got[0]).Changes)
	})
	t.Run("OneTimerForEveryCodebase", func(t *testing.T) {
		clock := citest.NewClock(t0)
		s := &scheduler.SingleBranch{Name: "s", Builders: []string{"a"}, ChangeFilter: scheduler.ChangeFilter{Branch: []string{"main"}},
			TreeStableTimer: time.Minute, Reason: "main moved"}
		m := startIdle(t, config("", clock, s))
		app1 := addChange(t, m, ci.Change{Branch: "main", Codebase: "app", Revision: "a1", Repository: "app.git"})
		lib := addChange(t, m, ci.Change{Branch: "main", Codebase: "lib", Revision: "l1", Repository: "lib.git"})
		app2 := addChange(t, m, ci.Change{Branch: "main", Codebase: "app", Revision: "a2", Repository: "app.git"})
		waitTimers(t, clock, 1)
		assert.Len(t, clock.Timers(), 1)
		clock.Advance(time.Minute)
		got := buildsets(t, m, "s")
		require.Len(t, got, 1)
		assert.Equal(t, "main moved", got[0].Reason)
		require.Len(t, got[0].SourceStamps, 2)
		app, lb := got[0].SourceStamps[0], got[0].SourceStamps[1]
		assert.Equal(t, []any{"app", "a2", []int64{app1.ID, app2.ID}}, []any{app.Codebase, app.Revision, app.Changes})
		assert.Equal(t, []any{"lib", "l1", []int64{lib.ID}}, []any{lb.Codebase, lb.Revision, lb.Changes})
	})
}

func TestBasic_Validate(t *testing.T) {
	tests := []struct {
		name  string
		sched interface{ Validate() error }
		want  []string
	}{
		{"AnyBranchOK", tags(), nil},
		{"AnyBranchZeroFilter", &scheduler.AnyBranch{Name: "s"}, nil},
		{"AnyBranch", &scheduler.AnyBranch{TreeStableTimer: -time.Second, ChangeFilter: scheduler.ChangeFilter{BranchRe: "("},
			Properties: map[string]any{"bad": struct{}{}}}, []string{
			"TreeStableTimer is negative (-1s)",
			`ChangeFilter: BranchRe "(": error parsing regexp`,
			`Properties["bad"]: a struct {} is not a string, number, list or renderable`,
		}},
		{"SingleBranchOK", &scheduler.SingleBranch{ChangeFilter: scheduler.ChangeFilter{Branch: []string{"main"}}}, nil},
		{"SingleBranchNoFilter", &scheduler.SingleBranch{}, []string{"ChangeFilter is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sched.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tt.want), err.Error())
			for i, w := range tt.want {
				assert.Contains(t, lines[i], w)
			}
		})
	}

	_, err := ci.NewMaster(config("", nil, &scheduler.AnyBranch{Name: "tags", Builders: []string{"a"}, TreeStableTimer: -1}))
	assert.ErrorContains(t, err, `scheduler "tags": TreeStableTimer is negative`)
}

// TestAnyBranch_Restart stops a master while changes wait on a
// tree-stable timer and starts another on the same folder: the changes are
// built exactly once, when their time comes.
func TestAnyBranch_Restart(t *testing.T) {
	sched := func() *scheduler.AnyBranch {
		s := tags()
		s.TreeStableTimer = 5 * time.Minute
		return s
	}
	tests := []struct {
		name string
		// restart is how long after the change the next master starts.
		restart time.Duration
		// atStart is whether the next master builds as it starts.
		atStart bool
	}{
		{"DueWhileStopped", 10 * time.Minute, true},
		{"DueExactlyAtStart", 5 * time.Minute, true},
		{"NotDueYet", 3 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := citest.NewClock(t0)
			var change *ci.Change
			withMaster(t, "first", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
				change = addChange(t, m, ci.Change{Category: "new-tag", Branch: "0.9.1", Revision: "0.9.1"})
				waitTimers(t, clock, 1)
				assert.Nil(t, state(t, m, "tags", "tree-stable")["pending"])
			})
			assert.Empty(t, clock.Timers(), "the stopped master's timer is gone")
			clock.Set(t0.Add(tt.restart))

			withMaster(t, "second", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
				if tt.atStart {
					got := waitBuildsets(t, m, "tags", 1)
					waitSettled(t, m, "tags", "tree-stable")
					assert.Empty(t, clock.Timers())
					require.Len(t, got, 1)
					assert.Equal(t, []int64{change.ID}, sourceOf(t, got[0]).Changes)
					assert.Equal(t, []string{"a", "b", "c"}, requestsOf(t, m, got[0]))
					return
				}
				waitTimers(t, clock, 1)
				assert.Equal(t, []time.Time{t0.Add(5 * time.Minute)}, clock.Timers(), "the timer runs from the change, not from the restart")
				assert.Empty(t, buildsets(t, m, "tags"))
				clock.Set(t0.Add(5 * time.Minute))
				require.Len(t, buildsets(t, m, "tags"), 1)
			})
			clock.Advance(time.Hour)

			withMaster(t, "third", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
				doc := waitSettled(t, m, "tags", "tree-stable")
				assert.Nil(t, doc["groups"])
				clock.Advance(time.Hour)
				assert.Len(t, buildsets(t, m, "tags"), 1, "a restart never builds twice")
			})
		})
	}
}

// TestAnyBranch_SameValueAcrossMasters uses one scheduler value for two
// masters in turn, as a program restarting its master in-process would.
func TestAnyBranch_SameValueAcrossMasters(t *testing.T) {
	dir := t.TempDir()
	clock := citest.NewClock(t0)
	s := tags()
	s.TreeStableTimer = 5 * time.Minute
	withMaster(t, "first", config(dir, clock, s), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		addChange(t, m, ci.Change{Category: "new-tag", Branch: "1.0"})
		waitTimers(t, clock, 1)
	})
	withMaster(t, "second", config(dir, clock, s), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		waitTimers(t, clock, 1)
		clock.Advance(5 * time.Minute)
		assert.Len(t, buildsets(t, m, "tags"), 1)
	})
}

// TestAnyBranch_ChangesBeforeRun checks that a change arriving while the
// master starts (before the scheduler runs) is kept and built.
func TestAnyBranch_ChangesBeforeRun(t *testing.T) {
	clock := citest.NewClock(t0)
	s := &scheduler.AnyBranch{Name: "s", Builders: []string{"a"}, TreeStableTimer: time.Minute}
	m := startIdle(t, config("", clock, s))
	for i := range 5 {
		addChange(t, m, ci.Change{Branch: "main", Revision: string(rune('a' + i))})
	}
	waitTimers(t, clock, 1)
	clock.Advance(time.Minute)
	got := buildsets(t, m, "s")
	require.Len(t, got, 1)
	assert.Len(t, sourceOf(t, got[0]).Changes, 5)
	assert.Equal(t, "e", sourceOf(t, got[0]).Revision)
}

// TestAnyBranch_PanickingFunctions checks that a filter or importance
// function that panics makes the scheduler ignore the change, without
// failing AddChange or the other schedulers.
func TestAnyBranch_PanickingFunctions(t *testing.T) {
	boom := func(c *ci.Change) bool { panic("boom") }
	m := startIdle(t, config("", nil,
		&scheduler.AnyBranch{Name: "filter", Builders: []string{"a"}, ChangeFilter: scheduler.ChangeFilter{Fn: boom}},
		&scheduler.AnyBranch{Name: "important", Builders: []string{"a"}, FileIsImportant: boom},
		&scheduler.AnyBranch{Name: "fine", Builders: []string{"a"}},
	))
	addChange(t, m, ci.Change{Branch: "main"})
	assert.Empty(t, buildsets(t, m, "filter"))
	assert.Empty(t, buildsets(t, m, "important"))
	assert.Len(t, buildsets(t, m, "fine"), 1)
}

func TestTriggerable(t *testing.T) {
	trig := &scheduler.Triggerable{Name: "t", Builders: []string{"a", "b"}, Priority: 5,
		Properties: map[string]any{"dist": "jessie", "keep": "yes"}}
	m := startIdle(t, config("", nil, trig))
	ctx := t.Context()
	props := ci.Properties{}
	props.Set("dist", "stretch", "Trigger")
	bs, err := trig.Trigger(ctx, m.Master, ci.TriggerRequest{
		SourceStamps: []ci.SourceStamp{{Branch: "main", Revision: "abc"}},
		Properties:   props,
	})
	require.NoError(t, err)
	assert.Equal(t, "The Triggerable scheduler named 't' triggered this build", bs.Reason)
	assert.Equal(t, "t", bs.Scheduler)
	assert.Equal(t, ci.Property{Value: "stretch", Source: "Trigger"}, bs.Properties["dist"])
	assert.Equal(t, ci.Property{Value: "yes", Source: ci.SourceScheduler}, bs.Properties["keep"])
	assert.Equal(t, "abc", sourceOf(t, bs).Revision)
	assert.Equal(t, []string{"a", "b"}, requestsOf(t, m, bs))
	reqs, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: bs.ID})
	require.NoError(t, err)
	assert.Equal(t, 5, reqs[0].Priority)

	bs, err = trig.Trigger(ctx, m.Master, ci.TriggerRequest{Reason: "asked"})
	require.NoError(t, err)
	assert.Equal(t, "asked", bs.Reason)
}
