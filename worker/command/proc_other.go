//go:build !unix

package command

import (
	"errors"
	"os"
	"syscall"
)

// Without process groups, signals reach the command alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) error {
	return errors.New("process groups are not supported")
}

var signals = map[string]syscall.Signal{
	"INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM,
}

func signalByName(name string) (syscall.Signal, bool) {
	if len(name) > 3 && name[:3] == "SIG" {
		name = name[3:]
	}
	sig, ok := signals[name]
	return sig, ok
}

func unlink(path string) error { return os.Remove(path) }
