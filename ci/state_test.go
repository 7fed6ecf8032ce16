package ci_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// TestMaster_RunningState: a running build's state is the state of the
// step that runs, in the store (so the pages and the API) and told to
// subscribers; once the build ends it is its summary.
func TestMaster_RunningState(t *testing.T) {
	next := make(chan string)
	step := ci.WithOptions(ci.StepOptions{Name: "compile", Description: "compiling"},
		ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			for state := range next {
				s.SetStateString(state)
			}
			s.SetStateString("compiled 3 files")
			return ci.Success, nil
		}))
	m := citest.Start(t, oneBuilder(step))
	sub := m.Subscribe(1024)
	defer sub.Close()
	bs := m.Submit(t, citest.Request{Builder: "b1"})
	id := m.WaitRunning(t, "b1")
	ctx := context.Background()

	// state waits until the build's and the step's states are want.
	state := func(want string) {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			b, err := m.Store.GetBuild(ctx, id)
			require.NoError(t, err)
			steps, err := m.Store.ListSteps(ctx, id)
			require.NoError(t, err)
			if b.StateString == want && len(steps) == 1 && steps[0].StateString == want {
				return
			}
			select {
			case <-sub.C:
			case <-time.After(ci.StateInterval):
			case <-deadline:
				t.Fatalf("build state %q, steps %v; want %q", b.StateString, steps, want)
			}
		}
	}
	state("compiling")
	next <- "compiling 1 of 3"
	state("compiling 1 of 3")
	// States set quickly reach the store as the last of them.
	next <- "compiling 2 of 3"
	next <- "compiling 3 of 3"
	state("compiling 3 of 3")
	close(next)
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, "build successful", builds[0].Record.StateString)
	assert.Equal(t, "compiled 3 files", builds[0].Step("compile").StateString, "the step's last state stays")
}
