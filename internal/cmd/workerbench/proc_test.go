package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cpuTime reads a process's CPU time to well under the 10 ms ticks of
// /proc/PID/stat, and agrees with them: a shell that counts to 100,000,
// then waits for its standard input to close.
func TestCPUTime(t *testing.T) {
	cmd := exec.Command("sh", "-c", `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo counted; read x || true`)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	start, err := cpuTime(pid)
	require.NoError(t, err)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "counted\n", line)
	end, err := cpuTime(pid)
	require.NoError(t, err)
	ticks := statTicks(t, pid)
	stdin.Close()
	require.NoError(t, cmd.Wait())

	assert.Greater(t, end, start, "the count took CPU time")
	assert.NotZero(t, end%(10*time.Millisecond), "nanoseconds, not ticks: %v", end)
	assert.InDelta(t, float64(ticks), float64(end), float64(20*time.Millisecond),
		"the clock says %v, /proc/%d/stat %v", end, pid, ticks)

	_, err = cpuTime(pid)
	assert.Error(t, err, "the process is gone")
}

// statTicks is the process's user and system time in /proc/PID/stat.
func statTicks(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err := strconv.ParseInt(f[11], 10, 64)
	require.NoError(t, err)
	stime, err := strconv.ParseInt(f[12], 10, 64)
	require.NoError(t, err)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
