//go:build !linux

package command

import (
	"errors"
	"os"
	"syscall"
)

func openPTY() (controller, terminal *os.File, err error) {
	return nil, nil, errors.New("PTYs are not supported on this system")
}

func ptyProcAttr() *syscall.SysProcAttr { return sysProcAttr() }
