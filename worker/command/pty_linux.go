package command

import (
	"os"
	"syscall"

	"github.com/kilnci/kiln/internal/pty"
)

// openPTY opens a new pseudo-terminal pair: the controller, which the
// worker reads and writes, and the terminal the command gets as its
// standard input, output and error.
func openPTY() (controller, terminal *os.File, err error) { return pty.Open() }

// ptyProcAttr makes a command on a PTY the leader of a new session
// whose controlling terminal is its standard input: a new process group
// too, so that signalGroup reaches everything it starts.
func ptyProcAttr() *syscall.SysProcAttr { return pty.ProcAttr() }
