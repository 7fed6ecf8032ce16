package webui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/local"
)

// silentConn is a worker connection whose worker has gone silent: it
// still runs commands (a real in-process worker) but says it has not
// been heard from since since, and will be declared lost at lostAt.
type silentConn struct {
	ci.WorkerConn
	silent        atomic.Bool
	since, lostAt time.Time
}

func (c *silentConn) Silence() (bool, time.Time, time.Time) {
	return c.silent.Load(), c.since, c.lostAt
}

// A build running on a silent worker shows, on its page and in the API,
// when its worker will be declared lost and the build end as RETRY; so
// does the worker, on the workers page and in the API.
func TestSilentWorker(t *testing.T) {
	t.Parallel()
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}},
		Builders: []ci.BuilderConfig{
			{Name: "slow", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "wait"}, Command: []string{"sleep", "60"}}}},
			{Name: "other", Workers: []string{"w2"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "wait"}, Command: []string{"sleep", "60"}}}},
		},
	}, citest.Options{NoWorkers: true})
	since := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	lostAt := since.Add(time.Minute)
	conns := map[string]*silentConn{}
	for _, w := range []struct {
		name   string
		silent bool
	}{{"w1", true}, {"w2", false}} {
		lc, err := local.NewConn(w.name, filepath.Join(t.TempDir(), w.name))
		require.NoError(t, err)
		c := &silentConn{WorkerConn: lc, since: since, lostAt: lostAt}
		c.silent.Store(w.silent)
		conns[w.name] = c
		require.NoError(t, m.AttachWorker(t.Context(), c))
	}
	m.Submit(t, citest.Request{Builder: "slow"})
	m.Submit(t, citest.Request{Builder: "other"})
	slow := m.WaitRunning(t, "slow")
	other := m.WaitRunning(t, "other")
	t.Cleanup(func() {
		m.StopBuild(t.Context(), slow, "test over")
		m.StopBuild(t.Context(), other, "test over")
	})
	srv := httptest.NewServer(webui.Handler(m.Master))
	t.Cleanup(srv.Close)

	var one buildsAnswer
	get(t, srv.URL+"/api/v2/builds/"+strconv.FormatInt(slow, 10), 200, &one)
	require.Len(t, one.Builds, 1)
	assert.Equal(t, float64(since.Unix()), one.Builds[0]["worker_silent_since"])
	assert.Equal(t, float64(lostAt.Unix()), one.Builds[0]["retry_at"])
	var all buildsAnswer
	get(t, srv.URL+"/api/v2/builds", 200, &all)
	require.Len(t, all.Builds, 2)
	for _, b := range all.Builds {
		if b["buildid"] == float64(slow) {
			assert.Equal(t, float64(lostAt.Unix()), b["retry_at"])
		} else {
			assert.NotContains(t, b, "retry_at", "the build on the worker that answers")
			assert.NotContains(t, b, "worker_silent_since")
		}
	}

	var workers struct {
		Workers []map[string]any `json:"workers"`
	}
	get(t, srv.URL+"/api/v2/workers", 200, &workers)
	require.Len(t, workers.Workers, 2)
	for _, w := range workers.Workers {
		if w["name"] == "w1" {
			assert.Equal(t, float64(since.Unix()), w["silent_since"])
			assert.Equal(t, float64(lostAt.Unix()), w["lost_at"])
		} else {
			assert.NotContains(t, w, "lost_at")
		}
	}

	page := func(path string) string {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		return string(b)
	}
	build := page("/builders/slow/builds/1")
	assert.Contains(t, build, `id="worker-silent"`)
	assert.Contains(t, build, "Worker <b>w1</b> has not answered since")
	assert.Contains(t, build, "declared lost at 2026-11-28 06:01:00 UTC", "the time it is given up")
	assert.Contains(t, build, "this build ends as RETRY")
	assert.NotContains(t, page("/builders/other/builds/1"), `id="worker-silent"`)
	ws := page("/workers")
	assert.Contains(t, ws, `<span class="worker silent">silent</span>`)
	assert.Contains(t, ws, "unless it answers")
	assert.Contains(t, ws, `<span class="worker up">connected</span>`, "w2")

	// The page of a build follows its worker: a stream opened while w2
	// answers tells the page when w2 goes silent, and when it answers
	// again. The stream is opened once the build's running state is
	// stored (within ci.StateInterval of its step's start), so that no
	// change of state is told in the same burst as the worker's.
	require.Eventually(t, func() bool {
		var b buildsAnswer
		get(t, srv.URL+"/api/v2/builds/"+strconv.FormatInt(other, 10), 200, &b)
		return len(b.Builds) == 1 && b.Builds[0]["state_string"] != "building"
	}, time.Minute, 10*time.Millisecond)
	res, err := http.Get(srv.URL + "/live?build=" + strconv.FormatInt(other, 10))
	require.NoError(t, err)
	defer res.Body.Close()
	events := readEvents(res.Body)
	// The next "worker" change, past those of the build's own running
	// state (its step's state, told when it is set).
	nextWorker := func() sseEvent {
		t.Helper()
		for {
			e := next(t, events)
			if e.data != "step.changed" && e.data != "build.changed" {
				return e
			}
		}
	}
	conns["w2"].silent.Store(true)
	assert.Equal(t, sseEvent{name: "change", data: "worker"}, nextWorker())
	assert.Contains(t, page("/builders/other/builds/1"), `id="worker-silent"`)
	conns["w2"].silent.Store(false)
	assert.Equal(t, sseEvent{name: "change", data: "worker"}, nextWorker())
	assert.NotContains(t, page("/builders/other/builds/1"), `id="worker-silent"`)
}
