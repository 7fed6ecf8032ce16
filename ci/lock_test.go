//go:build unix

package ci_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// TestMaster_FolderLock: a second master on the folder of a running one
// stops at once, naming the folder and the first one's process, and
// changes nothing: the first one's running build goes on and ends well.
func TestMaster_FolderLock(t *testing.T) {
	dir := t.TempDir()
	cfg := restartConfig(dir)
	first := citest.Start(t, cfg)
	bs := first.Submit(t, citest.Request{Builder: "b1"})
	running := first.WaitRunning(t, "b1")

	second, err := ci.NewMaster(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = second.Run(ctx)
	require.ErrorIs(t, err, ci.ErrFolderInUse)
	abs, _ := filepath.Abs(cfg.BaseDir)
	assert.Contains(t, err.Error(), abs+" is locked by process "+fmt.Sprint(os.Getpid()))

	b, err := first.Store.GetBuild(ctx, running)
	require.NoError(t, err)
	assert.False(t, b.Complete, "the first master's build is still running")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "release"), nil, 0o644))
	builds := first.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, 1, builds[0].Record.Number, "built once, not retried")
}

// TestMaster_FolderLockReleased: the lock goes with the master.
func TestMaster_FolderLockReleased(t *testing.T) {
	cfg := oneBuilder(shell("hello", "true"))
	cfg.BaseDir = t.TempDir()
	t.Run("first", func(t *testing.T) { citest.Start(t, cfg) })
	citest.Start(t, cfg)
	b, err := os.ReadFile(filepath.Join(cfg.BaseDir, ci.LockFile))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("%d\n", os.Getpid()), string(b))
}

// TestMaster_UnwritableFolder: a folder the master may not write says so,
// naming it. Run as root (as CI does), the test runs itself again as the
// user nobody, for whom the folder is not writable.
func TestMaster_UnwritableFolder(t *testing.T) {
	dir := os.Getenv("KILN_TEST_UNWRITABLE")
	if dir == "" {
		dir = t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o555))
		if os.Geteuid() == 0 {
			runAsNobody(t, "TestMaster_UnwritableFolder", "KILN_TEST_UNWRITABLE="+dir)
			return
		}
	}
	cfg := oneBuilder(shell("hello", "true"))
	cfg.BaseDir = filepath.Join(dir, "master")
	m, err := ci.NewMaster(cfg)
	require.NoError(t, err)
	err = m.Run(context.Background())
	require.Error(t, err)
	assert.Equal(t, "create master folder: mkdir "+cfg.BaseDir+": permission denied", err.Error())
}

// runAsNobody runs the test called name again, in a copy of the test
// binary, as the user nobody, with env added.
func runAsNobody(t *testing.T, name string, env ...string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ci.test")
	// The test's temporary folders, and their parent, must be open to it.
	require.NoError(t, os.Chmod(filepath.Dir(bin), 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(filepath.Dir(bin)), 0o755))
	data, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.v")
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: "+name, "%s", out)
}
