package report_test

import (
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/steps"
)

// echoConfig is a master with one builder, "pkg", whose one step echoes
// the branch it builds, and a failing builder, "broken".
func echoConfig() ci.MasterConfig {
	return ci.MasterConfig{
		Title:     "Ideascube",
		PublicURL: "http://ci.example.org/",
		Workers:   []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{
			Name:    "pkg",
			Workers: []string{"w1"},
			Steps: []ci.Step{&steps.ShellCommand{
				StepOptions: ci.StepOptions{Name: "echo"},
				Command:     []any{"echo", ci.Interpolate("%(prop:branch)s")},
			}},
		}, {
			Name:    "broken",
			Workers: []string{"w1"},
			Steps: []ci.Step{&steps.ShellCommand{
				StepOptions: ci.StepOptions{Name: "compile"},
				Command:     []string{"false"},
			}},
		}},
	}
}

// recv waits for a value on ch, failing the test if none comes.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}
