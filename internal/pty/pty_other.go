//go:build !linux

// Package pty opens pseudo-terminals: the worker gives one to a command
// that asks for it (usePTY), and tests give one to a program that
// behaves differently on a terminal.
package pty

import (
	"errors"
	"os"
)

// Open fails: PTYs are opened on Linux only.
func Open() (controller, terminal *os.File, err error) {
	return nil, nil, errors.New("PTYs are not supported on this system")
}
