package ci_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// A completed buildset is told with its results: the worst of its
// builds', as stored.
func TestBuildsetCompleteResults(t *testing.T) {
	fail := &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "false"}, Command: []string{"false"}}
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{
			{Name: "ok", Workers: []string{"w1"}, Steps: []ci.Step{trueStep()}},
			{Name: "bad", Workers: []string{"w1"}, Steps: []ci.Step{fail}},
		},
	})
	sub := m.Subscribe(1024)
	defer sub.Close()
	for _, c := range []struct {
		builders []string
		want     ci.Result
	}{
		{[]string{"ok"}, ci.Success},
		{[]string{"bad"}, ci.Failure},
		{[]string{"ok", "bad"}, ci.Failure},
	} {
		bs := m.Submit(t, citest.Request{Builders: c.builders})
		var got *ci.Event
		for got == nil {
			e := <-sub.C
			if e.Type == ci.EventBuildsetComplete && e.BuildsetID == bs {
				got = &e
			}
		}
		assert.Equal(t, c.want, got.Results, "builders %v", c.builders)
		st, err := m.Master.Store(t.Context())
		require.NoError(t, err)
		stored, err := st.GetBuildset(t.Context(), bs)
		require.NoError(t, err)
		assert.Equal(t, stored.Results, got.Results, "as stored")
	}
}
