package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// freePort returns a TCP port free on this machine, for a program that
// cannot listen on port 0 and tell which port it got.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitProcess returns a channel with the result of the started command,
// and kills it at the end of the test if it still runs.
func waitProcess(t *testing.T, cmd *exec.Cmd) <-chan error {
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	return done
}

// A logWatcher logs each line written to it to the test, and closes
// found at the first line that contains want.
type logWatcher struct {
	t     *testing.T
	want  string
	found chan<- struct{}
	buf   []byte
}

func (w *logWatcher) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.t.Log(line)
		if w.found != nil && strings.Contains(line, w.want) {
			close(w.found)
			w.found = nil
		}
	}
}

// vmRSS returns the resident set size of a process, in KiB.
func vmRSS(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
