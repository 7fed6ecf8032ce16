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

func TestForce(t *testing.T) {
	force := &scheduler.Force{Name: "force", Builders: []string{"a", "b"}, Properties: map[string]string{"dist": "jessie"}}
	echo := &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "echo"}, Command: []any{"echo", ci.Interpolate("%(prop:dist)s %(prop:owner)s %(src::branch)s %(src::revision)s")}}
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{
			{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{echo}},
			{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{echo}},
			{Name: "other", Workers: []string{"w"}, Steps: []ci.Step{echo}},
		},
		Schedulers: []ci.Scheduler{force},
	})
	ctx := context.Background()

	t.Run("AllBuilders", func(t *testing.T) {
		bs, err := force.Force(ctx, m.Master, scheduler.ForceRequest{Owner: "alice", Reason: "release", Branch: "0.9.1", Revision: "0.9.1", Properties: map[string]string{"dist": "stretch"}})
		require.NoError(t, err)
		assert.Equal(t, "A build was forced by 'alice': release", bs.Reason)
		builds := m.WaitBuildset(t, bs.ID)
		require.Len(t, builds, 2)
		for _, b := range builds {
			assert.Equal(t, ci.Success, b.Results())
			assert.Equal(t, "stretch alice 0.9.1 0.9.1\n", b.Log("echo", "stdio"))
			assert.Equal(t, ci.SourceForce, b.Record.Properties["owner"].Source)
			assert.Equal(t, "release", b.Property("reason"))
			assert.Equal(t, "force", b.Property("scheduler"))
		}
	})
	t.Run("SomeBuildersAndDefaults", func(t *testing.T) {
		bs, err := force.Force(ctx, m.Master, scheduler.ForceRequest{Builders: []string{"b"}})
		require.NoError(t, err)
		assert.Equal(t, "forced", bs.Reason)
		builds := m.WaitBuildset(t, bs.ID)
		require.Len(t, builds, 1)
		assert.Equal(t, "jessie   \n", builds[0].Log("echo", "stdio"))
	})
	t.Run("BadRequests", func(t *testing.T) {
		_, err := force.Force(ctx, m.Master, scheduler.ForceRequest{Builders: []string{"other"}})
		assert.ErrorIs(t, err, scheduler.ErrBadRequest)
		assert.ErrorContains(t, err, `builder "other" is not one of this scheduler's builders`)
		_, err = force.Force(ctx, m.Master, scheduler.ForceRequest{Properties: map[string]string{"sneaky": "x"}})
		assert.ErrorIs(t, err, scheduler.ErrBadRequest)
		assert.ErrorContains(t, err, `unknown property "sneaky"`)
		n, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{})
		require.NoError(t, err)
		assert.Len(t, n, 3, "refused requests store nothing")
	})
}

func TestForce_Config(t *testing.T) {
	_, err := ci.NewMaster(ci.MasterConfig{
		Workers:    []ci.WorkerConfig{{Name: "w"}},
		Builders:   []ci.BuilderConfig{{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{&steps.ShellCommand{Command: "true"}}}},
		Schedulers: []ci.Scheduler{&scheduler.Force{Name: "force", Builders: []string{"a", "ghost"}}},
	})
	assert.ErrorContains(t, err, `scheduler "force": unknown builder "ghost"`)
}
