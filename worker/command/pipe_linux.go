package command

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe makes the pipe f reads from hold at least size bytes, and
// reports whether it does.
func growPipe(f *os.File, size int) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	rc.Control(func(fd uintptr) {
		n, err := unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size)
		ok = err == nil && n >= size
	})
	return ok
}
