//go:build !linux

package command

import (
	"os"
	"time"
)

// statTuple returns what Python's os.stat tuple can be made of portably.
func statTuple(fi os.FileInfo) []int64 { return genericStatTuple(fi) }

// changeTime is not known portably.
func changeTime(fi os.FileInfo) time.Time { return time.Time{} }

// accessTime is not known portably: the modification time stands in.
func accessTime(fi os.FileInfo) time.Time { return fi.ModTime() }

// owner is not known portably.
func owner(fi os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

// linkInfo is not known portably: hard links are stored as files.
func linkInfo(fi os.FileInfo) (fileID, uint64, bool) { return fileID{}, 0, false }
