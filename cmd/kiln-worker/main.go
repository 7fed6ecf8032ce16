// Command kiln-worker is the Kiln worker: it connects to a Kiln master, or to
// a Buildbot 3.x master speaking msgpack_experimental_v7, and runs the
// commands of its builds. It is a thin wrapper around package worker.
//
// Usage:
//
//	kiln-worker create-worker [options] BASEDIR MASTER NAME PASSWORD
//	kiln-worker start [--nodaemon] [-q] [-v] [BASEDIR]
//	kiln-worker stop [BASEDIR]
//	kiln-worker --version
//
// create-worker makes the worker's base folder, writes its configuration file
// (BASEDIR/kiln-worker.conf, mode 0600: it holds the password; see
// worker.ConfigFile for its format) and the info/admin and info/host files
// the master shows, to be edited. MASTER is "host:port", "host" (port 9989),
// or a ws:// or wss:// URL. Options:
//
//	-r, --relocatable        do not record BASEDIR: the worker runs from
//	                         wherever its folder is (relative --ca-file too)
//	--use-tls                connect with TLS (wss://) to a host:port MASTER
//	--ca-file FILE           PEM certificates the master's must chain to
//	--allow-plaintext        connect with plain ws:// to a master on another
//	                         machine (refused otherwise: the password would
//	                         cross the network in clear)
//	--maxdelay SECONDS       longest wait between connection attempts (300)
//	--unconfined             let the master's commands use paths outside BASEDIR
//	--delete-leftover-dirs   let the master delete folders no builder uses
//	--protocol NAME          msgpack_experimental_v7, the only one spoken
//	-q, --quiet              print nothing but errors
//	-f, --force              accepted, as buildbot-worker does; no effect
//
// start runs the worker in the foreground, logging to standard error, until
// it receives SIGTERM or SIGINT, or the master shuts it down: running
// commands are interrupted and report how they ended, then it exits with
// status 0. It never daemonizes; --nodaemon is accepted for compatibility
// with buildbot-worker's command line. -q logs only warnings and errors, -v
// adds debug messages. BASEDIR defaults to the current folder. While it
// runs, BASEDIR/kiln-worker.pid holds its process ID: a second start on
// the folder refuses to run, and stop sends the worker SIGTERM and waits
// for it to exit. Beside it runs its guard, a second kiln-worker process
// ("kiln-worker guard") that kills the commands the worker started if the
// worker is killed before it could stop them (SIGKILL, the OOM killer).
//
// # Running under systemd
//
// Let systemd keep the worker running, one unit per worker:
//
//	# /etc/systemd/system/kiln-worker@.service
//	[Unit]
//	Description=Kiln worker %i
//	Wants=network-online.target
//	After=network-online.target
//
//	[Service]
//	User=buildbot
//	ExecStart=/usr/local/bin/kiln-worker start /srv/buildbot/worker-%i
//	Restart=always
//	# SIGTERM to kiln-worker alone: it stops the build processes itself and
//	# tells the master how they ended.
//	KillMode=mixed
//	TimeoutStopSec=60
//
//	[Install]
//	WantedBy=multi-user.target
//
// Exit status: 0 on a clean stop, 1 on an error, 2 on bad usage.
//
// # Memory
//
// kiln-worker runs its garbage collector with GOGC=400 unless the GOGC
// environment variable says otherwise. Its live heap is small, and a
// command that writes a lot of output makes short-lived buffers at a fast
// rate: at Go's default of 100 the collector, and the runtime returning
// freed memory to the system and faulting it back, took about a third of
// the worker's CPU while it streamed a 100 MB log. At 400 the worker uses
// about 40 % less CPU for such a log and peaks at about 25 MiB of resident
// memory instead of 13 MiB; an idle worker stays at about 7.5 MiB.
//
// # Building
//
// kiln-worker needs no cgo; built with it off, it is one static file to
// copy to the worker machine, for any GOOS and GOARCH:
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 go build ./cmd/kiln-worker
//
// buildbot-worker's restart command, its daemon mode, log files
// and its create-worker options --keepalive, --umask, --numcpus,
// --log-size, --log-count, --allow-shutdown, --maxretries, --no-logrotate
// and --proxy-connection-string have no equivalent: systemd starts, stops
// and logs the worker.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// gcPercent is the GOGC kiln-worker runs with, unless its environment
// sets one (see the package doc).
const gcPercent = 400

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the program at once
	}()
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr}
	if exe, err := os.Executable(); err == nil {
		m.Guard = []string{exe, "guard"}
	}
	if err := m.Run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-worker: "+oneLine(err))
		if errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// oneLine returns the text of err on one line: joined errors are
// separated by semicolons.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
