//go:build unix

package worker

import (
	"errors"
	"os/exec"
	"syscall"
)

// killGroup kills a process group; one already gone is no error.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// startGuard starts the guard process args, in a process group of its
// own (so that the terminal's Ctrl-C, sent to the worker's group, does not
// reach it), and returns the client that feeds it and a function that
// ends it.
func startGuard(args []string) (*guardClient, func() error, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() error {
		in.Close()
		return cmd.Wait()
	}
	return &guardClient{w: in}, stop, nil
}
