package ci_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

func shell(name string, argv ...string) *steps.ShellCommand {
	return &steps.ShellCommand{StepOptions: ci.StepOptions{Name: name}, Command: argv}
}

func oneBuilder(steps ...ci.Step) ci.MasterConfig {
	return ci.MasterConfig{
		Title:   "test",
		Workers: []ci.WorkerConfig{{Name: "w1", Properties: map[string]any{"dput_method": "local"}}},
		Builders: []ci.BuilderConfig{{
			Name:       "b1",
			Workers:    []string{"w1"},
			Properties: map[string]any{"arch": "amd64"},
			Steps:      steps,
		}},
	}
}

func TestMaster_Build(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		m := citest.Start(t, oneBuilder(
			shell("hello", "sh", "-c", "echo out; echo err >&2"),
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "props"}, Command: []any{"echo", ci.Interpolate("%(prop:arch)s %(prop:dput_method)s %(prop:buildername)s %(prop:buildnumber)s %(prop:workername)s %(prop:extra)s")}},
		))
		b := m.Build(t, citest.Request{Builder: "b1", Properties: map[string]any{"extra": "forced"}})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, 1, b.Record.Number)
		assert.True(t, b.Record.Complete)
		assert.Equal(t, "build successful", b.Record.StateString)
		assert.False(t, b.Record.CompleteAt.Before(b.Record.StartedAt))
		assert.Equal(t, map[string]ci.Result{"hello": ci.Success, "props": ci.Success}, b.StepResults())
		stored := b.LogLines("hello", "stdio")
		assert.Contains(t, stored, "oout\n")
		assert.Contains(t, stored, "eerr\n")
		assert.Contains(t, b.Header("hello", "stdio"), "sh -c")
		assert.Equal(t, "amd64 local b1 1 w1 forced\n", b.Log("props", "stdio"))
		assert.Equal(t, "amd64", b.Property("arch"))
		assert.Equal(t, "w1", b.Property("workername"))
		assert.Equal(t, ci.SourceBuilder, b.Record.Properties["arch"].Source)
		assert.Equal(t, ci.SourceWorker, b.Record.Properties["dput_method"].Source)
		assert.Equal(t, ci.SourceForce, b.Record.Properties["extra"].Source)
		for _, s := range b.Steps {
			assert.True(t, s.Complete, s.Name)
			assert.False(t, s.StartedAt.IsZero(), s.Name)
		}
		// The second build gets the next number.
		b2 := m.Build(t, citest.Request{Builder: "b1"})
		assert.Equal(t, 2, b2.Record.Number)
	})
	t.Run("MissingProgram", func(t *testing.T) {
		m := citest.Start(t, oneBuilder(shell("missing", "/nonexistent/program-kiln", "x"), shell("after", "true")))
		b := m.Build(t, citest.Request{Builder: "b1"})
		assert.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, ci.Failure, b.Step("missing").Results)
		assert.Contains(t, b.LogLines("missing", "stdio"), "/nonexistent/program-kiln")
		assert.Equal(t, ci.Success, b.Step("after").Results, "a failure without HaltOnFailure lets later steps run")
	})
}

func TestMaster_Flow(t *testing.T) {
	ran := func(name string) ci.Step { return shell(name, "true") }
	fails := func(opts ci.StepOptions) ci.Step {
		return &steps.ShellCommand{StepOptions: opts, Command: []string{"false"}}
	}
	warns := func(opts ci.StepOptions) ci.Step {
		return &steps.ShellCommand{StepOptions: opts, Command: []string{"sh", "-c", "exit 3"}, DecodeRC: map[int]ci.Result{0: ci.Success, 3: ci.Warnings}}
	}
	tests := []struct {
		name   string
		steps  []ci.Step
		want   ci.Result
		steps2 map[string]ci.Result
		hidden []string
	}{
		{"HaltOnFailure", []ci.Step{fails(ci.StepOptions{Name: "f", HaltOnFailure: true}), ran("never"), &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "cleanup", AlwaysRun: true}, Command: []string{"true"}}},
			ci.Failure, map[string]ci.Result{"f": ci.Failure, "cleanup": ci.Success}, nil},
		{"WarnOnFailure", []ci.Step{fails(ci.StepOptions{Name: "f", WarnOnFailure: true}), ran("next")},
			ci.Warnings, map[string]ci.Result{"f": ci.Failure, "next": ci.Success}, nil},
		{"IgnoreFailure", []ci.Step{fails(ci.StepOptions{Name: "f", IgnoreFailure: true}), ran("next")},
			ci.Success, map[string]ci.Result{"f": ci.Failure, "next": ci.Success}, nil},
		{"Warnings", []ci.Step{warns(ci.StepOptions{Name: "w"})},
			ci.Warnings, map[string]ci.Result{"w": ci.Warnings}, nil},
		{"FlunkOnWarnings", []ci.Step{warns(ci.StepOptions{Name: "w", FlunkOnWarnings: true})},
			ci.Failure, map[string]ci.Result{"w": ci.Warnings}, nil},
		{"IgnoreWarnings", []ci.Step{warns(ci.StepOptions{Name: "w", IgnoreWarnings: true})},
			ci.Success, map[string]ci.Result{"w": ci.Warnings}, nil},
		{"RunIfAndHideIf", []ci.Step{
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "skipme", RunIf: func(ctx context.Context, s *ci.StepRun) (bool, error) {
				v, _ := s.Property("arch")
				return v == "armhf", nil
			}}, Command: []string{"false"}},
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "hidden", HideIf: func(r ci.Result, s *ci.StepRun) bool { return r == ci.Success }}, Command: []string{"true"}},
		}, ci.Success, map[string]ci.Result{"skipme": ci.Skipped, "hidden": ci.Success}, []string{"hidden"}},
		{"Exception", []ci.Step{
			ci.WithOptions(ci.StepOptions{Name: "boom"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
				return ci.Success, fmt.Errorf("cannot reach the database")
			})), ran("never"),
		}, ci.Exception, map[string]ci.Result{"boom": ci.Exception}, nil},
		{"Panic", []ci.Step{
			ci.WithOptions(ci.StepOptions{Name: "panics"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
				panic("bad step")
			})),
		}, ci.Exception, map[string]ci.Result{"panics": ci.Exception}, nil},
		{"DuplicateNames", []ci.Step{ran("same"), ran("same"), ran("same")},
			ci.Success, map[string]ci.Result{"same": ci.Success, "same_1": ci.Success, "same_2": ci.Success}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := citest.Start(t, oneBuilder(tt.steps...))
			b := m.Build(t, citest.Request{Builder: "b1"})
			assert.Equal(t, tt.want, b.Results())
			assert.Equal(t, tt.steps2, b.StepResults())
			for _, s := range b.Steps {
				assert.Equal(t, contains(tt.hidden, s.Name), s.Hidden, s.Name)
			}
		})
	}
	t.Run("ExceptionLog", func(t *testing.T) {
		m := citest.Start(t, oneBuilder(ci.WithOptions(ci.StepOptions{Name: "panics"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			panic("bad step")
		}))))
		b := m.Build(t, citest.Request{Builder: "b1"})
		assert.Contains(t, b.Log("panics", "err.text"), "step panicked: bad step")
	})
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// blockingStep waits until its file exists, so that a test controls when a
// build ends.
func blockingStep(name, file string) ci.Step {
	return &steps.ShellCommand{
		StepOptions: ci.StepOptions{Name: name},
		Command:     []string{"sh", "-c", `while [ ! -e "$1" ]; do sleep 0.01; done; echo released`, "sh", file},
	}
}

func TestMaster_StopBuild(t *testing.T) {
	release := filepath.Join(t.TempDir(), "never")
	m := citest.Start(t, oneBuilder(
		blockingStep("wait", release),
		shell("next", "true"),
		&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "cleanup", AlwaysRun: true}, Command: []string{"echo", "cleaned"}},
	))
	bs := m.Submit(t, citest.Request{Builder: "b1"})
	id := m.WaitRunning(t, "b1")
	m.WaitStep(t, id, "wait")
	err := m.StopBuild(context.Background(), id, "changed my mind")
	require.NoError(t, err)
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	b := builds[0]
	assert.Equal(t, ci.Cancelled, b.Results())
	assert.Equal(t, map[string]ci.Result{"wait": ci.Cancelled, "cleanup": ci.Success}, b.StepResults())
	assert.Equal(t, "cleaned\n", b.Log("cleanup", "stdio"))
	assert.Contains(t, b.Log("wait", "err.text"), "changed my mind")
	set, err := m.Store.GetBuildset(context.Background(), bs)
	require.NoError(t, err)
	assert.Equal(t, ci.Cancelled, set.Results)

	assert.ErrorIs(t, m.StopBuild(context.Background(), id, "again"), ci.ErrBuildNotRunning)
}

func TestMaster_CancelRequest(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	m := citest.Start(t, oneBuilder(blockingStep("wait", release)))
	first := m.Submit(t, citest.Request{Builder: "b1"})
	m.WaitRunning(t, "b1")
	second := m.Submit(t, citest.Request{Builder: "b1"})
	ctx := context.Background()
	reqs, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: second})
	require.NoError(t, err)
	require.Len(t, reqs, 1)
	require.NoError(t, m.CancelRequest(ctx, reqs[0].ID))
	assert.Empty(t, pendingCounted(t, m), "the cancelled request is uncounted")
	set, err := m.Store.GetBuildset(ctx, second)
	require.NoError(t, err)
	assert.True(t, set.Complete)
	assert.Equal(t, ci.Cancelled, set.Results)
	assert.Empty(t, m.WaitBuildset(t, second), "a cancelled request has no build")

	// The running build's request cannot be cancelled.
	running, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: first})
	require.NoError(t, err)
	assert.ErrorIs(t, m.CancelRequest(ctx, running[0].ID), ci.ErrConflict)
	assert.ErrorIs(t, m.CancelRequest(ctx, 99999), ci.ErrNotFound)

	require.NoError(t, os.WriteFile(release, nil, 0o644))
	b := m.WaitBuildset(t, first)
	assert.Equal(t, ci.Success, b[0].Results())
}

// pendingCounted checks that the master's count of each builder's pending
// requests agrees with its pending list, and returns it.
func pendingCounted(t *testing.T, m *citest.Master) map[string]int {
	t.Helper()
	counted, listed := ci.PendingCounts(m.Master)
	require.Equal(t, listed, counted, "pending requests counted by builder")
	return counted
}

func TestMaster_Distribution(t *testing.T) {
	t.Run("OneBuildPerBuilderPerWorker", func(t *testing.T) {
		release := filepath.Join(t.TempDir(), "release")
		cfg := oneBuilder(blockingStep("wait", release))
		cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: "w2"})
		cfg.Builders[0].Workers = []string{"w1", "w2"}
		m := citest.Start(t, cfg)
		var sets []int64
		for range 3 {
			sets = append(sets, m.Submit(t, citest.Request{Builder: "b1"}))
		}
		// Two workers: two builds run, the third waits.
		running := m.WaitRunningN(t, "b1", 2)
		assert.Len(t, running, 2)
		pending, err := m.Store.PendingRequests(context.Background())
		require.NoError(t, err)
		assert.Len(t, pending, 1)
		assert.Equal(t, map[string]int{"b1": 1}, pendingCounted(t, m))
		require.NoError(t, os.WriteFile(release, nil, 0o644))
		workers := map[int64]bool{}
		for _, id := range sets {
			b := m.WaitBuildset(t, id)
			require.Len(t, b, 1)
			assert.Equal(t, ci.Success, b[0].Results())
			workers[b[0].Record.WorkerID] = true
		}
		assert.Len(t, workers, 2, "both workers built")
	})
	t.Run("MaxBuilds", func(t *testing.T) {
		release := filepath.Join(t.TempDir(), "release")
		cfg := ci.MasterConfig{
			Workers: []ci.WorkerConfig{{Name: "w1", MaxBuilds: 1}},
			Builders: []ci.BuilderConfig{
				{Name: "a", Workers: []string{"w1"}, Steps: []ci.Step{blockingStep("wait", release)}},
				{Name: "b", Workers: []string{"w1"}, Steps: []ci.Step{blockingStep("wait", release)}},
			},
		}
		m := citest.Start(t, cfg)
		sa := m.Submit(t, citest.Request{Builder: "a"})
		sb := m.Submit(t, citest.Request{Builder: "b"})
		m.WaitRunning(t, "a")
		pending, err := m.Store.PendingRequests(context.Background())
		require.NoError(t, err)
		require.Len(t, pending, 1, "the worker runs one build at a time")
		assert.Equal(t, map[string]int{"b": 1}, pendingCounted(t, m))
		require.NoError(t, os.WriteFile(release, nil, 0o644))
		assert.Equal(t, ci.Success, m.WaitBuildset(t, sa)[0].Results())
		assert.Equal(t, ci.Success, m.WaitBuildset(t, sb)[0].Results())
	})
	t.Run("CollapseRequests", func(t *testing.T) {
		release := filepath.Join(t.TempDir(), "release")
		cfg := oneBuilder(blockingStep("wait", release), &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "rev"}, Command: []any{"echo", ci.Interpolate("%(src::revision)s")}})
		cfg.Builders[0].CollapseRequests = true
		m := citest.Start(t, cfg)
		first := m.Submit(t, citest.Request{Builder: "b1", SourceStamp: ci.SourceStamp{Branch: "main", Revision: "r1"}})
		m.WaitRunning(t, "b1")
		// While the worker is busy, three requests for main and one for
		// another branch wait; the three collapse into one build of the
		// newest.
		a := m.Submit(t, citest.Request{Builder: "b1", SourceStamp: ci.SourceStamp{Branch: "main", Revision: "r2"}})
		other := m.Submit(t, citest.Request{Builder: "b1", SourceStamp: ci.SourceStamp{Branch: "feature", Revision: "f1"}})
		b := m.Submit(t, citest.Request{Builder: "b1", SourceStamp: ci.SourceStamp{Branch: "main", Revision: "r3"}})
		c := m.Submit(t, citest.Request{Builder: "b1", SourceStamp: ci.SourceStamp{Branch: "main", Revision: "r4"}})
		assert.Equal(t, map[string]int{"b1": 4}, pendingCounted(t, m))
		require.NoError(t, os.WriteFile(release, nil, 0o644))
		m.WaitBuildset(t, first)
		ba, bb, bc := m.WaitBuildset(t, a), m.WaitBuildset(t, b), m.WaitBuildset(t, c)
		bo := m.WaitBuildset(t, other)
		require.Len(t, ba, 1)
		assert.Equal(t, ba[0].Record.ID, bb[0].Record.ID)
		assert.Equal(t, ba[0].Record.ID, bc[0].Record.ID)
		assert.Equal(t, "r4\n", ba[0].Log("rev", "stdio"))
		assert.NotEqual(t, ba[0].Record.ID, bo[0].Record.ID)
		assert.Equal(t, "f1\n", bo[0].Log("rev", "stdio"))
		total, _, err := m.Store.ListBuilds(context.Background(), ci.BuildQuery{})
		require.NoError(t, err)
		assert.Len(t, total, 3)
		assert.Empty(t, pendingCounted(t, m), "the collapsed requests left the list counted")
	})
	t.Run("FullBuilderSkipped", func(t *testing.T) {
		// b1's worker is busy with a backlog of b1 requests queued before
		// b2's: b2's request, behind them, starts on its own worker.
		release := filepath.Join(t.TempDir(), "release")
		cfg := ci.MasterConfig{
			Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}},
			Builders: []ci.BuilderConfig{
				{Name: "b1", Workers: []string{"w1"}, Steps: []ci.Step{blockingStep("wait", release)}},
				{Name: "b2", Workers: []string{"w2"}, Steps: []ci.Step{blockingStep("wait", release)}},
			},
		}
		m := citest.Start(t, cfg)
		var sets []int64
		for range 3 {
			sets = append(sets, m.Submit(t, citest.Request{Builder: "b1"}))
		}
		m.WaitRunning(t, "b1")
		sets = append(sets, m.Submit(t, citest.Request{Builder: "b2"}))
		m.WaitRunning(t, "b2")
		pending, err := m.Store.PendingRequests(context.Background())
		require.NoError(t, err)
		assert.Len(t, pending, 2, "b1's two waiting requests")
		assert.Equal(t, map[string]int{"b1": 2}, pendingCounted(t, m))
		require.NoError(t, os.WriteFile(release, nil, 0o644))
		for _, id := range sets {
			assert.Equal(t, ci.Success, m.WaitBuildset(t, id)[0].Results())
		}
		assert.Empty(t, pendingCounted(t, m))
	})
	t.Run("NextWorker", func(t *testing.T) {
		var mu sync.Mutex
		var offered [][]string
		cfg := oneBuilder(shell("s", "true"))
		cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: "w2"})
		cfg.Builders[0].Workers = []string{"w1", "w2"}
		cfg.Builders[0].NextWorker = func(workers []string, req *ci.BuildRequest) string {
			mu.Lock()
			offered = append(offered, slices.Clone(workers))
			mu.Unlock()
			if req.Priority == 5 {
				return "" // held back
			}
			return "w2"
		}
		m := citest.Start(t, cfg)
		ctx := context.Background()
		held, heldReqs, err := m.Master.Submit(ctx, ci.Submission{Builders: []string{"b1"}, Reason: "held", Priority: 5})
		require.NoError(t, err)
		for range 3 {
			b := m.Build(t, citest.Request{Builder: "b1"})
			assert.Equal(t, ci.Success, b.Results())
			w, err := m.Store.GetWorker(ctx, b.Record.WorkerID)
			require.NoError(t, err)
			assert.Equal(t, "w2", w.Name, "the worker NextWorker names")
		}
		mu.Lock()
		assert.Contains(t, offered, []string{"w1", "w2"}, "the free workers, in configuration order")
		mu.Unlock()
		pending, err := m.Store.PendingRequests(ctx)
		require.NoError(t, err)
		require.Len(t, pending, 1)
		assert.Equal(t, heldReqs[0].ID, pending[0].ID, "a request NextWorker gives no worker waits")
		require.NoError(t, m.CancelRequest(ctx, heldReqs[0].ID))
		assert.Empty(t, m.WaitBuildset(t, held.ID))
	})
	t.Run("NextBuild", func(t *testing.T) {
		release := filepath.Join(t.TempDir(), "release")
		cfg := oneBuilder(blockingStep("wait", release))
		var mu sync.Mutex
		var seen [][]int64
		cfg.Builders[0].NextBuild = func(reqs []*ci.BuildRequest) *ci.BuildRequest {
			var ids []int64
			for _, r := range reqs {
				ids = append(ids, r.ID)
			}
			mu.Lock()
			seen = append(seen, ids)
			mu.Unlock()
			return reqs[len(reqs)-1] // the last in priority order
		}
		m := citest.Start(t, cfg)
		first := m.Submit(t, citest.Request{Builder: "b1"})
		m.WaitRunning(t, "b1")
		ctx := context.Background()
		var sets []*ci.Buildset
		var reqIDs []int64
		for _, prio := range []int{0, 0, 10} {
			bs, reqs, err := m.Master.Submit(ctx, ci.Submission{Builders: []string{"b1"}, Reason: fmt.Sprint(prio), Priority: prio})
			require.NoError(t, err)
			sets = append(sets, bs)
			reqIDs = append(reqIDs, reqs[0].ID)
		}
		require.NoError(t, os.WriteFile(release, nil, 0o644))
		m.WaitBuildset(t, first)
		var numbers []int
		for _, bs := range sets {
			b := m.WaitBuildset(t, bs.ID)
			require.Len(t, b, 1)
			numbers = append(numbers, b[0].Record.Number)
		}
		// The last in priority order first, each time: the second request
		// (build 2), then the first (3), then the high-priority one (4).
		assert.Equal(t, []int{3, 2, 4}, numbers)
		mu.Lock()
		assert.Contains(t, seen, []int64{reqIDs[2], reqIDs[0], reqIDs[1]}, "the pending requests, in priority order")
		mu.Unlock()
	})
	t.Run("Priority", func(t *testing.T) {
		release := filepath.Join(t.TempDir(), "release")
		cfg := oneBuilder(blockingStep("wait", release))
		m := citest.Start(t, cfg)
		first := m.Submit(t, citest.Request{Builder: "b1"})
		m.WaitRunning(t, "b1")
		ctx := context.Background()
		low, _, err := m.Master.Submit(ctx, ci.Submission{Builders: []string{"b1"}, Reason: "low"})
		require.NoError(t, err)
		high, _, err := m.Master.Submit(ctx, ci.Submission{Builders: []string{"b1"}, Reason: "high", Priority: 10})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(release, nil, 0o644))
		m.WaitBuildset(t, first)
		bl, bh := m.WaitBuildset(t, low.ID), m.WaitBuildset(t, high.ID)
		assert.Less(t, bh[0].Record.Number, bl[0].Record.Number, "the higher priority request is built first")
	})
}

func TestMaster_Submit(t *testing.T) {
	m := citest.Start(t, oneBuilder(shell("s", "true")))
	_, _, err := m.Master.Submit(context.Background(), ci.Submission{Builders: []string{"nope"}})
	assert.ErrorIs(t, err, ci.ErrUnknownBuilder)
	_, _, err = m.Master.Submit(context.Background(), ci.Submission{})
	assert.ErrorContains(t, err, "no builders")
}

func TestMaster_Events(t *testing.T) {
	m := citest.Start(t, oneBuilder(shell("s", "echo hi")))
	sub := m.Subscribe(1024)
	defer sub.Close()
	b := m.Build(t, citest.Request{Builder: "b1"})
	var types []ci.EventType
	deadline := time.After(10 * time.Second)
	for len(types) == 0 || types[len(types)-1] != ci.EventBuildsetComplete {
		select {
		case e := <-sub.C:
			// Running states are told as they come: tested apart.
			if e.Type != ci.EventLogLines && e.Type != ci.EventBuildChanged && e.Type != ci.EventStepChanged {
				types = append(types, e.Type)
			}
			if e.BuildID != 0 {
				assert.Equal(t, b.Record.ID, e.BuildID)
			}
		case <-deadline:
			t.Fatalf("events so far: %v", types)
		}
	}
	assert.Equal(t, []ci.EventType{
		ci.EventBuildsetNew, ci.EventRequestNew, ci.EventBuildStarted, ci.EventStepStarted,
		ci.EventLogFinished, ci.EventStepFinished, ci.EventBuildFinished, ci.EventBuildsetComplete,
	}, types)
	assert.Zero(t, sub.Dropped())
}

// TestMaster_LiveLog reads a step's log from the store while the step still
// runs.
func TestMaster_LiveLog(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	m := citest.Start(t, oneBuilder(&steps.ShellCommand{
		StepOptions: ci.StepOptions{Name: "slow"},
		Command:     []string{"sh", "-c", `echo first; while [ ! -e "$1" ]; do sleep 0.01; done; echo second`, "sh", release},
	}))
	sub := m.Subscribe(1024)
	defer sub.Close()
	bs := m.Submit(t, citest.Request{Builder: "b1"})
	ctx := context.Background()
	deadline := time.After(time.Minute)
	for {
		var e ci.Event
		select {
		case e = <-sub.C:
		case <-deadline:
			t.Fatal("no log line arrived")
		}
		if e.Type != ci.EventLogLines {
			continue
		}
		text, err := m.Store.LogLines(ctx, e.LogID, 0, -1)
		require.NoError(t, err)
		if !strings.Contains(text, "ofirst\n") {
			continue
		}
		l, err := m.Store.GetLog(ctx, e.LogID)
		require.NoError(t, err)
		assert.False(t, l.Complete, "the log is read while it is written")
		b, err := m.Store.GetBuild(ctx, e.BuildID)
		require.NoError(t, err)
		assert.False(t, b.Complete)
		assert.NotContains(t, text, "osecond")
		break
	}
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	b := m.WaitBuildset(t, bs)[0]
	assert.Equal(t, "first\nsecond\n", b.Log("slow", "stdio"))
}
