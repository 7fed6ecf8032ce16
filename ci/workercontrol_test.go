package ci_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

func workerStatus(m *citest.Master, name string) ci.WorkerStatus {
	for _, w := range m.Workers() {
		if w.Name == name {
			return w
		}
	}
	return ci.WorkerStatus{}
}

func pending(t *testing.T, m *citest.Master) int {
	t.Helper()
	reqs, err := m.Store.PendingRequests(context.Background())
	require.NoError(t, err)
	return len(reqs)
}

// TestWorkerControl_Pause: a paused worker starts no build until it is
// unpaused; its state and reason are in its status.
func TestWorkerControl_Pause(t *testing.T) {
	cfg := oneBuilder(shell("s", "true"))
	cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: "w2"})
	cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: "b2", Workers: []string{"w2"}, Steps: []ci.Step{shell("s", "true")}})
	m := citest.Start(t, cfg)
	sub := m.Subscribe(64)
	defer sub.Close()
	require.NoError(t, m.PauseWorker("w1", "disk full"))
	st := workerStatus(m, "w1")
	assert.True(t, st.Paused)
	assert.Equal(t, "disk full", st.PauseReason)
	e := <-sub.C
	assert.Equal(t, ci.EventWorkerChanged, e.Type)

	bs := m.Submit(t, citest.Request{Builder: "b1"})
	// A later request, for another worker, is built: the distributor has
	// looked at the first one, and left it.
	other := m.WaitBuildset(t, m.Submit(t, citest.Request{Builder: "b2"}))
	assert.Equal(t, ci.Success, other[0].Results())
	assert.Equal(t, 1, pending(t, m))
	require.NoError(t, m.PauseWorker("w1", "disk full"), "pausing again is harmless")
	builds, _, err := m.Store.ListBuilds(context.Background(), ci.BuildQuery{})
	require.NoError(t, err)
	assert.Len(t, builds, 1, "a paused worker starts nothing")

	require.NoError(t, m.UnpauseWorker("w1"))
	assert.False(t, workerStatus(m, "w1").Paused)
	b := m.WaitBuildset(t, bs)
	assert.Equal(t, ci.Success, b[0].Results())

	assert.ErrorIs(t, m.PauseWorker("nope", ""), ci.ErrUnknownWorker)
}

// TestWorkerControl_Stop: a worker asked to stop finishes its build,
// starts no other, and is disconnected once idle.
func TestWorkerControl_Stop(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	m := citest.Start(t, oneBuilder(blockingStep("wait", release)))
	first := m.Submit(t, citest.Request{Builder: "b1"})
	m.WaitRunning(t, "b1")
	require.NoError(t, m.StopWorker("w1"))
	assert.True(t, workerStatus(m, "w1").Graceful)
	second := m.Submit(t, citest.Request{Builder: "b1"})
	m.WaitFor(t, "the second request to be pending", func() bool { return pending(t, m) == 1 })

	require.NoError(t, os.WriteFile(release, nil, 0o644))
	b := m.WaitBuildset(t, first)
	assert.Equal(t, ci.Success, b[0].Results(), "the running build ends normally")
	m.WaitFor(t, "the worker to be disconnected", func() bool { return !workerStatus(m, "w1").Connected })
	assert.Equal(t, 1, pending(t, m), "the second request waits for a worker")
	set, err := m.Store.GetBuildset(context.Background(), second)
	require.NoError(t, err)
	assert.False(t, set.Complete)

	assert.ErrorIs(t, m.StopWorker("w1"), ci.ErrWorkerNotConnected)
	assert.ErrorIs(t, m.KillWorker("w1"), ci.ErrWorkerNotConnected)
}

// TestWorkerControl_Kill: a killed worker is disconnected at once; its
// running build ends as RETRY and its request waits to be built again.
func TestWorkerControl_Kill(t *testing.T) {
	release := filepath.Join(t.TempDir(), "never")
	m := citest.Start(t, oneBuilder(blockingStep("wait", release)))
	bs := m.Submit(t, citest.Request{Builder: "b1"})
	id := m.WaitRunning(t, "b1")
	m.WaitStep(t, id, "wait")
	require.NoError(t, m.KillWorker("w1"))
	b := m.WaitBuild(t, id)
	assert.Equal(t, ci.Retry, b.Results())
	m.WaitFor(t, "the worker to be disconnected", func() bool { return !workerStatus(m, "w1").Connected })
	m.WaitFor(t, "the request to be pending again", func() bool { return pending(t, m) == 1 })
	set, err := m.Store.GetBuildset(context.Background(), bs)
	require.NoError(t, err)
	assert.False(t, set.Complete, "built again when a worker comes")
}
