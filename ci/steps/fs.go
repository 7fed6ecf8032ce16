package steps

import (
	"context"
	"fmt"

	"github.com/kilnci/kiln/ci"
)

// RemoveDirectory removes a folder on the worker, with everything in it, as
// Buildbot's step of that name. A folder that does not exist is not an
// error.
type RemoveDirectory struct {
	ci.StepOptions
	// Dir is the folder, relative to the builder's folder on the worker; a
	// string or a ci.Renderable. Required.
	Dir any
}

// Options implements ci.Step, naming the step "RemoveDirectory" by default.
func (d *RemoveDirectory) Options() ci.StepOptions { return named(d.StepOptions, "RemoveDirectory") }

// Validate checks the configuration.
func (d *RemoveDirectory) Validate() error { return required("Dir", d.Dir) }

// Run implements ci.Step.
func (d *RemoveDirectory) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	return dirCommand(ctx, s, "rmdir", d.Dir)
}

// MakeDirectory creates a folder on the worker (and its parents), as
// Buildbot's step of that name.
type MakeDirectory struct {
	ci.StepOptions
	// Dir is the folder, relative to the builder's folder on the worker; a
	// string or a ci.Renderable. Required.
	Dir any
}

// Options implements ci.Step, naming the step "MakeDirectory" by default.
func (d *MakeDirectory) Options() ci.StepOptions { return named(d.StepOptions, "MakeDirectory") }

// Validate checks the configuration.
func (d *MakeDirectory) Validate() error { return required("Dir", d.Dir) }

// Run implements ci.Step.
func (d *MakeDirectory) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	return dirCommand(ctx, s, "mkdir", d.Dir)
}

func dirCommand(ctx context.Context, s *ci.StepRun, name string, v any) (ci.Result, error) {
	dir, err := s.RenderString(ctx, v)
	if err != nil {
		return ci.Exception, fmt.Errorf("dir: %w", err)
	}
	if dir == "" {
		return ci.Exception, fmt.Errorf("dir is empty")
	}
	s.SetStateString(fmt.Sprintf("%s %s", name, dir))
	cmd := &ci.RemoteCommand{Name: name, Args: map[string]any{"dir": dir, "logEnviron": false}}
	return commandResult(cmd, runRemote(ctx, s, cmd, true))
}
