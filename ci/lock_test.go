package ci_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// guarded is a step that fails if another guarded step of the same marker
// runs at the same time.
func guarded(name, marker string, locks ...ci.LockAccess) ci.Step {
	return &steps.ShellCommand{
		StepOptions: ci.StepOptions{Name: name, Locks: locks},
		Command: []string{"sh", "-c", `if ! mkdir "$1" 2>/dev/null; then echo OVERLAP; exit 1; fi; sleep 0.02; rmdir "$1"`,
			"sh", marker},
	}
}

func TestLocks_BuilderExclusive(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	lock := ci.MasterLock("deploy", 1)
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{
			{Name: "a", Workers: []string{"w1"}, Locks: []ci.LockAccess{lock.Exclusive()}, Steps: []ci.Step{blockingStep("wait", release)}},
			{Name: "b", Workers: []string{"w1"}, Locks: []ci.LockAccess{lock.Counting()}, Steps: []ci.Step{blockingStep("wait", release)}},
			{Name: "free", Workers: []string{"w1"}, Steps: []ci.Step{shell("s", "true")}},
		},
	}
	m := citest.Start(t, cfg)
	sa := m.Submit(t, citest.Request{Builder: "a"})
	m.WaitRunning(t, "a")
	sb := m.Submit(t, citest.Request{Builder: "b"})
	// b waits for the lock without holding the worker: another builder
	// builds on the same worker meanwhile.
	free := m.Build(t, citest.Request{Builder: "free"})
	assert.Equal(t, ci.Success, free.Results())
	reqs, _, err := m.Store.ListRequests(context.Background(), ci.RequestQuery{BuildsetID: sb})
	require.NoError(t, err)
	assert.False(t, reqs[0].Claimed, "the build waiting for the lock has not started")
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	ba, bb := m.WaitBuildset(t, sa)[0], m.WaitBuildset(t, sb)[0]
	assert.Equal(t, ci.Success, ba.Results())
	assert.Equal(t, ci.Success, bb.Results())
	assert.False(t, bb.Record.StartedAt.Before(ba.Record.CompleteAt), "b started after a released the lock")
}

func TestLocks_Counting(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	lock := ci.MasterLock("two", 2)
	cfg := ci.MasterConfig{Workers: []ci.WorkerConfig{{Name: "w1"}}}
	for i := range 3 {
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: fmt.Sprintf("b%d", i), Workers: []string{"w1"}, Locks: []ci.LockAccess{lock.Counting()}, Steps: []ci.Step{blockingStep("wait", release)}})
	}
	m := citest.Start(t, cfg)
	var sets []int64
	for i := range 3 {
		sets = append(sets, m.Submit(t, citest.Request{Builder: fmt.Sprintf("b%d", i)}))
	}
	m.WaitRunning(t, "b0")
	m.WaitRunning(t, "b1")
	pending, err := m.Store.PendingRequests(context.Background())
	require.NoError(t, err)
	assert.Len(t, pending, 1, "the third build waits for a place")
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	for _, s := range sets {
		assert.Equal(t, ci.Success, m.WaitBuildset(t, s)[0].Results())
	}
}

func TestLocks_PerWorker(t *testing.T) {
	lock := ci.WorkerLock("disk", 1)
	dir := t.TempDir()
	cfg := ci.MasterConfig{Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}}}
	// The marker is per worker: two builds may overlap on different
	// workers, never on the same one.
	perWorker := &steps.ShellCommand{
		StepOptions: ci.StepOptions{Name: "g"},
		Command:     []any{"sh", "-c", `if ! mkdir "$1" 2>/dev/null; then echo OVERLAP; exit 1; fi; sleep 0.02; rmdir "$1"`, "sh", ci.Interpolate(filepath.Join(dir, "%(prop:workername)s"))},
	}
	for i := range 4 {
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{
			Name: fmt.Sprintf("b%d", i), Workers: []string{"w1", "w2"}, Locks: []ci.LockAccess{lock.Counting()},
			Steps: []ci.Step{perWorker},
		})
	}
	m := citest.Start(t, cfg)
	var sets []int64
	for range 3 {
		for i := range 4 {
			sets = append(sets, m.Submit(t, citest.Request{Builder: fmt.Sprintf("b%d", i)}))
		}
	}
	for _, s := range sets {
		b := m.WaitBuildset(t, s)[0]
		assert.Equal(t, ci.Success, b.Results(), b.Log("g", "stdio"))
	}
}

func TestLocks_StepsNeverDeadlock(t *testing.T) {
	// Twelve builders whose steps take overlapping sets of exclusive and
	// counting locks in different orders, three builds each, on three
	// workers: every build finishes, and no two steps that hold a lock
	// exclusively overlap.
	dir := t.TempDir()
	a, b, c := ci.MasterLock("A", 2), ci.MasterLock("B", 1), ci.MasterLock("C", 3)
	sets := [][]ci.LockAccess{
		{a.Exclusive(), b.Exclusive()},
		{b.Exclusive(), c.Counting()},
		{c.Exclusive(), a.Counting()},
		{a.Counting(), b.Exclusive(), c.Counting()},
	}
	cfg := ci.MasterConfig{Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}, {Name: "w3"}}}
	for i := range 12 {
		var ss []ci.Step
		for j := range 3 {
			locks := sets[(i+j)%len(sets)]
			// Steps holding a lock exclusively share its marker; the
			// others get one of their own.
			marker := filepath.Join(dir, fmt.Sprintf("free-%d-%d", i, j))
			for _, l := range locks {
				if l.Exclusive {
					marker = filepath.Join(dir, l.Lock.Name)
				}
			}
			ss = append(ss, guarded(fmt.Sprintf("s%d", j), marker, locks...))
		}
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: fmt.Sprintf("b%d", i), Workers: []string{"w1", "w2", "w3"}, Steps: ss})
	}
	m := citest.Start(t, cfg)
	var ids []int64
	for range 3 {
		for i := range 12 {
			ids = append(ids, m.Submit(t, citest.Request{Builder: fmt.Sprintf("b%d", i)}))
		}
	}
	for _, id := range ids {
		b := m.WaitBuildset(t, id)[0]
		for _, s := range b.Steps {
			assert.Equal(t, ci.Success, s.Results, "%s/%s: %s", b.Property("buildername"), s.Name, b.Log(s.Name, "stdio"))
		}
	}
}

func TestLocks_StopWhileWaiting(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	lock := ci.MasterLock("L", 1)
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}},
		Builders: []ci.BuilderConfig{
			{Name: "holder", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{
				StepOptions: ci.StepOptions{Name: "hold", Locks: []ci.LockAccess{lock.Exclusive()}},
				Command:     []string{"sh", "-c", `while [ ! -e "$1" ]; do sleep 0.01; done`, "sh", release},
			}}},
			{Name: "waiter", Workers: []string{"w2"}, Steps: []ci.Step{guarded("want", filepath.Join(t.TempDir(), "m"), lock.Counting())}},
		},
	}
	m := citest.Start(t, cfg)
	sh := m.Submit(t, citest.Request{Builder: "holder"})
	hid := m.WaitRunning(t, "holder")
	m.WaitStep(t, hid, "hold")
	sw := m.Submit(t, citest.Request{Builder: "waiter"})
	wid := m.WaitRunning(t, "waiter")
	m.WaitStep(t, wid, "want")
	require.NoError(t, m.StopBuild(context.Background(), wid, "no patience"))
	bw := m.WaitBuildset(t, sw)[0]
	assert.Equal(t, ci.Cancelled, bw.Results())
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	assert.Equal(t, ci.Success, m.WaitBuildset(t, sh)[0].Results())
	// The lock is free again for the next build.
	assert.Equal(t, ci.Success, m.Build(t, citest.Request{Builder: "waiter"}).Results())
}

func TestLocks_Config(t *testing.T) {
	l := ci.MasterLock("L", 1)
	twin := ci.MasterLock("L", 2)
	step := &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "s", Locks: []ci.LockAccess{l.Counting()}}, Command: "true"}
	_, err := ci.NewMaster(ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{
			{Name: "a", Workers: []string{"w"}, Locks: []ci.LockAccess{l.Exclusive()}, Steps: []ci.Step{shell("x", "true")}},
			{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{step}},
			{Name: "c", Workers: []string{"w"}, Locks: []ci.LockAccess{twin.Counting(), {}}, Steps: []ci.Step{shell("x", "true")}},
		},
	})
	require.Error(t, err)
	assert.ErrorContains(t, err, `lock "L" is a builder lock of "a" and a step lock in "b"`)
	assert.ErrorContains(t, err, `builder "c": two different locks are called "L"`)
	assert.ErrorContains(t, err, `builder "c": a lock is nil`)
}

func TestNextWorkerAndNextBuild(t *testing.T) {
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}},
		Builders: []ci.BuilderConfig{{
			Name: "b", Workers: []string{"w1", "w2"},
			Steps: []ci.Step{shell("s", "true")},
			// Only w2, waiting for it when it is busy.
			NextWorker: func(workers []string, req *ci.BuildRequest) string {
				if slices.Contains(workers, "w2") {
					return "w2"
				}
				return ""
			},
		}},
	}
	m := citest.Start(t, cfg)
	for range 3 {
		b := m.Build(t, citest.Request{Builder: "b"})
		w, err := m.Store.GetWorker(context.Background(), b.Record.WorkerID)
		require.NoError(t, err)
		assert.Equal(t, "w2", w.Name)
	}

	// NextBuild: the newest request first (a LIFO builder).
	release := filepath.Join(t.TempDir(), "release")
	cfg2 := oneBuilder(blockingStep("wait", release), &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "rev"}, Command: []any{"echo", ci.Interpolate("%(src::revision)s")}})
	cfg2.Builders[0].NextBuild = func(reqs []*ci.BuildRequest) *ci.BuildRequest { return reqs[len(reqs)-1] }
	m2 := citest.Start(t, cfg2)
	first := m2.Submit(t, citest.Request{Builder: "b1", SourceStamp: ci.SourceStamp{Revision: "r0"}})
	m2.WaitRunning(t, "b1")
	var later []int64
	for i := 1; i <= 3; i++ {
		later = append(later, m2.Submit(t, citest.Request{Builder: "b1", SourceStamp: ci.SourceStamp{Revision: fmt.Sprintf("r%d", i)}}))
	}
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	m2.WaitBuildset(t, first)
	numbers := map[string]int{}
	for _, id := range later {
		b := m2.WaitBuildset(t, id)[0]
		numbers[b.Log("rev", "stdio")] = b.Record.Number
	}
	assert.Equal(t, map[string]int{"r3\n": 2, "r2\n": 3, "r1\n": 4}, numbers)
}
