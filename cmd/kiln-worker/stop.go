package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PIDFile is the file in a worker's base folder that holds the process ID
// of the kiln-worker running there, for stop.
const PIDFile = "kiln-worker.pid"

// stopWait is how long stop waits for the worker to exit: its running
// commands are interrupted and report how they ended first.
const stopWait = time.Minute

// stop asks the worker running in a base folder to stop, as systemctl stop
// would (SIGTERM), and waits for it to exit.
func (m *Main) stop(ctx context.Context, args []string) error {
	set := flags("stop")
	if err := m.parse(set, args); err != nil {
		return err
	}
	basedir := "."
	switch set.NArg() {
	case 0:
	case 1:
		basedir = set.Arg(0)
	default:
		return usagef("stop: want at most one BASEDIR, got %d arguments", set.NArg())
	}
	pid, err := readPID(basedir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stop: no worker runs in %s (it has no %s); one run by systemd stops with systemctl stop kiln-worker@NAME", basedir, PIDFile)
	}
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(syscall.SIGTERM)
	}
	if err != nil {
		return fmt.Errorf("stop: the worker of %s (process %d) is not running: %v", basedir, pid, err)
	}
	fmt.Fprintf(m.Stdout, "stopping the worker of %s (process %d)\n", basedir, pid)
	deadline := time.Now().Add(stopWait)
	for alive(p) {
		if time.Now().After(deadline) {
			return fmt.Errorf("stop: the worker of %s (process %d) is still running after %s", basedir, pid, stopWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprintln(m.Stdout, "worker stopped")
	return nil
}

// alive reports whether the process still runs.
func alive(p *os.Process) bool { return p.Signal(syscall.Signal(0)) == nil }

// readPID reads the process ID a worker's base folder records.
func readPID(basedir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(basedir, PIDFile))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds no process ID", filepath.Join(basedir, PIDFile))
	}
	return pid, nil
}

// writePID records this process in a worker's base folder, unless another
// worker runs there; the returned function removes the record.
func writePID(basedir string) (func(), error) {
	if pid, err := readPID(basedir); err == nil && pid != os.Getpid() {
		if p, err := os.FindProcess(pid); err == nil && alive(p) {
			return nil, fmt.Errorf("a worker already runs in %s (process %d, in %s)", basedir, pid, PIDFile)
		}
	}
	path := filepath.Join(basedir, PIDFile)
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, err
	}
	return func() {
		if pid, err := readPID(basedir); err == nil && pid == os.Getpid() {
			os.Remove(path)
		}
	}, nil
}
