// Package interop holds the tests that run a Kiln master with real worker
// processes over loopback: the kiln-worker binary and Debian's stock
// buildbot-worker, the same build on each, with the same expectations. It
// has no code of its own.
package interop
