package command

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal pair: the controller, which the
// worker reads and writes, and the terminal the command gets as its
// standard input, output and error.
func openPTY() (controller, terminal *os.File, err error) {
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

// ptyProcAttr makes a command on a PTY the leader of a new session
// whose controlling terminal is its standard input: a new process group
// too, so that signalGroup reaches everything it starts.
func ptyProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
}
