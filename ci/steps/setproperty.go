package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// SetPropertyFromCommand runs a command on the worker and sets build
// properties from its output, as Buildbot's step of that name: either
// Property is set to the standard output (trimmed of surrounding white
// space unless KeepWhitespace), or Extract computes properties from the
// exit code and both outputs. The properties set are listed in the
// "property changes" log. A non-zero exit code is a FAILURE and sets
// nothing through Property (Extract is still called).
type SetPropertyFromCommand struct {
	ci.StepOptions
	// Command, Workdir, Env and Timeout are as for ShellCommand.
	Command any
	Workdir any
	Env     map[string]any
	Timeout time.Duration

	// Property names the property set to the command's output.
	Property string
	// Extract returns the properties to set from the exit code, standard
	// output and standard error.
	Extract func(rc int, stdout, stderr string) map[string]any
	// KeepWhitespace keeps the output's surrounding white space.
	KeepWhitespace bool
}

// Options implements ci.Step, naming the step "setproperty" by default.
func (c *SetPropertyFromCommand) Options() ci.StepOptions { return named(c.StepOptions, "setproperty") }

// Validate checks the configuration.
func (c *SetPropertyFromCommand) Validate() error {
	errs := []error{(&ShellCommand{Command: c.Command, Workdir: c.Workdir, Env: c.Env}).Validate()}
	if (c.Property == "") == (c.Extract == nil) {
		errs = append(errs, errors.New("exactly one of Property and Extract must be set"))
	}
	return errors.Join(errs...)
}

// Run implements ci.Step.
func (c *SetPropertyFromCommand) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	sh := &ShellCommand{Command: c.Command, Workdir: c.Workdir, Env: c.Env, Timeout: c.Timeout}
	cmd, err := sh.remote(ctx, s)
	if err != nil {
		return ci.Exception, err
	}
	var stdout, stderr strings.Builder
	cmd.OnUpdate = func(key string, value any) {
		text, _ := value.(string)
		switch key {
		case ci.UpdateStdout:
			stdout.WriteString(text)
		case ci.UpdateStderr:
			stderr.WriteString(text)
		}
	}
	if err := runRemote(ctx, s, cmd, true); err != nil {
		return commandResult(cmd, err)
	}
	props := map[string]any{}
	if c.Extract != nil {
		props = c.Extract(cmd.RC, stdout.String(), stderr.String())
	} else if cmd.RC == 0 {
		out := stdout.String()
		if !c.KeepWhitespace {
			out = strings.TrimSpace(out)
		}
		props[c.Property] = out
	}
	source := s.Name() + " Step"
	var changes strings.Builder
	for _, k := range slices.Sorted(maps.Keys(props)) {
		s.SetProperty(k, props[k], source)
		fmt.Fprintf(&changes, "%s: %s\n", k, ci.FormatValue(props[k]))
	}
	if changes.Len() > 0 {
		w, err := s.AddLog(ctx, "property changes", ci.LogText)
		if err != nil {
			return ci.Exception, err
		}
		w.AddStdout(changes.String())
	}
	if len(props) == 0 {
		s.SetStateString("no property set")
	} else {
		s.SetStateString(fmt.Sprintf("property %s set", strings.Join(slices.Sorted(maps.Keys(props)), ", ")))
	}
	if cmd.RC != 0 {
		return ci.Failure, nil
	}
	return ci.Success, nil
}
