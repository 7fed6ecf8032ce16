package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/kilnci/kiln/ci"
)

// ShellCommand runs a command on the worker, as Buildbot's ShellCommand:
// its output goes to the "stdio" log, and its exit code decides the result
// (0 is SUCCESS, anything else FAILURE, unless DecodeRC says otherwise). A
// program that cannot be started is a FAILURE with the reason in the log.
type ShellCommand struct {
	ci.StepOptions
	// Command is an argument vector ([]string, or []any of strings and
	// renderables, flattened), or a shell string (see the package doc), or
	// a ci.Renderable giving one of those. Required.
	Command any
	// Workdir is the folder the command runs in, relative to the builder's
	// folder on the worker (DefaultWorkdir if nil); a string or a
	// ci.Renderable.
	Workdir any
	// Env adds to the command's environment: values are strings or
	// renderables, lists (joined with the worker's path-list separator, as
	// for PATH), or nil to remove the variable. "${NAME}" in a value is
	// replaced by the worker's own NAME.
	Env map[string]any
	// Timeout kills the command after that long without output
	// (DefaultTimeout if zero; negative for no limit).
	Timeout time.Duration
	// MaxTime kills the command after that long in all (zero for no limit).
	MaxTime time.Duration
	// SigtermTime, when set, sends SIGTERM first on a kill, and SIGKILL
	// that long after if the command is still running.
	SigtermTime time.Duration
	// InterruptSignal is the signal sent when the build is stopped ("KILL"
	// if empty, or "TERM", "INT"...).
	InterruptSignal string
	// LogFiles are files the command writes, followed while it runs and
	// stored as logs of the step: log name to path relative to Workdir.
	LogFiles map[string]string
	// InitialStdin is written to the command's standard input.
	InitialStdin string
	// DecodeRC maps exit codes to results; codes not listed are FAILURE.
	// Nil means {0: SUCCESS}.
	DecodeRC map[int]ci.Result
	// LogEnviron writes the command's environment in the log's header
	// (Buildbot's logEnviron, on by default there). It is off by
	// default: whoever may read a build's logs would read the worker's
	// environment. Values of variables named like secrets (*TOKEN*,
	// *SECRET*, *PASSWORD*, *KEY*) are masked even then.
	LogEnviron bool
}

// Options implements ci.Step, naming the step "shell" by default.
func (c *ShellCommand) Options() ci.StepOptions { return named(c.StepOptions, "shell") }

// Validate checks the configuration.
func (c *ShellCommand) Validate() error {
	errs := []error{checkCommand(c.Command), checkField("Workdir", c.Workdir)}
	for k, v := range c.Env {
		errs = append(errs, checkField(fmt.Sprintf("Env[%q]", k), v))
	}
	for rc, r := range c.DecodeRC {
		if !r.Valid() {
			errs = append(errs, fmt.Errorf("DecodeRC[%d]: %d is not a result", rc, r))
		}
	}
	return errors.Join(errs...)
}

// Run implements ci.Step.
func (c *ShellCommand) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	cmd, err := c.remote(ctx, s)
	if err != nil {
		return ci.Exception, err
	}
	s.SetStateString(firstNonEmpty(c.Description, describeCommand(cmd.Args["command"])))
	if err := c.openLogFiles(ctx, s, cmd); err != nil {
		return ci.Exception, err
	}
	err = runRemote(ctx, s, cmd, true)
	if err != nil {
		return commandResult(cmd, err)
	}
	return c.decode(cmd.RC), nil
}

// StartLogs names the logs c adds as it runs: one for each of its log
// files, and stdio (ci.StartLogger): the master stores them with the
// step's start.
func (c *ShellCommand) StartLogs() []ci.Log {
	logs := make([]ci.Log, 0, len(c.LogFiles)+1)
	for _, name := range slices.Sorted(maps.Keys(c.LogFiles)) {
		logs = append(logs, ci.Log{Name: name, Type: ci.LogStream})
	}
	return append(logs, ci.Log{Name: "stdio", Type: ci.LogStream})
}

// RemoteCommand returns the "shell" remote command c sends to the worker
// for the build of s, without its logs: step types built on ShellCommand
// (the Debian steps) use it to read the command's output as it arrives
// (OnUpdate) and decide the result themselves. Give it a Stdio log, then
// run it with StepRun.RunCommand.
func (c *ShellCommand) RemoteCommand(ctx context.Context, s *ci.StepRun) (*ci.RemoteCommand, error) {
	return c.remote(ctx, s)
}

// decode maps an exit code to a result.
func (c *ShellCommand) decode(rc int) ci.Result {
	if c.DecodeRC == nil {
		if rc == 0 {
			return ci.Success
		}
		return ci.Failure
	}
	if r, ok := c.DecodeRC[rc]; ok {
		return r
	}
	return ci.Failure
}

// remote builds the "shell" remote command for the build.
func (c *ShellCommand) remote(ctx context.Context, s *ci.StepRun) (*ci.RemoteCommand, error) {
	command, err := renderCommand(ctx, s, c.Command)
	if err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	workdir, err := renderWorkdir(ctx, s, c.Workdir)
	if err != nil {
		return nil, err
	}
	env, err := renderEnv(ctx, s, c.Env)
	if err != nil {
		return nil, err
	}
	timeout := secs(c.Timeout)
	if c.Timeout == 0 {
		timeout = secs(DefaultTimeout)
	}
	logfiles := map[string]any{}
	for name, path := range c.LogFiles {
		logfiles[name] = path
	}
	signal := c.InterruptSignal
	if signal == "" {
		signal = "KILL"
	}
	if argv, ok := command.([]string); ok {
		command = toAnyList(argv)
	}
	var stdin any
	if c.InitialStdin != "" {
		stdin = c.InitialStdin
	}
	return &ci.RemoteCommand{
		Name: "shell",
		Args: map[string]any{
			"workdir":         workdir,
			"env":             env,
			"want_stdout":     true,
			"want_stderr":     true,
			"logfiles":        logfiles,
			"timeout":         timeout,
			"maxTime":         secs(c.MaxTime),
			"sigtermTime":     secs(c.SigtermTime),
			"usePTY":          false,
			"logEnviron":      c.LogEnviron,
			"initial_stdin":   stdin,
			"interruptSignal": signal,
			"command":         command,
		},
	}, nil
}

// renderEnv renders an Env field into the protocol's env argument.
func renderEnv(ctx context.Context, s *ci.StepRun, e map[string]any) (map[string]any, error) {
	env := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(e)) {
		v := e[k]
		if v == nil {
			env[k] = nil
			continue
		}
		r, err := s.Render(ctx, v)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", k, err)
		}
		switch x := r.(type) {
		case []any, []string:
			l, err := ci.RenderList(ctx, s, x)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", k, err)
			}
			env[k] = toAnyList(l)
		case nil:
			env[k] = nil
		default:
			env[k] = ci.FormatValue(x)
		}
	}
	return env, nil
}

// openLogFiles creates a log for each of the command's log files.
func (c *ShellCommand) openLogFiles(ctx context.Context, s *ci.StepRun, cmd *ci.RemoteCommand) error {
	if len(c.LogFiles) == 0 {
		return nil
	}
	cmd.Logs = map[string]*ci.LogWriter{}
	for _, name := range slices.Sorted(maps.Keys(c.LogFiles)) {
		w, err := s.AddLog(ctx, name, ci.LogStream)
		if err != nil {
			return err
		}
		cmd.Logs[name] = w
	}
	return nil
}

func toAnyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
