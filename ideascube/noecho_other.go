//go:build !linux

package main

// withoutEcho runs f: term.ReadPassword turns echo off as it reads.
func withoutEcho(fd int, f func() error) error { return f() }
