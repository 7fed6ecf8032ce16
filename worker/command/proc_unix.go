//go:build unix

package command

import (
	"os"
	"syscall"
)

// sysProcAttr makes a shell command the leader of its own process group,
// so that everything it starts can be signalled at once.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup signals the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"ABRT": syscall.SIGABRT, "KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2, "PIPE": syscall.SIGPIPE, "ALRM": syscall.SIGALRM,
	"TERM": syscall.SIGTERM, "CONT": syscall.SIGCONT, "STOP": syscall.SIGSTOP,
	"TSTP": syscall.SIGTSTP, "WINCH": syscall.SIGWINCH,
}

// signalByName returns the signal named "TERM" or "SIGTERM".
func signalByName(name string) (syscall.Signal, bool) {
	if len(name) > 3 && name[:3] == "SIG" {
		name = name[3:]
	}
	sig, ok := signals[name]
	return sig, ok
}

// unlink removes a file but not a folder, as Python's os.remove.
func unlink(path string) error {
	if err := syscall.Unlink(path); err != nil {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}
