//go:build unix

package local_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// The in-process worker serves a real master: citest runs each configured
// worker as a local.Worker.
func TestWorker_Build(t *testing.T) {
	masterFiles := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(masterFiles, "conf.txt"), []byte("from the master\n"), 0o644))
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{
			Name:    "b",
			Workers: []string{"w1"},
			Steps: []ci.Step{
				&steps.FileDownload{MasterSrc: filepath.Join(masterFiles, "conf.txt"), WorkerDest: "conf.txt"},
				&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "make"}, Command: []string{"sh", "-c", "mkdir -p out && cat conf.txt > out/result.txt && echo built"}},
				&steps.FileUpload{WorkerSrc: "out/result.txt", MasterDest: filepath.Join(masterFiles, "result.txt")},
				&steps.DirectoryUpload{WorkerSrc: "out", MasterDest: filepath.Join(masterFiles, "out"), Compress: "gz"},
			},
		}},
	}
	m := citest.Start(t, cfg)
	b := m.Build(t, citest.Request{Builder: "b"})
	require.Equal(t, ci.Success, b.Results(), "steps: %v", b.StepResults())
	assert.Equal(t, "built\n", b.Log("make", "stdio"))
	assert.Contains(t, b.Header("make", "stdio"), "sh -c 'mkdir -p out && cat conf.txt > out/result.txt && echo built'\n")
	for _, f := range []string{"result.txt", "out/result.txt"} {
		got, err := os.ReadFile(filepath.Join(masterFiles, f))
		require.NoError(t, err)
		assert.Equal(t, "from the master\n", string(got), f)
	}
}

// BenchmarkWorker_BuildTrue measures a whole one-step build running true:
// submitted to a master with an SQLite store, run by the in-process
// worker, recorded.
func BenchmarkWorker_BuildTrue(b *testing.B) {
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{
			Name:    "b",
			Workers: []string{"w1"},
			Steps:   []ci.Step{&steps.ShellCommand{Command: []string{"true"}}},
		}},
	}
	m := citest.Start(b, cfg)
	for b.Loop() {
		if r := m.Build(b, citest.Request{Builder: "b"}).Results(); r != ci.Success {
			b.Fatal(r)
		}
	}
}
