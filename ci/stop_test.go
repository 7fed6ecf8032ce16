package ci_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// TestMaster_StopBuild_AtStart stops builds as soon as they start, while
// their first step is being recorded: the stop must not be lost (the
// blocking step would then never end).
func TestMaster_StopBuild_AtStart(t *testing.T) {
	release := filepath.Join(t.TempDir(), "never")
	m := citest.Start(t, oneBuilder(
		blockingStep("wait", release),
		&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "cleanup", AlwaysRun: true}, Command: []string{"true"}},
	))
	for range 5 {
		sub := m.Subscribe(1024)
		bs := m.Submit(t, citest.Request{Builder: "b1"})
		for e := range sub.C {
			if e.Type == ci.EventBuildStarted && e.BuildsetID == bs {
				require.NoError(t, m.StopBuild(context.Background(), e.BuildID, "at once"))
				break
			}
		}
		sub.Close()
		b := m.WaitBuildset(t, bs)[0]
		assert.Equal(t, ci.Cancelled, b.Results())
		assert.Equal(t, ci.Success, b.StepResults()["cleanup"])
	}
}
