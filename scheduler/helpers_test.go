package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// t0 is when the fake clocks of the tests start.
var t0 = time.Date(2024, 1, 1, 2, 0, 0, 0, time.UTC)

// config returns a master configuration with one worker, builders "a",
// "b" and "c" whose one step succeeds, and the schedulers.
func config(dir string, clock ci.Clock, scheds ...ci.Scheduler) ci.MasterConfig {
	ok := &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "ok"}, Command: []string{"true"}}
	cfg := ci.MasterConfig{
		BaseDir:    dir,
		Clock:      clock,
		Workers:    []ci.WorkerConfig{{Name: "w"}},
		Schedulers: scheds,
	}
	for _, b := range []string{"a", "b", "c"} {
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: b, Workers: []string{"w"}, Steps: []ci.Step{ok}})
	}
	return cfg
}

// startIdle starts a master whose requests stay pending (no worker).
func startIdle(t *testing.T, cfg ci.MasterConfig) *citest.Master {
	t.Helper()
	return citest.Start(t, cfg, citest.Options{NoWorkers: true})
}

// buildsets returns the buildsets a scheduler submitted, oldest first.
func buildsets(t testing.TB, m *citest.Master, scheduler string) []*ci.Buildset {
	t.Helper()
	ctx := context.Background()
	reqs, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{})
	require.NoError(t, err)
	var ids []int64
	for _, r := range reqs {
		if !slices.Contains(ids, r.BuildsetID) {
			ids = append(ids, r.BuildsetID)
		}
	}
	slices.Sort(ids)
	var out []*ci.Buildset
	for _, id := range ids {
		bs, err := m.Store.GetBuildset(ctx, id)
		require.NoError(t, err)
		if bs.Scheduler == scheduler {
			out = append(out, bs)
		}
	}
	return out
}

// waitBuildsets waits until a scheduler has submitted n buildsets and
// returns them.
func waitBuildsets(t *testing.T, m *citest.Master, scheduler string, n int) []*ci.Buildset {
	t.Helper()
	var got []*ci.Buildset
	m.WaitFor(t, "buildsets", func() bool {
		got = buildsets(t, m, scheduler)
		return len(got) >= n
	})
	return got
}

// state returns a scheduler's stored state document, decoded.
func state(t *testing.T, m *citest.Master, scheduler, key string) map[string]any {
	t.Helper()
	b, err := m.Store.GetState(context.Background(), "scheduler:"+scheduler, key)
	if errors.Is(err, ci.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	return doc
}

// waitSettled waits until a scheduler's state has no pending submission
// (a scheduler records one before it submits and clears it after).
func waitSettled(t *testing.T, m *citest.Master, scheduler, key string) map[string]any {
	t.Helper()
	var doc map[string]any
	m.WaitFor(t, "the scheduler to settle", func() bool {
		doc = state(t, m, scheduler, key)
		return doc != nil && doc["pending"] == nil
	})
	return doc
}

// waitTimers waits until the clock has n timers pending.
func waitTimers(t *testing.T, clock *citest.Clock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), citest.DefaultTimeout)
	defer cancel()
	require.True(t, clock.WaitTimers(ctx, n), "timed out waiting for %d timers", n)
}

// addChange adds a change and returns it as stored.
func addChange(t *testing.T, m *citest.Master, c ci.Change) *ci.Change {
	t.Helper()
	added, err := m.Master.AddChange(context.Background(), &c)
	require.NoError(t, err)
	require.True(t, added)
	return &c
}

// sourceOf returns a buildset's only source stamp.
func sourceOf(t *testing.T, bs *ci.Buildset) ci.SourceStamp {
	t.Helper()
	require.Len(t, bs.SourceStamps, 1)
	return bs.SourceStamps[0]
}

// requestsOf returns the names of the builders a buildset has requests
// for.
func requestsOf(t *testing.T, m *citest.Master, bs *ci.Buildset) []string {
	t.Helper()
	reqs, _, err := m.Store.ListRequests(context.Background(), ci.RequestQuery{BuildsetID: bs.ID})
	require.NoError(t, err)
	var names []string
	for _, r := range reqs {
		for _, b := range m.Config().Builders {
			if id, _ := m.BuilderID(b.Name); id == r.BuilderID {
				names = append(names, b.Name)
			}
		}
	}
	return names
}

// stop runs f with a master started in a subtest that ends (stopping the
// master) when f returns.
func withMaster(t *testing.T, name string, cfg ci.MasterConfig, opts citest.Options, f func(t *testing.T, m *citest.Master)) {
	t.Helper()
	ok := t.Run(name, func(t *testing.T) {
		f(t, citest.Start(t, cfg, opts))
	})
	if !ok {
		t.FailNow()
	}
}
