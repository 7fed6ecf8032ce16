//go:build unix

package worker_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker"
	"github.com/kilnci/kiln/worker/protocol"
)

// TestHelperGuard is the guard process of TestGuard_WorkerKilled (the
// test binary run again); otherwise it does nothing.
func TestHelperGuard(t *testing.T) {
	if os.Getenv("KILN_TEST_GUARD") != "1" {
		return
	}
	worker.Guard(os.Stdin)
}

// TestHelperWorker is the worker process of TestGuard_WorkerKilled.
func TestHelperWorker(t *testing.T) {
	master := os.Getenv("KILN_TEST_WORKER_MASTER")
	if master == "" {
		return
	}
	w := &worker.Worker{Name: "w1", Password: "pass", Master: master, BaseDir: os.Getenv("KILN_TEST_WORKER_DIR"),
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		GuardArgs: []string{os.Args[0], "-test.run=^TestHelperGuard$"}}
	w.Run(context.Background()) // until killed
}

// TestGuard_WorkerKilled: a worker killed with SIGKILL leaves none of its
// commands' processes running: its guard kills their process groups,
// the processes they started too.
func TestGuard_WorkerKilled(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	dir := t.TempDir()
	proc := exec.Command(os.Args[0], "-test.run=^TestHelperWorker$")
	proc.Env = append(os.Environ(), "KILN_TEST_WORKER_MASTER="+m.URL, "KILN_TEST_WORKER_DIR="+dir, "KILN_TEST_GUARD=1")
	require.NoError(t, proc.Start())
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	t.Cleanup(func() { proc.Process.Kill() })

	c := m.accept()
	c.handshake()
	// A command that starts a process of its own (in its group) and
	// waits for it.
	pidFile := filepath.Join(dir, "grandchild")
	c.startCommand("1", "shell", map[string]any{
		"workdir": dir,
		"command": []any{"sh", "-c", "sleep 60 & echo $! > " + pidFile + "; echo started; wait"},
	})
	for started := false; !started; {
		msg := c.recv()
		c.respond(msg, nil, nil)
		ups, err := protocol.ParseUpdates(msg["args"])
		require.NoError(t, err)
		for _, u := range ups {
			started = started || u.Key == "stdout"
		}
	}
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, 0), "the command's own process runs")

	require.NoError(t, proc.Process.Signal(syscall.SIGKILL))
	<-exited
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		require.True(t, time.Now().Before(deadline), "process %d outlived its worker", pid)
		time.Sleep(20 * time.Millisecond)
	}
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestGuard: the groups still running when the input ends are killed;
// those said to have ended are left alone.
func TestGuard(t *testing.T) {
	start := func() *exec.Cmd {
		c := exec.Command("sleep", "60")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, c.Start())
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	running, ended := start(), start()
	in := "+" + strconv.Itoa(running.Process.Pid) + "\n+" + strconv.Itoa(ended.Process.Pid) + "\n-" + strconv.Itoa(ended.Process.Pid) + "\nnonsense\n+1\n"
	require.NoError(t, worker.Guard(strings.NewReader(in)))
	err := running.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal())
	assert.NoError(t, ended.Process.Signal(syscall.Signal(0)), "a group said to have ended is left alone")
}
