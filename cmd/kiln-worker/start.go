package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/kilnci/kiln/worker"
)

// start runs the worker of a base folder in the foreground until ctx ends
// or the master shuts it down.
func (m *Main) start(ctx context.Context, args []string) error {
	set := flags("start")
	var quiet, verbose, nodaemon bool
	set.BoolVar(&nodaemon, "nodaemon", false, "") // the only way kiln-worker runs
	set.BoolVar(&quiet, "q", false, "")
	set.BoolVar(&quiet, "quiet", false, "")
	set.BoolVar(&verbose, "v", false, "")
	set.BoolVar(&verbose, "verbose", false, "")
	if err := m.parse(set, args); err != nil {
		return err
	}
	basedir := "."
	switch set.NArg() {
	case 0:
	case 1:
		basedir = set.Arg(0)
	default:
		return usagef("start: want at most one BASEDIR, got %d arguments", set.NArg())
	}
	w, err := worker.ReadConfig(basedir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("start: %w (make it with kiln-worker create-worker)", err)
	}
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	release, err := writePID(basedir)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer release()
	// A guard that kills the commands if the worker is killed.
	w.GuardArgs = m.Guard
	w.Logger = m.Logger
	if w.Logger == nil {
		level := slog.LevelInfo
		switch {
		case verbose:
			level = slog.LevelDebug
		case quiet:
			level = slog.LevelWarn
		}
		w.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if err := w.Run(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return nil
}
