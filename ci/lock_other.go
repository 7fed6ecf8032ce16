//go:build !unix

package ci

import "errors"

// LockFile is the file in a master's base folder that the master holds an
// advisory lock on, on systems that have flock.
const LockFile = "master.lock"

// ErrFolderInUse is returned by Master.Run when another master holds the
// base folder's lock.
var ErrFolderInUse = errors.New("the folder is in use by another master")

// lockFolder does nothing where flock is missing.
func lockFolder(dir string) (release func(), err error) { return func() {}, nil }
