//go:build unix

package command_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/command"
	"github.com/kilnci/kiln/worker/protocol"
)

func TestWorkerInfo(t *testing.T) {
	base := t.TempDir()
	info := filepath.Join(base, "info")
	require.NoError(t, os.MkdirAll(filepath.Join(info, "folder"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(info, "admin"), []byte("file admin\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(info, "host"), []byte("file host\n"), 0o644))
	outside := filepath.Join(base, "outside")
	require.NoError(t, os.WriteFile(outside, []byte("linked\n"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(info, "access_uri")))
	osRelease := filepath.Join(base, "os-release")
	require.NoError(t, os.WriteFile(osRelease, []byte("# a comment\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"13\"\nEMPTY=\n\nID=debian\n"), 0o644))
	env := map[string]string{"HOME": "/home/w"}

	got := command.WorkerInfo(command.HostInfo{BaseDir: base, Host: "given host", Env: env, DeleteLeftoverDirs: true, OSRelease: osRelease})
	assert.Equal(t, map[string]any{
		"admin":                "file admin\n",
		"host":                 "given host",
		"access_uri":           "linked\n",
		"os_name":              "Debian GNU/Linux",
		"os_version_id":        "13",
		"os_id":                "debian",
		"environ":              env,
		"system":               "posix",
		"basedir":              base,
		"numcpus":              runtime.NumCPU(),
		"version":              protocol.Version,
		"worker_commands":      protocol.WorkerCommands(),
		"delete_leftover_dirs": true,
	}, got)

	t.Run("NoInfoFolder", func(t *testing.T) {
		got := command.WorkerInfo(command.HostInfo{BaseDir: t.TempDir(), OSRelease: filepath.Join(base, "missing")})
		assert.NotContains(t, got, "admin")
		assert.NotContains(t, got, "os_id")
		assert.Equal(t, false, got["delete_leftover_dirs"])
	})
}

func TestEnviron(t *testing.T) {
	t.Setenv("KILN_ENVIRON_TEST", "a=b")
	assert.Equal(t, "a=b", command.Environ()["KILN_ENVIRON_TEST"])
}
