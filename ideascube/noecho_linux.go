package main

import "golang.org/x/sys/unix"

// withoutEcho runs f with the echo of the terminal fd turned off (lines
// still read whole, signals still sent), so that what is typed before a
// prompt has been read, as soon as the prompt shows or pasted at once, is
// not shown either: term.ReadPassword turns echo off only once it reads.
func withoutEcho(fd int, f func() error) error {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return f()
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return f()
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	return f()
}
