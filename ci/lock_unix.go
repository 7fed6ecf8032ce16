//go:build unix

package ci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file in a master's base folder that the master holds an
// advisory lock on while it runs, with its process ID inside, so that a
// second master started on the same folder stops at once instead of
// taking over the first one's builds.
const LockFile = "master.lock"

// ErrFolderInUse is returned by Master.Run when another master holds the
// base folder's lock.
var ErrFolderInUse = errors.New("the folder is in use by another master")

// lockFolder takes the lock of dir, or says which process holds it.
func lockFolder(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create master folder: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock master folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			holder := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
				holder = fmt.Sprintf("process %d", pid)
			}
			abs, _ := filepath.Abs(dir)
			return nil, fmt.Errorf("%w: %s is locked by %s (%s); stop that master first, or give this one another folder",
				ErrFolderInUse, abs, holder, path)
		}
		return nil, fmt.Errorf("lock master folder %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		// The file stays: removing it would let a master starting now lock
		// a file that another is about to lock by its old name.
		f.Truncate(0)
		f.Close()
	}, nil
}
