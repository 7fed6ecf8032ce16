//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkAccess says, before SQLite opens path, whether this process may use
// it: the database file and its -wal and -shm files, where present, must be
// readable and writable, and their folder writable (SQLite creates the
// -wal and -shm files there, and removes them on the last close). SQLite
// itself would open a file it may only read in read-only mode and fail
// later with "attempt to write a readonly database (8)", or "unable to open
// database file (14)": its codes name neither the file nor the cause.
//
// The check asks the kernel (faccessat with the effective ids) rather than
// opening the files, since closing a descriptor of the database would drop
// the POSIX locks another connection of this process holds on it.
func checkAccess(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		err := unix.Faccessat(unix.AT_FDCWD, p, unix.R_OK|unix.W_OK, unix.AT_EACCESS)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return accessError(p, "open database "+p, "read and write", err)
		}
	}
	dir := filepath.Dir(path)
	if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("open database %s: folder %s does not exist", path, dir)
		}
		return accessError(dir, "open database "+path+": folder "+dir, "write", err)
	}
	return nil
}

// accessError is a one-line reason why p may not be used (what says what
// was being done), with its owner and mode and this process's user, so
// that what to change is clear.
func accessError(p, what, need string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) || (errno != syscall.EACCES && errno != syscall.EPERM && errno != syscall.EROFS) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if errno == syscall.EROFS {
		return fmt.Errorf("%s: %w (read-only file system)", what, fs.ErrPermission)
	}
	detail := ""
	if fi, serr := os.Stat(p); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			detail = fmt.Sprintf(" (owned by uid %d, mode %04o; this process runs as uid %d, which needs to %s it)",
				st.Uid, fi.Mode().Perm(), os.Geteuid(), need)
		}
	}
	return fmt.Errorf("%s: %w%s", what, fs.ErrPermission, detail)
}
