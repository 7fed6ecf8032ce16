package debian_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// start starts a master with one in-process worker and one builder
// running steps, with the builder's properties.
func start(t *testing.T, props map[string]any, steps ...ci.Step) *citest.Master {
	t.Helper()
	return citest.Start(t, ci.MasterConfig{
		BaseDir: t.TempDir(),
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{
			Name:       "pkg",
			Workers:    []string{"w"},
			Properties: props,
			Steps:      steps,
		}},
	})
}

// builderDir is the builder's folder of a master started by start.
func builderDir(m *citest.Master) string { return filepath.Join(m.Dir, "workers", "w", "pkg") }

// stub writes an executable script called name in dir.
func stub(t *testing.T, dir, name, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755))
}

// pathWith puts dir first in the worker's PATH, for a step's Env.
func pathWith(dir string) map[string]any {
	return map[string]any{"PATH": []any{dir, "${PATH}"}}
}

// argvOf reads the argument vector a stub recorded, one argument a line.
func argvOf(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// abs returns the absolute path of a file of testdata.
func abs(t *testing.T, name string) string {
	p, err := filepath.Abs(filepath.Join("testdata", name))
	require.NoError(t, err)
	return p
}
