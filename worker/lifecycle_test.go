//go:build unix

package worker_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/protocol"
)

// startSleep starts a shell command that records its pid and sleeps, and
// returns once it runs.
func startSleep(t *testing.T, c *masterConn, dir, id string) (pidFile string) {
	t.Helper()
	pidFile = filepath.Join(dir, "pid-"+id)
	c.startCommand(id, "shell", map[string]any{
		"workdir": dir,
		"command": []any{"sh", "-c", "echo $$ > " + pidFile + "; echo started; exec sleep 60"},
	})
	// Wait for the output that says the process runs, answering the
	// updates before it.
	for {
		m := c.recv()
		require.Equal(t, protocol.OpUpdate, m.Op(), "%v", m)
		c.respond(m, nil, nil)
		ups, err := protocol.ParseUpdates(m["args"])
		require.NoError(t, err)
		for _, u := range ups {
			if u.Key == "stdout" {
				return pidFile
			}
		}
	}
}

// assertGone checks that the process whose pid is in pidFile has ended.
func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "process %d still runs", pid)
}

func TestWorker_InterruptCommand(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()

	pidFile := startSleep(t, c, w.BaseDir, "9")
	r := c.call(protocol.Message{"op": "interrupt_command", "builder_name": "b", "command_id": "9", "why": "stop it"})
	require.NoError(t, r.ResponseError())
	run := c.follow("9", nil)
	assert.Nil(t, run.complete, "an interrupted command completes normally")
	assert.NotEqual(t, int64(0), run.rc(t))
	assert.Contains(t, run.text(t, "header"), "command interrupted")
	assertGone(t, pidFile)

	// Interrupting what no longer runs is no error.
	r = c.call(protocol.Message{"op": "interrupt_command", "command_id": "9", "why": "again"})
	assert.NoError(t, r.ResponseError())
}

func TestWorker_Shutdown(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	_, result := startWorker(t, w)
	c := m.accept()
	c.handshake()

	pidFile := startSleep(t, c, w.BaseDir, "1")
	r := c.call(protocol.Message{"op": "shutdown"})
	require.NoError(t, r.ResponseError())
	run := c.follow("1", nil)
	assert.Nil(t, run.complete)
	assert.NotEqual(t, int64(0), run.rc(t))
	assertGone(t, pidFile)

	err := c.waitClosed()
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "closed with a close frame: %v", err)
	assert.NoError(t, waitResult(t, result), "Run returns nil after a shutdown")
}

func TestWorker_Stop(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	cancel, result := startWorker(t, w)
	c := m.accept()
	c.handshake()

	pidFile := startSleep(t, c, w.BaseDir, "1")
	cancel()
	run := c.follow("1", nil)
	assert.Nil(t, run.complete)
	assert.NotEqual(t, int64(0), run.rc(t))
	assertGone(t, pidFile)
	err := c.waitClosed()
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "%v", err)
	assert.NoError(t, waitResult(t, result))
}

// A command running when the connection is lost is stopped.
func TestWorker_LostConnectionStopsCommands(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()
	pidFile := startSleep(t, c, w.BaseDir, "1")
	c.ws.CloseNow()
	m.accept() // the worker reconnects once the command has ended
	assertGone(t, pidFile)
}
