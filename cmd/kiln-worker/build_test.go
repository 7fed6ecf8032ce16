package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildBinary builds kiln-worker as a static binary (CGO_ENABLED=0) for
// the target in env ("GOOS=linux", "GOARCH=arm", ...), and returns its
// path.
func buildBinary(t *testing.T, env ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kiln-worker")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %v:\n%s", env, out)
	return bin
}

// TestCrossCompile builds kiln-worker for the machines workers run on,
// and checks that each binary is static.
func TestCrossCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling takes a while the first time")
	}
	for _, tt := range []struct {
		name    string
		env     []string
		machine elf.Machine
	}{
		{"linux-amd64", []string{"GOOS=linux", "GOARCH=amd64"}, elf.EM_X86_64},
		{"linux-arm-v7", []string{"GOOS=linux", "GOARCH=arm", "GOARM=7"}, elf.EM_ARM},
		{"linux-386", []string{"GOOS=linux", "GOARCH=386"}, elf.EM_386},
		{"linux-arm64", []string{"GOOS=linux", "GOARCH=arm64"}, elf.EM_AARCH64},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := elf.Open(buildBinary(t, tt.env...))
			require.NoError(t, err)
			defer f.Close()
			assert.Equal(t, tt.machine, f.Machine)
			for _, p := range f.Progs {
				assert.NotEqual(t, elf.PT_INTERP, p.Type, "a static binary has no program interpreter")
			}
		})
	}
}
