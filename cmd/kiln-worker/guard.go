package main

import (
	"io"
	"os/signal"
	"syscall"

	"github.com/kilnci/kiln/worker"
)

// guard runs the worker's guard: it ignores the signals that stop a
// worker (its worker tells it when to go, by closing its input) and kills
// the commands still running when its input ends.
func guard(in io.Reader) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return worker.Guard(in)
}
