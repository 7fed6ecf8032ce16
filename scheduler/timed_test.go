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

func TestPeriodic(t *testing.T) {
	clock := citest.NewClock(t0)
	p := &scheduler.Periodic{Name: "hourly", Builders: []string{"a", "b"}, Interval: time.Hour,
		SourceStamps: []ci.SourceStamp{{Repository: "app.git", Branch: "main"}}, Properties: map[string]any{"kind": "periodic"}}
	m := startIdle(t, config("", clock, p))

	got := waitBuildsets(t, m, "hourly", 1)
	require.Len(t, got, 1, "the first build is at start")
	assert.Equal(t, "The Periodic scheduler named 'hourly' triggered this build", got[0].Reason)
	assert.Equal(t, t0, got[0].SubmittedAt)
	ss := sourceOf(t, got[0])
	assert.Equal(t, []string{"app.git", "main", ""}, []string{ss.Repository, ss.Branch, ss.Revision})
	assert.Equal(t, ci.Property{Value: "periodic", Source: ci.SourceScheduler}, got[0].Properties["kind"])
	assert.Equal(t, []string{"a", "b"}, requestsOf(t, m, got[0]))

	waitTimers(t, clock, 1)
	assert.Equal(t, []time.Time{t0.Add(time.Hour)}, clock.Timers())
	clock.Advance(time.Hour - time.Second)
	assert.Len(t, buildsets(t, m, "hourly"), 1)
	clock.Advance(time.Second)
	assert.Len(t, buildsets(t, m, "hourly"), 2)
	clock.Advance(3 * time.Hour)
	got = buildsets(t, m, "hourly")
	require.Len(t, got, 5)
	for i, bs := range got {
		assert.Equal(t, t0.Add(time.Duration(i)*time.Hour), bs.SubmittedAt, "build %d", i)
	}
}

func TestPeriodic_Restart(t *testing.T) {
	dir := t.TempDir()
	clock := citest.NewClock(t0)
	sched := func() *scheduler.Periodic {
		return &scheduler.Periodic{Name: "hourly", Builders: []string{"a"}, Interval: time.Hour}
	}
	withMaster(t, "first", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		waitBuildsets(t, m, "hourly", 1)
		waitTimers(t, clock, 1)
		clock.Advance(30 * time.Minute)
	})

	// Back before the next build is due: it comes at its time, not at
	// start.
	withMaster(t, "beforeDue", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		waitTimers(t, clock, 1)
		assert.Equal(t, []time.Time{t0.Add(time.Hour)}, clock.Timers())
		assert.Len(t, buildsets(t, m, "hourly"), 1)
		clock.Set(t0.Add(time.Hour))
		assert.Len(t, buildsets(t, m, "hourly"), 2)
	})

	// Back after missing four builds: one build at once, then every hour
	// from it.
	clock.Set(t0.Add(5*time.Hour + 10*time.Minute))
	withMaster(t, "afterDue", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		got := waitBuildsets(t, m, "hourly", 3)
		waitTimers(t, clock, 1)
		assert.Len(t, got, 3)
		assert.Equal(t, t0.Add(5*time.Hour+10*time.Minute), got[2].SubmittedAt)
		assert.Equal(t, []time.Time{t0.Add(6*time.Hour + 10*time.Minute)}, clock.Timers())
	})

	withMaster(t, "again", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		waitTimers(t, clock, 1)
		assert.Len(t, buildsets(t, m, "hourly"), 3, "a restart does not build twice")
	})
}

func TestPeriodic_OnlyIfChanged(t *testing.T) {
	clock := citest.NewClock(t0)
	p := &scheduler.Periodic{Name: "p", Builders: []string{"a"}, Interval: time.Hour, OnlyIfChanged: true,
		ChangeFilter:    scheduler.ChangeFilter{Branch: []string{"main"}},
		FileIsImportant: func(c *ci.Change) bool { return c.Comments != "typo" }}
	m := startIdle(t, config("", clock, p))

	waitBuildsets(t, m, "p", 1)
	waitTimers(t, clock, 1)
	clock.Advance(time.Hour)
	assert.Len(t, buildsets(t, m, "p"), 1, "no change since the last build: skipped")

	addChange(t, m, ci.Change{Branch: "dev", Revision: "d1"})
	addChange(t, m, ci.Change{Branch: "main", Revision: "t1", Comments: "typo"})
	clock.Advance(time.Hour)
	assert.Len(t, buildsets(t, m, "p"), 1, "neither a change on another branch nor an unimportant change is enough")

	c1 := addChange(t, m, ci.Change{Branch: "main", Revision: "m1"})
	c2 := addChange(t, m, ci.Change{Branch: "main", Revision: "m2"})
	clock.Advance(time.Hour)
	got := buildsets(t, m, "p")
	require.Len(t, got, 2)
	ss := sourceOf(t, got[1])
	assert.Equal(t, "m2", ss.Revision)
	assert.Len(t, ss.Changes, 3, "the unimportant change kept is built with the important ones")
	assert.Contains(t, ss.Changes, c1.ID)
	assert.Contains(t, ss.Changes, c2.ID)

	clock.Advance(time.Hour)
	assert.Len(t, buildsets(t, m, "p"), 2)
}

func TestNightly(t *testing.T) {
	clock := citest.NewClock(t0) // 02:00 UTC
	n := &scheduler.Nightly{Name: "nightly", Builders: []string{"a"}, Spec: "0 3 * * *", Location: time.UTC}
	m := startIdle(t, config("", clock, n))

	waitTimers(t, clock, 1)
	assert.Empty(t, buildsets(t, m, "nightly"), "no build at start")
	assert.Equal(t, []time.Time{t0.Add(time.Hour)}, clock.Timers())
	clock.Advance(time.Hour)
	got := buildsets(t, m, "nightly")
	require.Len(t, got, 1)
	assert.Equal(t, "The Nightly scheduler named 'nightly' triggered this build", got[0].Reason)
	assert.Equal(t, []time.Time{t0.Add(25 * time.Hour)}, clock.Timers())
	clock.Advance(48 * time.Hour)
	assert.Len(t, buildsets(t, m, "nightly"), 3)
}

func TestNightly_TimeZone(t *testing.T) {
	// In Europe/Paris, 02:30 does not exist on 2024-03-31: the build runs
	// when clocks jump to 03:00 CEST (01:00 UTC).
	start := time.Date(2024, 3, 30, 12, 0, 0, 0, time.UTC)
	clock := citest.NewClock(start)
	n := &scheduler.Nightly{Name: "nightly", Builders: []string{"a"}, Spec: "30 2 * * *", TimeZone: "Europe/Paris"}
	m := startIdle(t, config("", clock, n))
	waitTimers(t, clock, 1)
	assert.Equal(t, []time.Time{time.Date(2024, 3, 31, 1, 0, 0, 0, time.UTC)}, clock.Timers())
	clock.Set(time.Date(2024, 4, 1, 12, 0, 0, 0, time.UTC))
	got := buildsets(t, m, "nightly")
	require.Len(t, got, 2)
	assert.Equal(t, time.Date(2024, 3, 31, 1, 0, 0, 0, time.UTC), got[0].SubmittedAt)
	assert.Equal(t, time.Date(2024, 4, 1, 0, 30, 0, 0, time.UTC), got[1].SubmittedAt)
}

func TestNightly_Restart(t *testing.T) {
	dir := t.TempDir()
	clock := citest.NewClock(t0) // 2024-01-01 02:00 UTC
	sched := func() *scheduler.Nightly {
		return &scheduler.Nightly{Name: "nightly", Builders: []string{"a"}, Hour: []int{3}, Location: time.UTC}
	}
	day := func(d, h int) time.Time { return time.Date(2024, 1, d, h, 0, 0, 0, time.UTC) }

	withMaster(t, "first", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		waitTimers(t, clock, 1)
		clock.Set(day(1, 4))
		require.Len(t, buildsets(t, m, "nightly"), 1)
	})

	// Stopped over no scheduled time: nothing at start, the next at 03:00.
	clock.Set(day(2, 2))
	withMaster(t, "noneMissed", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		waitTimers(t, clock, 1)
		assert.Equal(t, []time.Time{day(2, 3)}, clock.Timers())
		assert.Len(t, buildsets(t, m, "nightly"), 1)
	})

	// Stopped over two scheduled times: one build at start, the next at
	// 03:00 the day after.
	clock.Set(day(4, 5))
	withMaster(t, "twoMissed", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		got := waitBuildsets(t, m, "nightly", 2)
		waitTimers(t, clock, 1)
		assert.Len(t, got, 2)
		assert.Equal(t, day(4, 5), got[1].SubmittedAt)
		assert.Equal(t, []time.Time{day(5, 3)}, clock.Timers())
	})

	withMaster(t, "again", config(dir, clock, sched()), citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		waitTimers(t, clock, 1)
		assert.Len(t, buildsets(t, m, "nightly"), 2, "a restart does not build twice")
		assert.Equal(t, []time.Time{day(5, 3)}, clock.Timers())
	})
}

func TestTimed_Validate(t *testing.T) {
	tests := []struct {
		name  string
		sched interface{ Validate() error }
		want  []string
	}{
		{"PeriodicOK", &scheduler.Periodic{Interval: time.Minute}, nil},
		{"PeriodicZero", &scheduler.Periodic{}, []string{"Interval must be positive (Buildbot's periodicBuildTimer), not 0s"}},
		{"PeriodicNegative", &scheduler.Periodic{Interval: -time.Hour, ChangeFilter: scheduler.ChangeFilter{ProjectRe: "["}},
			[]string{"Interval must be positive (Buildbot's periodicBuildTimer), not -1h0m0s", `ChangeFilter: ProjectRe "[": error parsing regexp`}},
		{"NightlyEvery", &scheduler.Nightly{Spec: "0 24 * * *", TimeZone: "Nowhere/Land", Properties: map[string]any{"f": func() {}}}, []string{
			`Spec "0 24 * * *": hour field: "24" is out of range 0-23`,
			`TimeZone "Nowhere/Land": unknown time zone Nowhere/Land`,
			`Properties["f"]: a func() is not a string, number, list or renderable`,
		}},
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

	_, err := ci.NewMaster(config("", nil, &scheduler.Nightly{Name: "nightly", Builders: []string{"a"}, Spec: "0 3 * * mon-fry"}))
	assert.ErrorContains(t, err, `scheduler "nightly": Spec "0 3 * * mon-fry": day-of-week field: "mon-fry" has "fry", which is neither a number in 0-7 nor a name (sun, mon, tue, wed, thu, fri, sat)`)
}

func TestNightly_OnlyIfChanged(t *testing.T) {
	clock := citest.NewClock(t0) // 2024-01-01 02:00 UTC
	n := &scheduler.Nightly{Name: "n", Builders: []string{"a"}, Spec: "0 3 * * *", Location: time.UTC,
		OnlyIfChanged: true, ChangeFilter: scheduler.ChangeFilter{Repository: []string{"app.git"}}}
	m := startIdle(t, config("", clock, n))
	waitTimers(t, clock, 1)
	clock.Advance(time.Hour)
	require.Len(t, buildsets(t, m, "n"), 1, "the first build is not skipped: what was last built is unknown")

	clock.Advance(24 * time.Hour)
	assert.Len(t, buildsets(t, m, "n"), 1, "no change: skipped")

	addChange(t, m, ci.Change{Repository: "other.git", Branch: "main", Revision: "o1"})
	clock.Advance(24 * time.Hour)
	assert.Len(t, buildsets(t, m, "n"), 1, "no change passing the filter: skipped")

	c := addChange(t, m, ci.Change{Repository: "app.git", Branch: "main", Revision: "a1"})
	clock.Advance(24 * time.Hour)
	got := buildsets(t, m, "n")
	require.Len(t, got, 2)
	assert.Equal(t, []int64{c.ID}, sourceOf(t, got[1]).Changes)
	assert.Equal(t, time.Date(2024, 1, 4, 3, 0, 0, 0, time.UTC), got[1].SubmittedAt)
}
