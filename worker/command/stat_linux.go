package command

import (
	"os"
	"syscall"
	"time"
)

// statTuple returns Python's os.stat tuple: mode, inode, device, links,
// uid, gid, size, and the access, modification and change times in whole
// seconds.
func statTuple(fi os.FileInfo) []int64 {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return genericStatTuple(fi)
	}
	return []int64{
		int64(st.Mode), int64(st.Ino), int64(st.Dev), int64(st.Nlink),
		int64(st.Uid), int64(st.Gid), st.Size,
		int64(st.Atim.Sec), int64(st.Mtim.Sec), int64(st.Ctim.Sec), // int32 on 32-bit systems
	}
}

// changeTime returns a file's status change time.
func changeTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec))
	}
	return time.Time{}
}

// accessTime returns a file's access time.
func accessTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(int64(st.Atim.Sec), int64(st.Atim.Nsec))
	}
	return fi.ModTime()
}

// owner returns a file's owner and group, if known.
func owner(fi os.FileInfo) (uid, gid int, ok bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid), true
	}
	return 0, 0, false
}

// linkInfo returns a file's identity and number of hard links.
func linkInfo(fi os.FileInfo) (fileID, uint64, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{dev: uint64(st.Dev), ino: st.Ino}, uint64(st.Nlink), true
	}
	return fileID{}, 0, false
}
