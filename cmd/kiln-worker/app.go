package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/kilnci/kiln/worker/protocol"
)

// Main is the kiln-worker program; tests run it in-process.
type Main struct {
	// Stdout and Stderr receive the program's messages and, for start,
	// its log.
	Stdout, Stderr io.Writer
	// Logger, if set, replaces start's log on Stderr.
	Logger *slog.Logger
	// Guard is the command line of the worker's guard (see
	// worker.Guard): the program itself, with "guard". None if empty.
	Guard []string
}

// A usageError is a command line that makes no sense: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + " (kiln-worker help for usage)" }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

const usage = `Usage:
  kiln-worker create-worker [options] BASEDIR MASTER NAME PASSWORD
  kiln-worker start [--nodaemon] [-q] [-v] [BASEDIR]
  kiln-worker stop [BASEDIR]
  kiln-worker --version

create-worker options:
  -r, --relocatable        do not record BASEDIR (nor make a relative --ca-file absolute)
  --use-tls                connect with TLS (wss://) to a host:port MASTER
  --ca-file FILE           PEM certificates the master's certificate must chain to
  --allow-plaintext        connect with plain ws:// to a master on another machine
                           (its password then crosses the network in clear)
  --maxdelay SECONDS       longest wait between connection attempts (default 300)
  --unconfined             let the master's commands use paths outside BASEDIR
  --delete-leftover-dirs   let the master delete folders no builder uses
  --protocol NAME          msgpack_experimental_v7 (the only protocol spoken)
  -q, --quiet              print nothing but errors

MASTER is host:port, host (port 9989), or a ws:// or wss:// URL.
start runs the worker in the foreground until SIGTERM or SIGINT (Ctrl-C, or
kiln-worker stop from another terminal); run it with systemd, which stops it
with systemctl stop kiln-worker@NAME.
`

// Run runs the command line args (without the program name).
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("no command")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "create-worker":
		return ignoreHelp(m.createWorker(rest))
	case "start":
		return ignoreHelp(m.start(ctx, rest))
	case "stop":
		return ignoreHelp(m.stop(ctx, rest))
	case "guard":
		// The worker's guard, which start runs: see worker.Guard.
		return guard(os.Stdin)
	case "--version", "-version", "version":
		fmt.Fprintf(m.Stdout, "kiln-worker %s (%s %s/%s)\n", protocol.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	default:
		return usagef("unknown command %q", cmd)
	}
}

// flags returns a flag set for a subcommand that reports errors, not
// prints them.
func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// errHelp is returned by parse after printing the usage for -h.
var errHelp = errors.New("help shown")

// parse parses a subcommand's flags, turning failures into usage errors;
// -h prints the usage and returns errHelp.
func (m *Main) parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(m.Stdout, usage)
		return errHelp
	}
	if err != nil {
		return usagef("%s: %v", fs.Name(), err)
	}
	return nil
}

func ignoreHelp(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}
