// Package pty opens pseudo-terminals: the worker gives one to a command
// that asks for it (usePTY), and tests give one to a program that
// behaves differently on a terminal.
package pty

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Open opens a new pseudo-terminal pair: the controller, which the caller
// reads and writes, and the terminal a program gets as its standard
// input, output and error.
func Open() (controller, terminal *os.File, err error) {
	controller, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a PTY: %w", err)
	}
	fd := int(controller.Fd())
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0) // unlock
	}
	if err != nil {
		controller.Close()
		return nil, nil, fmt.Errorf("opening a PTY: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	terminal, err = os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		controller.Close()
		return nil, nil, fmt.Errorf("opening a PTY: %w", err)
	}
	return controller, terminal, nil
}

// ProcAttr makes a program on a PTY the leader of a new session whose
// controlling terminal is its standard input: a new process group too,
// so that a signal to the group reaches everything it starts.
func ProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
}
