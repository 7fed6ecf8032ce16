package scheduler_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
)

// dependentConfig has an upstream Force scheduler on builders "a" (which
// succeeds) and "fail" (which fails), and a Dependent on "b".
func dependentConfig(dir string, withDependent bool) (ci.MasterConfig, *scheduler.Force, *scheduler.Force) {
	up := &scheduler.Force{Name: "up", Builders: []string{"a"}}
	bad := &scheduler.Force{Name: "bad", Builders: []string{"fail"}}
	scheds := []ci.Scheduler{up, bad}
	if withDependent {
		scheds = append(scheds,
			&scheduler.Dependent{Name: "down", Upstream: "up", Builders: []string{"b"}, Properties: map[string]any{"stage": "deploy"}},
			&scheduler.Dependent{Name: "after-bad", Upstream: "bad", Builders: []string{"b"}})
	}
	cfg := config(dir, nil, scheds...)
	cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: "fail", Workers: []string{"w"},
		Steps: []ci.Step{&steps.ShellCommand{Command: []string{"false"}}}})
	return cfg, up, bad
}

func TestDependent(t *testing.T) {
	cfg, up, bad := dependentConfig("", true)
	m := citest.Start(t, cfg)
	ctx := context.Background()

	upstream, _, err := up.Force(ctx, m.Master, ci.ForceRequest{Branch: "main", Revision: "abc"})
	require.NoError(t, err)
	m.WaitBuildset(t, upstream.ID)
	got := waitBuildsets(t, m, "down", 1)
	require.Len(t, got, 1)
	down := got[0]
	assert.Equal(t, "downstream", down.Reason)
	assert.Equal(t, []string{"b"}, requestsOf(t, m, down))
	require.Len(t, down.SourceStamps, 1)
	assert.Equal(t, upstream.SourceStamps[0].ID, down.SourceStamps[0].ID, "the upstream buildset's source stamps")
	builds := m.WaitBuildset(t, down.ID)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, "abc", builds[0].Property("revision"))
	assert.Equal(t, "deploy", builds[0].Property("stage"))
	assert.Equal(t, "down", builds[0].Property("scheduler"))

	// A failed upstream buildset starts nothing.
	failed, _, err := bad.Force(ctx, m.Master, ci.ForceRequest{})
	require.NoError(t, err)
	m.WaitBuildset(t, failed.ID)
	doc := waitSettledWaiting(t, m, "after-bad")
	assert.Nil(t, doc["waiting"])
	assert.Empty(t, buildsets(t, m, "after-bad"))
	assert.Len(t, buildsets(t, m, "down"), 1)
}

// waitSettledWaiting waits until a Dependent waits for no upstream
// buildset and has nothing pending.
func waitSettledWaiting(t *testing.T, m *citest.Master, name string) map[string]any {
	t.Helper()
	var doc map[string]any
	m.WaitFor(t, "the dependent scheduler to settle", func() bool {
		doc = state(t, m, name, "dependent")
		return doc != nil && doc["waiting"] == nil && doc["pending"] == nil
	})
	return doc
}

// TestDependent_Restart lets an upstream buildset complete while the
// Dependent is not running: the next master with the Dependent builds
// after it, once.
func TestDependent_Restart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var upstream *ci.Buildset

	// The upstream buildset is submitted while the dependent runs, and
	// stays pending (no worker).
	cfg, up, _ := dependentConfig(dir, true)
	withMaster(t, "submit", cfg, citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		var err error
		upstream, _, err = up.Force(ctx, m.Master, ci.ForceRequest{Revision: "r1"})
		require.NoError(t, err)
		m.WaitFor(t, "the dependent to follow the upstream buildset", func() bool {
			w, _ := state(t, m, "down", "dependent")["waiting"].([]any)
			return len(w) == 1
		})
	})

	// A master without the dependent builds it.
	cfg, _, _ = dependentConfig(dir, false)
	withMaster(t, "build", cfg, citest.Options{}, func(t *testing.T, m *citest.Master) {
		m.WaitBuildset(t, upstream.ID)
	})

	// The dependent is back: it builds after the upstream buildset once.
	cfg, _, _ = dependentConfig(dir, true)
	withMaster(t, "back", cfg, citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		got := waitBuildsets(t, m, "down", 1)
		waitSettledWaiting(t, m, "down")
		require.Len(t, got, 1)
		assert.Equal(t, upstream.SourceStamps[0].ID, got[0].SourceStamps[0].ID)
	})

	// And never again.
	withMaster(t, "again", cfg, citest.Options{}, func(t *testing.T, m *citest.Master) {
		waitSettledWaiting(t, m, "down")
		later, _, err := up.Force(ctx, m.Master, ci.ForceRequest{Revision: "r2"})
		require.NoError(t, err)
		m.WaitBuildset(t, later.ID)
		got := waitBuildsets(t, m, "down", 2)
		waitSettledWaiting(t, m, "down")
		assert.Len(t, buildsets(t, m, "down"), 2, "one more, for the new upstream buildset only")
		assert.Equal(t, later.SourceStamps[0].ID, got[1].SourceStamps[0].ID)
	})
}

// TestDependent_FirstStart checks that a Dependent added to a master with
// history builds after upstream buildsets still pending, not after old
// ones.
func TestDependent_FirstStart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var pending *ci.Buildset
	cfg, up, _ := dependentConfig(dir, false)
	withMaster(t, "history", cfg, citest.Options{}, func(t *testing.T, m *citest.Master) {
		old, _, err := up.Force(ctx, m.Master, ci.ForceRequest{Revision: "old"})
		require.NoError(t, err)
		m.WaitBuildset(t, old.ID)
	})
	withMaster(t, "pending", cfg, citest.Options{NoWorkers: true}, func(t *testing.T, m *citest.Master) {
		var err error
		pending, _, err = up.Force(ctx, m.Master, ci.ForceRequest{Revision: "new"})
		require.NoError(t, err)
	})
	cfg, _, _ = dependentConfig(dir, true)
	withMaster(t, "withDependent", cfg, citest.Options{}, func(t *testing.T, m *citest.Master) {
		m.WaitBuildset(t, pending.ID)
		got := waitBuildsets(t, m, "down", 1)
		waitSettledWaiting(t, m, "down")
		require.Len(t, got, 1)
		assert.Equal(t, pending.SourceStamps[0].ID, got[0].SourceStamps[0].ID)
	})
}

func TestDependent_Config(t *testing.T) {
	tests := []struct {
		name string
		dep  *scheduler.Dependent
		want string
	}{
		{"UnknownUpstream", &scheduler.Dependent{Name: "down", Upstream: "ghost", Builders: []string{"b"}}, `scheduler "down": Upstream "ghost" is not a scheduler of the configuration`},
		{"NoUpstream", &scheduler.Dependent{Name: "down", Builders: []string{"b"}}, `scheduler "down": Upstream is empty`},
		{"Itself", &scheduler.Dependent{Name: "down", Upstream: "down", Builders: []string{"b"}}, `scheduler "down": Upstream "down" is the scheduler itself`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ci.NewMaster(config("", nil, &scheduler.Force{Name: "up", Builders: []string{"a"}}, tt.dep))
			require.ErrorIs(t, err, ci.ErrInvalidConfig)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}
