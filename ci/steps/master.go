package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kilnci/kiln/ci"
)

// MasterShellCommand runs a command on the master itself, as Buildbot's
// step of that name: to publish what a build uploaded, say. Its output goes
// to the "stdio" log and its exit code decides the result.
type MasterShellCommand struct {
	ci.StepOptions
	// Command is as for ShellCommand: an argument vector, or a shell string
	// whose interpolated values are quoted. Required.
	Command any
	// Workdir is the folder it runs in, relative to the master's base
	// folder (the base folder if nil).
	Workdir any
	// Env adds to the master's environment; nil values remove variables.
	Env map[string]any
	// Timeout kills the command after that long in all (no limit if zero).
	Timeout time.Duration
	// DecodeRC is as for ShellCommand.
	DecodeRC map[int]ci.Result
}

// Options implements ci.Step, naming the step "MasterShellCommand" by
// default, as Buildbot does.
func (c *MasterShellCommand) Options() ci.StepOptions {
	return named(c.StepOptions, "MasterShellCommand")
}

// Validate checks the configuration.
func (c *MasterShellCommand) Validate() error {
	return (&ShellCommand{Command: c.Command, Workdir: c.Workdir, Env: c.Env, DecodeRC: c.DecodeRC}).Validate()
}

// StartLogs names the log c adds as it runs, stdio (ci.StartLogger): the
// master stores it with the step's start.
func (c *MasterShellCommand) StartLogs() []ci.Log {
	return []ci.Log{{Name: "stdio", Type: ci.LogStream}}
}

// Run implements ci.Step.
func (c *MasterShellCommand) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	command, err := renderCommand(ctx, s, c.Command)
	if err != nil {
		return ci.Exception, fmt.Errorf("command: %w", err)
	}
	dir := s.MasterDir()
	if c.Workdir != nil {
		if dir, err = masterPath(ctx, s, "workdir", c.Workdir); err != nil {
			return ci.Exception, err
		}
	}
	env, err := renderEnv(ctx, s, c.Env)
	if err != nil {
		return ci.Exception, err
	}
	stdio, err := s.AddLog(ctx, "stdio", ci.LogStream)
	if err != nil {
		return ci.Exception, err
	}
	var argv []string
	switch x := command.(type) {
	case string:
		argv = []string{"/bin/sh", "-c", x}
	case []any:
		for _, a := range x {
			argv = append(argv, a.(string))
		}
	case []string:
		argv = x
	}
	s.SetStateString(firstNonEmpty(c.Description, describeCommand(toAnyList(argv))))
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		stdio.AddHeader(fmt.Sprintf("cannot create folder %s: %v\n", dir, err))
		return ci.Failure, nil
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = mergeEnv(os.Environ(), env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var mu sync.Mutex
	cmd.Stdout = streamWriter(&mu, stdio.AddStdout)
	cmd.Stderr = streamWriter(&mu, stdio.AddStderr)
	stdio.AddHeader(fmt.Sprintf("%q\n in dir %s (on the master)\n", argv, dir))
	start := time.Now()
	err = cmd.Run()
	rc := 0
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		rc = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			rc = -int(ws.Signal())
			stdio.AddHeader(fmt.Sprintf("process killed by signal %d\n", ws.Signal()))
		}
	default:
		stdio.AddHeader(fmt.Sprintf("cannot run command: %v\n", err))
		rc = -1
	}
	stdio.AddHeader(fmt.Sprintf("program finished with exit code %d\nelapsedTime=%f\n", rc, time.Since(start).Seconds()))
	if ctx.Err() != nil && c.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		stdio.AddHeader(fmt.Sprintf("command timed out after %s\n", c.Timeout))
	}
	return (&ShellCommand{DecodeRC: c.DecodeRC}).decode(rc), nil
}

// streamWriter adapts a log stream to an io.Writer.
func streamWriter(mu *sync.Mutex, add func(string)) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		add(string(p))
		return len(p), nil
	})
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// mergeEnv applies a rendered Env to a base environment.
func mergeEnv(base []string, env map[string]any) []string {
	m := map[string]string{}
	var order []string
	for _, kv := range base {
		k, v, _ := cutEnv(kv)
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	for k, v := range env {
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case string:
			m[k] = expandBraces(x, os.Getenv)
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i], _ = p.(string)
			}
			m[k] = strings.Join(parts, string(os.PathListSeparator))
		}
	}
	out := make([]string, 0, len(m))
	for _, k := range order {
		if v, ok := m[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

var braceRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandBraces replaces ${NAME} (only that form, as Buildbot does) with
// the value lookup gives.
func expandBraces(s string, lookup func(string) string) string {
	return braceRe.ReplaceAllStringFunc(s, func(m string) string { return lookup(m[2 : len(m)-1]) })
}

func cutEnv(kv string) (string, string, bool) {
	for i := 1; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}
