package janitor_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/janitor"
	"github.com/kilnci/kiln/ci/steps"
)

// janitorMaster runs builds of "a" and "b", each writing a log, one a day
// (by a fake clock): build i of each builder finished i days after t0.
func janitorMaster(t *testing.T, days int, services ...ci.Service) (*citest.Master, *citest.Clock, map[string][]int64) {
	t.Helper()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := citest.NewClock(t0)
	logStep := &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "log"}, Command: []string{"sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo "compiling unit $i of the build"; i=$((i+1)); done`}}
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{
			{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{logStep}},
			{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{logStep}},
		},
		Clock:    clock,
		Services: services,
	}
	m := citest.Start(t, cfg)
	ids := map[string][]int64{}
	for range days {
		for _, b := range []string{"a", "b"} {
			build := m.Build(t, citest.Request{Builder: b})
			require.Equal(t, ci.Success, build.Results())
			ids[b] = append(ids[b], build.Record.ID)
		}
		clock.Advance(24 * time.Hour)
	}
	return m, clock, ids
}

func logType(t *testing.T, m *citest.Master, buildID int64) string {
	t.Helper()
	steps, err := m.Store.ListSteps(context.Background(), buildID)
	require.NoError(t, err)
	logs, err := m.Store.ListLogs(context.Background(), steps[0].ID)
	require.NoError(t, err)
	return logs[0].Type
}

func TestJanitor(t *testing.T) {
	ctx := context.Background()
	m, _, ids := janitorMaster(t, 6)
	// Now is 6 days after the first builds: a's builds are 6..1 days old.
	before, err := m.Store.LogBytes(ctx)
	require.NoError(t, err)

	t.Run("DryRun", func(t *testing.T) {
		j := &janitor.Janitor{Logs: janitor.Retention{LogAge: 3*24*time.Hour + time.Hour}, DryRun: true}
		rep, err := j.Clean(ctx, m.Master)
		require.NoError(t, err)
		assert.True(t, rep.DryRun)
		assert.ElementsMatch(t, append(append([]int64{}, ids["a"][:3]...), ids["b"][:3]...), rep.LogBuilds)
		assert.Greater(t, rep.Bytes, int64(0))
		after, err := m.Store.LogBytes(ctx)
		require.NoError(t, err)
		assert.Equal(t, before, after, "a dry run deletes nothing")
		assert.Equal(t, ci.LogStream, logType(t, m, ids["a"][0]))
	})
	t.Run("AgeAndCount", func(t *testing.T) {
		j := &janitor.Janitor{
			Logs:     janitor.Retention{LogAge: 3*24*time.Hour + time.Hour},
			Builders: map[string]janitor.Retention{"b": {LogCount: 2}},
		}
		rep, err := j.Clean(ctx, m.Master)
		require.NoError(t, err)
		assert.ElementsMatch(t, append(append([]int64{}, ids["a"][:3]...), ids["b"][:4]...), rep.LogBuilds)
		after, err := m.Store.LogBytes(ctx)
		require.NoError(t, err)
		assert.Equal(t, before-rep.Bytes, after)
		for i, id := range ids["a"] {
			want := ci.LogStream
			if i < 3 {
				want = ci.LogDeleted
			}
			assert.Equal(t, want, logType(t, m, id), "a[%d]", i)
		}
		assert.Equal(t, ci.LogStream, logType(t, m, ids["b"][4]))
		// A second pass has nothing left to do.
		rep, err = j.Clean(ctx, m.Master)
		require.NoError(t, err)
		assert.Empty(t, rep.LogBuilds)
	})
	t.Run("Budget", func(t *testing.T) {
		total, err := m.Store.LogBytes(ctx)
		require.NoError(t, err)
		j := &janitor.Janitor{LogBudget: total / 2, Batch: 2}
		rep, err := j.Clean(ctx, m.Master)
		require.NoError(t, err)
		after, err := m.Store.LogBytes(ctx)
		require.NoError(t, err)
		assert.LessOrEqual(t, after, total/2)
		assert.Greater(t, after, int64(0), "only what is over the budget goes")
		// The oldest builds with logs went first: a[3] before a[5].
		assert.Equal(t, ci.LogDeleted, logType(t, m, ids["a"][3]))
		assert.Equal(t, ci.LogStream, logType(t, m, ids["b"][5]))
		assert.NotEmpty(t, rep.LogBuilds)
	})
	t.Run("Horizon", func(t *testing.T) {
		j := &janitor.Janitor{BuildHorizon: 4*24*time.Hour + time.Hour}
		rep, err := j.Clean(ctx, m.Master)
		require.NoError(t, err)
		assert.ElementsMatch(t, append(append([]int64{}, ids["a"][:2]...), ids["b"][:2]...), rep.Builds)
		for _, id := range rep.Builds {
			_, err := m.Store.GetBuild(ctx, id)
			assert.ErrorIs(t, err, ci.ErrNotFound)
		}
		_, err = m.Store.GetBuild(ctx, ids["a"][2])
		assert.NoError(t, err)
		// The master still builds, numbering after the last build.
		b := m.Build(t, citest.Request{Builder: "a"})
		assert.Equal(t, 7, b.Record.Number)
	})
}

func TestJanitor_Service(t *testing.T) {
	// A pass at start, then one a day on the master's clock.
	j := &janitor.Janitor{Logs: janitor.Retention{LogAge: 36 * time.Hour}, Interval: 24 * time.Hour}
	m, clock, ids := janitorMaster(t, 3, j)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The builds finished at t0, t0+1d and t0+2d; the clock shows t0+3d,
	// where a pass ran (it set its next timer when done): only the builds
	// more than 36 hours old lost their logs.
	require.True(t, clock.WaitTimers(ctx, 1))
	for i, want := range []string{ci.LogDeleted, ci.LogDeleted, ci.LogStream} {
		assert.Equal(t, want, logType(t, m, ids["a"][i]), "a[%d]", i)
		assert.Equal(t, want, logType(t, m, ids["b"][i]), "b[%d]", i)
	}
	// A day later the next pass takes the last ones.
	clock.Advance(24 * time.Hour)
	require.True(t, clock.WaitTimers(ctx, 1))
	for _, id := range append(ids["a"], ids["b"]...) {
		assert.Equal(t, ci.LogDeleted, logType(t, m, id))
	}
}

func TestJanitor_Config(t *testing.T) {
	_, err := ci.NewMaster(ci.MasterConfig{
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "s"}, Command: []string{"true"}}}}},
		Services: []ci.Service{&janitor.Janitor{Logs: janitor.Retention{LogAge: -time.Hour}, Builders: map[string]janitor.Retention{"ghost": {LogCount: 1}}, LogBudget: -1}},
	})
	require.Error(t, err)
	assert.ErrorContains(t, err, "Logs: LogAge and LogCount may not be negative")
	assert.ErrorContains(t, err, `Builders: unknown builder "ghost"`)
	assert.ErrorContains(t, err, "LogBudget, BuildHorizon, Interval and Batch may not be negative")
}
