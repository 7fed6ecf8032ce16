package ci_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// recorder is a reporter that fails its first failures calls, then records.
type recorder struct {
	mu       sync.Mutex
	failures int
	calls    int
	reports  []*ci.Report
	got      chan struct{}
}

func (r *recorder) Report(ctx context.Context, rep *ci.Report) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failures > 0 {
		r.failures--
		return errors.New("server down")
	}
	r.reports = append(r.reports, rep)
	r.got <- struct{}{}
	return nil
}

// blocker is a reporter that never answers until its context ends.
type blocker struct{}

func (blocker) Report(ctx context.Context, rep *ci.Report) error { <-ctx.Done(); return ctx.Err() }

func TestReporters(t *testing.T) {
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock := citest.NewClock(start)
	rec := &recorder{failures: 2, got: make(chan struct{}, 10)}
	cfg := oneBuilder(shell("s", "echo", "hi"))
	cfg.PublicURL = "http://ci.example.org/kiln/"
	cfg.Title = "Ideascube"
	cfg.Clock = clock
	cfg.Reporters = []ci.Reporter{blocker{}, rec}
	m := citest.Start(t, cfg)

	// A reporter that hangs does not delay builds.
	b := m.Build(t, citest.Request{Builder: "b1"})
	require.Equal(t, ci.Success, b.Results(), b.LogLines("s", "stdio"))

	// The failing reporter is retried after 1 s, then 2 s: the clock is
	// moved once each retry's own timer is set (other timers of the
	// master may be pending too).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.True(t, clock.WaitTimer(ctx, start.Add(time.Second)), "the first retry's timer")
	clock.Advance(time.Second)
	require.True(t, clock.WaitTimer(ctx, start.Add(3*time.Second)), "the second retry's timer")
	clock.Advance(2 * time.Second)
	for range 2 {
		select {
		case <-rec.got:
		case <-ctx.Done():
			t.Fatal("reports did not arrive")
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, 4, rec.calls)
	require.Len(t, rec.reports, 2)
	started, finished := rec.reports[0], rec.reports[1]
	assert.Equal(t, ci.BuildStarted, started.Event)
	assert.Equal(t, ci.BuildFinished, finished.Event)
	assert.Equal(t, b.Record.ID, finished.Build.ID)
	assert.Equal(t, ci.Success, finished.Build.Results)
	assert.Equal(t, "b1", finished.Builder.Name)
	assert.Equal(t, "w1", finished.Worker)
	assert.Equal(t, "http://ci.example.org/kiln/builders/b1/builds/1", finished.URL)
	assert.Equal(t, "Ideascube", finished.Title)
	require.Len(t, finished.Steps, 1)
	assert.Equal(t, "s", finished.Steps[0].Name)
	assert.Empty(t, started.Steps)
	assert.Equal(t, "b1", started.Build.Properties.String("buildername"))
}

func TestBuildURL(t *testing.T) {
	m, err := ci.NewMaster(ci.MasterConfig{PublicURL: "http://buildbot.ideascube.org"})
	require.NoError(t, err)
	assert.Equal(t, "http://buildbot.ideascube.org/builders/build-amd64-pkg/builds/7", m.BuildURL("build-amd64-pkg", 7))
	m, err = ci.NewMaster(ci.MasterConfig{})
	require.NoError(t, err)
	assert.Equal(t, "", m.BuildURL("b", 1))
}
