package steps

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// DefaultWorkdir is the folder, within the builder's folder on the worker,
// where steps work unless told otherwise.
const DefaultWorkdir = "build"

// Default command limits, as Buildbot's.
const (
	// DefaultTimeout is how long a command may run without output before
	// it is killed.
	DefaultTimeout = 1200 * time.Second
	// DefaultBlockSize is the size of the blocks files are sent in.
	DefaultBlockSize = 64 << 10
)

// named gives options the step type's default name if they have none.
func named(o ci.StepOptions, name string) ci.StepOptions {
	if o.Name == "" {
		o.Name = name
	}
	return o
}

// renderWorkdir renders a Workdir field, defaulting to DefaultWorkdir.
func renderWorkdir(ctx context.Context, s *ci.StepRun, v any) (string, error) {
	if v == nil {
		return DefaultWorkdir, nil
	}
	w, err := s.RenderString(ctx, v)
	if err != nil {
		return "", fmt.Errorf("workdir: %w", err)
	}
	if w == "" {
		return DefaultWorkdir, nil
	}
	return w, nil
}

// renderCommand renders a Command field into either an argument vector or
// a shell string.
func renderCommand(ctx context.Context, s *ci.StepRun, v any) (any, error) {
	switch c := v.(type) {
	case string:
		return c, nil
	case *ci.Interpolation:
		return c.RenderShell(ctx, s)
	}
	r, err := s.Render(ctx, v)
	if err != nil {
		return nil, err
	}
	if str, ok := r.(string); ok {
		return str, nil
	}
	argv, err := ci.RenderList(ctx, s, r)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("command is empty")
	}
	return argv, nil
}

// describeCommand gives a short state string for a command.
func describeCommand(cmd any) string {
	var s string
	switch c := cmd.(type) {
	case string:
		s = c
	case []any:
		parts := make([]string, len(c))
		for i, a := range c {
			parts[i], _ = a.(string)
		}
		s = strings.Join(parts, " ")
	}
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return "'" + s + "'"
}

// checkCommand validates a Command field at configuration time.
func checkCommand(v any) error {
	if v == nil {
		return fmt.Errorf("Command is not set")
	}
	if s, ok := v.(string); ok && strings.TrimSpace(s) == "" {
		return fmt.Errorf("Command is empty")
	}
	if l, ok := v.([]string); ok && len(l) == 0 {
		return fmt.Errorf("Command is empty")
	}
	if l, ok := v.([]any); ok && len(l) == 0 {
		return fmt.Errorf("Command is empty")
	}
	if err := ci.CheckValue(v); err != nil {
		return fmt.Errorf("Command: %w", err)
	}
	return nil
}

// checkField validates a field that takes a string or a renderable.
func checkField(name string, v any) error {
	if err := ci.CheckValue(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// secs converts a duration to the seconds the protocol carries; nil for
// "none".
func secs(d time.Duration) any {
	if d <= 0 {
		return nil
	}
	if d%time.Second == 0 {
		return int(d / time.Second)
	}
	return d.Seconds()
}

// masterPath renders a master-side path and resolves it against the
// master's base folder, refusing ".." elements.
func masterPath(ctx context.Context, s *ci.StepRun, field string, v any) (string, error) {
	p, err := s.RenderString(ctx, v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	if p == "" {
		return "", fmt.Errorf("%s is empty", field)
	}
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == filepath.Separator }) {
		if part == ".." {
			return "", fmt.Errorf("%s %q: a master path may not contain \"..\"", field, p)
		}
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.MasterDir(), p)
	}
	return filepath.Clean(p), nil
}

// runRemote runs a remote command with its output in the step's "stdio"
// log (when stdio is true) and returns it.
func runRemote(ctx context.Context, s *ci.StepRun, cmd *ci.RemoteCommand, stdio bool) error {
	if stdio && cmd.Stdio == nil {
		w, err := s.AddLog(ctx, "stdio", ci.LogStream)
		if err != nil {
			return err
		}
		cmd.Stdio = w
	}
	return s.RunCommand(ctx, cmd)
}

// commandResult maps a finished command to a step result: SUCCESS for rc
// 0, FAILURE otherwise; a remote failure is reported in the log and is a
// FAILURE; a lost worker or interruption is returned as an error.
func commandResult(cmd *ci.RemoteCommand, err error) (ci.Result, error) {
	if err != nil {
		if ce, ok := err.(*ci.CommandError); ok {
			if cmd.Stdio != nil {
				cmd.Stdio.AddHeader(ce.Error() + "\n")
			}
			return ci.Failure, nil
		}
		return ci.Exception, err
	}
	if cmd.RC != 0 {
		return ci.Failure, nil
	}
	return ci.Success, nil
}
