//go:build unix

package command_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/command"
)

// testOptions returns options for a worker in a new temporary folder,
// with a small fixed environment and no output buffering delay.
func testOptions(t *testing.T) *command.Options {
	t.Helper()
	return &command.Options{
		BaseDir:       t.TempDir(),
		BufferTimeout: -1,
		Env: map[string]string{
			"PATH":        os.Getenv("PATH"),
			"HOME":        "/home/kiln",
			"LANG":        "C.UTF-8",
			"KILN_HELPER": "1",
			// no 1 s pause at exit in helpers built with -race
			"GORACE": "atexit_sleep_ms=0",
		},
	}
}

// shellArgs returns shell arguments running argv in workdir "build" of
// opts' base folder, without the environment in the header.
func shellArgs(opts *command.Options, command any) map[string]any {
	return map[string]any{
		"workdir":    filepath.Join(opts.BaseDir, "build"),
		"command":    command,
		"logEnviron": false,
	}
}

// helperHeader is the header a helper command starts with.
func helperHeader(workdir string, args ...string) string {
	argv := append([]string{os.Args[0], "--"}, args...)
	var quoted, reprs []string
	for _, a := range argv {
		quoted = append(quoted, a)
		reprs = append(reprs, "b'"+a+"'")
	}
	return strings.Join(quoted, " ") + "\n" +
		" in dir " + workdir + "\n" +
		" watching logfiles {}\n" +
		" argv: [" + strings.Join(reprs, ", ") + "]\n" +
		" using PTY: False\n"
}

func helperArgv(args ...string) string {
	reprs := []string{"b'" + os.Args[0] + "'", "b'--'"}
	for _, a := range args {
		reprs = append(reprs, "b'"+a+"'")
	}
	return "[" + strings.Join(reprs, ", ") + "]"
}

func runCmd(t *testing.T, ctx context.Context, h command.Host, name string, args map[string]any, opts *command.Options) {
	t.Helper()
	require.NoError(t, command.Run(ctx, h, name, args, opts))
}

func TestShell_OK(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, helper("exit", "0"))
	runCmd(t, t.Context(), h, "shell", args, opts)
	workdir := args["workdir"].(string)
	assert.Equal(t, []kv{
		{"header", helperHeader(workdir, "exit", "0")},
		{"rc", 0},
		{"header", "elapsedTime=X\n"},
		{"elapsed", 0.0},
	}, h.Updates(t))
	assert.DirExists(t, workdir, "workdir created")
}

func TestShell_Output(t *testing.T) {
	tests := []struct {
		name           string
		stdout, stderr string
		code           int
		want           []kv
	}{
		{
			name:   "lines",
			stdout: "one\ntwo\n", code: 3,
			want: []kv{{"stdout", "one\ntwo\n"}, {"rc", 3}, {"header", "elapsedTime=X\n"}, {"elapsed", 0.0}},
		},
		{
			// (stdout and stderr are read apart: their relative order is
			// not kept.)
			name:   "stderr",
			stderr: "oops\n", code: 1,
			want: []kv{{"stderr", "oops\n"}, {"rc", 1}, {"header", "elapsedTime=X\n"}, {"elapsed", 0.0}},
		},
		{
			// The unfinished last line is sent, with a newline, when the
			// command completes: after rc, as buildbot-worker does.
			name:   "last line without newline",
			stdout: "one\ntwo", stderr: "", code: 0,
			want: []kv{{"stdout", "one\n"}, {"rc", 0}, {"header", "elapsedTime=X\n"}, {"elapsed", 0.0}, {"stdout", "two\n"}},
		},
		{
			name:   "newline expression",
			stdout: "a\r\nb\rc\b\bd\x1b[2;3He\x1b[2Jf\x1b[ug\n", code: 0,
			want: []kv{{"stdout", "a\nb\nc\nd\ne\nf\ng\n"}, {"rc", 0}, {"header", "elapsedTime=X\n"}, {"elapsed", 0.0}},
		},
		{
			name:   "invalid UTF-8",
			stdout: "caf\xc3\xa9 \xff!\n", code: 0,
			want: []kv{{"stdout", "café \ufffd!\n"}, {"rc", 0}, {"header", "elapsedTime=X\n"}, {"elapsed", 0.0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t)
			h := &fakeHost{}
			args := shellArgs(opts, helper("print", tt.stdout, tt.stderr, strconv.Itoa(tt.code)))
			runCmd(t, t.Context(), h, "shell", args, opts)
			got := h.Updates(t)
			require.Equal(t, "header", got[0].Key)
			assert.Equal(t, tt.want, got[1:])
		})
	}
}

func TestShell_StringCommand(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, "echo hi; echo 'it''s'; exit 2")
	args["timeout"] = 1200
	args["maxTime"] = 1.5
	runCmd(t, t.Context(), h, "shell", args, opts)
	workdir := args["workdir"].(string)
	assert.Equal(t, []kv{
		{"header", "echo hi; echo 'it''s'; exit 2\n" +
			" in dir " + workdir + " (timeout 1200 secs) (maxTime 1.5 secs)\n" +
			" watching logfiles {}\n" +
			` argv: b"echo hi; echo 'it''s'; exit 2"` + "\n" +
			" using PTY: False\n"},
		{"stdout", "hi\nits\n"},
		{"rc", 2},
		{"header", "elapsedTime=X\n"},
		{"elapsed", 0.0},
	}, h.Updates(t))
}

func TestShell_Display(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, []any{"printf", "%s|", "a b", "", "it's", []any{"obfuscated", "s3cret", "<hidden>"}})
	args["timeout"] = 1
	runCmd(t, t.Context(), h, "shell", args, opts)
	header := h.Text("header")
	assert.Contains(t, header, `printf '%s|' 'a b' "" 'it'"'"'s' '<hidden>'`+"\n")
	assert.Contains(t, header, "(timeout 1 sec)\n")
	assert.Contains(t, header, ` argv: [b'printf', b'%s|', b'a b', b'', b"it's", b'<hidden>']`+"\n")
	assert.NotContains(t, header, "s3cret")
	assert.Equal(t, "a b||it's|s3cret|", h.Text("stdout")[:len("a b||it's|s3cret|")])
}

func TestShell_WantOutput(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, helper("print", "out\n", "err\n", "0"))
	args["want_stdout"] = false
	args["want_stderr"] = 1
	runCmd(t, t.Context(), h, "shell", args, opts)
	assert.Equal(t, "", h.Text("stdout"))
	assert.Equal(t, "err\n", h.Text("stderr"))
}

func TestShell_Env(t *testing.T) {
	opts := testOptions(t)
	opts.Env["KEEP"] = "kept"
	opts.Env["DROP"] = "dropped"
	opts.Env["PYTHONPATH"] = "/worker/py"
	h := &fakeHost{}
	args := shellArgs(opts, helper("env", "KEEP", "DROP", "LIST", "EXP", "PWD", "PYTHONPATH", "HOME"))
	args["env"] = map[string]any{
		"DROP":       nil,
		"LIST":       []any{"/a", "/b"},
		"EXP":        "${HOME}/x:${NOPE}:${}:$HOME",
		"PYTHONPATH": "/mine",
		"API_TOKEN":  "t0ps3cret",
	}
	args["logEnviron"] = true
	runCmd(t, t.Context(), h, "shell", args, opts)
	workdir := args["workdir"].(string)
	assert.Equal(t, "KEEP=kept\n"+
		"DROP=<unset>\n"+
		"LIST=/a:/b\n"+
		"EXP=/home/kiln/x:::$HOME\n"+
		"PWD="+workdir+"\n"+
		"PYTHONPATH=/mine:/worker/py\n"+
		"HOME=/home/kiln\n", h.Text("stdout"))
	assert.NotContains(t, h.Text("header"), "t0ps3cret", "a secret's value is masked")
	assert.Contains(t, h.Text("header"), " environment:\n"+
		"  API_TOKEN=***\n"+
		"  EXP=/home/kiln/x:::$HOME\n"+
		"  GORACE=atexit_sleep_ms=0\n"+
		"  HOME=/home/kiln\n"+
		"  KEEP=kept\n"+
		"  KILN_HELPER=1\n"+
		"  LANG=C.UTF-8\n"+
		"  LIST=/a:/b\n"+
		"  PATH="+os.Getenv("PATH")+"\n"+
		"  PWD="+workdir+"\n"+
		"  PYTHONPATH=/mine:/worker/py\n"+
		" using PTY: False\n")
}

func TestShell_EnvErrors(t *testing.T) {
	opts := testOptions(t)
	args := shellArgs(opts, helper("exit", "0"))
	args["env"] = map[string]any{"N": 3}
	err := command.Run(t.Context(), &fakeHost{}, "shell", args, opts)
	require.EqualError(t, err, "shell: 'env' values must be strings or lists; key 'N' is incorrect")
}

func TestShell_Stdin(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, helper("cat"))
	args["initial_stdin"] = "fed\nin\n"
	runCmd(t, t.Context(), h, "shell", args, opts)
	assert.Contains(t, h.Text("header"), " argv: "+helperArgv("cat")+"\n writing 7 bytes to stdin\n using PTY: False\n")
	assert.Equal(t, "fed\nin\n", h.Text("stdout"))
}

func TestShell_NoStdin(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	runCmd(t, t.Context(), h, "shell", shellArgs(opts, helper("cat")), opts)
	assert.Equal(t, "", h.Text("stdout"))
	assert.Equal(t, 0, h.Value("rc"))
}

func TestShell_UsePTY(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("PTYs are used on Linux only")
	}
	opts := testOptions(t)
	h := &fakeHost{}
	// Both outputs and stdin are the terminal, the command leads its
	// session, and what it writes on stderr arrives as stdout.
	args := shellArgs(opts, []any{"sh", "-c", `test -t 0 && test -t 1 && test -t 2 && echo tty; cut -d' ' -f6 /proc/$$/stat; echo $$; echo err >&2; read line; echo "read $line"`})
	args["usePTY"] = true
	args["initial_stdin"] = "typed\n"
	runCmd(t, t.Context(), h, "shell", args, opts)
	assert.NotContains(t, h.Text("header"), "WARNING")
	assert.Contains(t, h.Text("header"), " using PTY: True\n")
	assert.Equal(t, 0, h.Value("rc"))
	assert.Empty(t, h.Text("stderr"))
	all := strings.Split(strings.ReplaceAll(h.Text("stdout"), "\r\n", "\n"), "\n")
	// The terminal echoes what is typed, when it is typed: anywhere
	// before the command reads it.
	echo := slices.Index(all, "typed")
	require.GreaterOrEqual(t, echo, 0, "the echo of the input in %q", all)
	lines := slices.Delete(slices.Clone(all), echo, echo+1)
	require.Len(t, lines, 6, "%q", all)
	assert.Equal(t, "tty", lines[0])
	assert.Equal(t, lines[2], lines[1], "the session is the command's")
	assert.Equal(t, []string{"err", "read typed", ""}, lines[3:])
	assert.Less(t, echo, slices.Index(all, "read typed"))
}

func TestShell_UsePTYKilled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("PTYs are used on Linux only")
	}
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, []any{"sh", "-c", "sleep 60 & echo $!; wait"})
	args["usePTY"] = true
	args["timeout"] = 1
	runCmd(t, t.Context(), h, "shell", args, opts)
	assert.Contains(t, h.Text("header"), "command timed out: 1 seconds without output")
	assert.Equal(t, -1, h.Value("rc"))
	pid, err := strconv.Atoi(strings.TrimSpace(h.Text("stdout")))
	require.NoError(t, err)
	assertDead(t, pid) // the sleep the command started is killed with it
}

func TestShell_CannotStart(t *testing.T) {
	t.Run("missing executable", func(t *testing.T) {
		opts := testOptions(t)
		h := &fakeHost{}
		args := shellArgs(opts, []any{"kiln-no-such-program", "x"})
		runCmd(t, t.Context(), h, "shell", args, opts)
		got := h.Updates(t)
		assert.Equal(t, []kv{
			{"stderr", `cannot run "kiln-no-such-program": executable file not found in PATH` + "\n"},
			{"rc", 1},
			{"header", "elapsedTime=X\n"},
			{"elapsed", 0.0},
		}, got[1:])
	})
	t.Run("not executable", func(t *testing.T) {
		opts := testOptions(t)
		h := &fakeHost{}
		script := filepath.Join(opts.BaseDir, "script")
		require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644))
		runCmd(t, t.Context(), h, "shell", shellArgs(opts, []any{script}), opts)
		assert.Contains(t, h.Text("stderr"), "permission denied")
		assert.Equal(t, 1, h.Value("rc"))
	})
	t.Run("impossible workdir", func(t *testing.T) {
		opts := testOptions(t)
		h := &fakeHost{}
		require.NoError(t, os.WriteFile(filepath.Join(opts.BaseDir, "file"), nil, 0o644))
		args := shellArgs(opts, helper("exit", "0"))
		args["workdir"] = filepath.Join(opts.BaseDir, "file", "build")
		runCmd(t, t.Context(), h, "shell", args, opts)
		assert.Equal(t, "cannot create workdir: mkdir "+args["workdir"].(string)+": not a directory\n", h.Text("stderr"))
		assert.Equal(t, 1, h.Value("rc"))
	})
}

func TestShell_Timeout(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, helper("hang"))
	args["timeout"] = 0.2
	runCmd(t, t.Context(), h, "shell", args, opts)
	assert.Contains(t, h.Text("header"), " using PTY: False\n"+
		"\ncommand timed out: 0.2 seconds without output running "+helperArgv("hang")+", attempting to kill\n"+
		"process killed by signal 9\n")
	got := h.Updates(t)
	assert.Equal(t, []kv{
		{"rc", -1},
		{"header", "elapsedTime=X\n"},
		{"elapsed", 0.0},
	}, got[len(got)-3:])
}

func TestShell_MaxTime(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := shellArgs(opts, helper("hang"))
	args["maxTime"] = 0.2
	args["timeout"] = 1200
	runCmd(t, t.Context(), h, "shell", args, opts)
	assert.Contains(t, h.Text("header"), "\ncommand timed out: 0.2 seconds elapsed running "+helperArgv("hang")+", attempting to kill\n"+
		"process killed by signal 9\n")
	assert.Equal(t, -1, h.Value("rc"))
}

// interruptWhenReady returns a host and a context that is cancelled once
// the command has printed "ready".
func interruptWhenReady(t *testing.T) (*fakeHost, context.Context) {
	onUpdate, ready := waitLine("ready\n")
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-ready
		cancel()
	}()
	return &fakeHost{OnUpdate: onUpdate}, ctx
}

func TestShell_SigtermTime(t *testing.T) {
	t.Run("exits on TERM", func(t *testing.T) {
		opts := testOptions(t)
		h, ctx := interruptWhenReady(t)
		args := shellArgs(opts, helper("exit-on-term"))
		args["sigtermTime"] = 60
		runCmd(t, ctx, h, "shell", args, opts)
		assert.Equal(t, "ready\ngot TERM\n", h.Text("stdout"))
		// It exited 0, but it was killed: buildbot-worker reports -1.
		assert.Equal(t, -1, h.Value("rc"))
		assert.NotContains(t, h.Text("header"), "process killed by signal")
	})
	t.Run("ignores TERM", func(t *testing.T) {
		opts := testOptions(t)
		h, ctx := interruptWhenReady(t)
		args := shellArgs(opts, helper("ignore-term"))
		args["sigtermTime"] = 0.1
		runCmd(t, ctx, h, "shell", args, opts)
		assert.Contains(t, h.Text("header"), "\ncommand interrupted, attempting to kill\nprocess killed by signal 9\n")
		assert.Equal(t, -1, h.Value("rc"))
	})
}

func TestShell_Interrupt(t *testing.T) {
	tests := []struct {
		name   string
		signal any
		want   string
	}{
		{"default KILL", nil, "process killed by signal 9\n"},
		{"TERM", "TERM", "process killed by signal 15\n"},
		{"SIGINT", "SIGINT", "process killed by signal 2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t)
			h, ctx := interruptWhenReady(t)
			args := shellArgs(opts, helper("hang"))
			if tt.signal != nil {
				args["interruptSignal"] = tt.signal
			}
			runCmd(t, ctx, h, "shell", args, opts)
			got := h.Updates(t)
			// No "elapsed" after an interrupt: buildbot-worker drops it.
			assert.Equal(t, []kv{
				{"stdout", "ready\n"},
				{"header", "\ncommand interrupted, attempting to kill\n" + tt.want},
				{"rc", -1},
				{"header", "elapsedTime=X\n"},
			}, got[1:])
		})
	}
}

func TestShell_InterruptFlushesPartialLine(t *testing.T) {
	opts := testOptions(t)
	// One write: when "first" is seen, "partial" has been read too.
	args := shellArgs(opts, "printf 'first\\npartial'; exec sleep 60")
	onUpdate, ready := waitLine("first\n")
	h := &fakeHost{OnUpdate: onUpdate}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-ready
		cancel()
	}()
	runCmd(t, ctx, h, "shell", args, opts)
	got := h.Updates(t)
	// The partial line is flushed before the kill message.
	assert.Equal(t, []kv{
		{"stdout", "first\npartial\n"},
		{"header", "\ncommand interrupted, attempting to kill\nprocess killed by signal 9\n"},
		{"rc", -1},
		{"header", "elapsedTime=X\n"},
	}, got[1:])
}

// A grandchild in the command's process group dies with it. The grandchild
// keeps the command's output open and never closes it, so the command
// completes only once it is dead.
func TestShell_KillsProcessGroup(t *testing.T) {
	opts := testOptions(t)
	pidfile := filepath.Join(opts.BaseDir, "grandchild.pid")
	h, ctx := interruptWhenReady(t)
	args := shellArgs(opts, helper("grandchild", pidfile))
	args["sigtermTime"] = 0.1
	runCmd(t, ctx, h, "shell", args, opts)
	assert.Contains(t, h.Text("header"), "process killed by signal 9\n")
	assert.Equal(t, -1, h.Value("rc"))
	b, err := os.ReadFile(pidfile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(string(b))
	require.NoError(t, err)
	assertDead(t, pid)
}

// assertDead checks that pid is gone, or a zombie waiting for its
// parent. The command completing proves that the process was exiting (it
// never closes its output itself); the kernel may take a moment to finish
// its exit.
func assertDead(t *testing.T, pid int) {
	t.Helper()
	assert.Eventually(t, func() bool {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return true
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		return fields[0] == "Z" || fields[0] == "X"
	}, 10*time.Second, 10*time.Millisecond, "process %d still running", pid)
}

func TestShell_Logfiles(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	workdir := filepath.Join(opts.BaseDir, "build")
	require.NoError(t, os.MkdirAll(workdir, 0o755))
	// followed.log exists before the command: only what is added is sent.
	require.NoError(t, os.WriteFile(filepath.Join(workdir, "followed.log"), []byte("old\n"), 0o644))
	args := shellArgs(opts, []any{"sh", "-c", "echo new >> followed.log; echo made > made.log; printf 'partial' >> made.log"})
	args["logfiles"] = map[string]any{
		"made":     "made.log",
		"followed": map[string]any{"filename": "followed.log", "follow": true},
		"never":    "never.log",
	}
	runCmd(t, t.Context(), h, "shell", args, opts)
	got := h.Updates(t)
	assert.Contains(t, h.Text("header"), ` watching logfiles {'followed': {'filename': 'followed.log', 'follow': True}, 'made': 'made.log', 'never': 'never.log'}`+"\n")
	assert.Equal(t, []kv{
		{"log", [2]string{"followed", "new\n"}},
		{"log", [2]string{"made", "made\n"}},
		{"rc", 0},
		{"header", "elapsedTime=X\n"},
		{"elapsed", 0.0},
		{"log", [2]string{"made", "partial\n"}},
	}, got[1:])
}

func TestShell_Confined(t *testing.T) {
	opts := testOptions(t)
	outside := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(opts.BaseDir, "link")))
	tests := []struct {
		name string
		args map[string]any
	}{
		{"workdir ../", map[string]any{"workdir": filepath.Join(opts.BaseDir, "..", "x"), "command": "true"}},
		{"workdir symlink", map[string]any{"workdir": filepath.Join(opts.BaseDir, "link", "build"), "command": "true"}},
		{"logfile", map[string]any{"workdir": opts.BaseDir, "command": "true", "logfiles": map[string]any{"l": "../x.log"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{}
			err := command.Run(t.Context(), h, "shell", tt.args, opts)
			require.ErrorIs(t, err, command.ErrOutsideBase)
			assert.NoDirExists(t, filepath.Join(outside, "build"))
		})
	}
	t.Run("unconfined", func(t *testing.T) {
		h := &fakeHost{}
		o := *opts
		o.Unconfined = true
		args := map[string]any{"workdir": filepath.Join(opts.BaseDir, "link", "build"), "command": helper("pwd"), "logEnviron": false}
		runCmd(t, t.Context(), h, "shell", args, &o)
		assert.DirExists(t, filepath.Join(outside, "build"))
	})
}

func TestShell_RelativeWorkdir(t *testing.T) {
	opts := testOptions(t)
	h := &fakeHost{}
	args := map[string]any{"workdir": "sub/dir", "command": helper("pwd"), "logEnviron": false}
	runCmd(t, t.Context(), h, "shell", args, opts)
	real, err := filepath.EvalSymlinks(opts.BaseDir)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(real, "sub", "dir")+"\n", h.Text("stdout"))
	assert.Contains(t, h.Text("header"), " in dir sub/dir\n")
}

func TestShell_ArgErrors(t *testing.T) {
	opts := testOptions(t)
	tests := []struct {
		name string
		args map[string]any
		want string
	}{
		{"empty command", map[string]any{"workdir": "w", "command": []any{}}, "shell: command is empty"},
		{"bad item", map[string]any{"workdir": "w", "command": []any{"a", 3}}, "shell: command[1] is int, want a string"},
		{"bad signal", map[string]any{"workdir": "w", "command": "true", "interruptSignal": "NOPE"}, "shell: unknown interruptSignal 'NOPE'"},
		{"bad timeout", map[string]any{"workdir": "w", "command": "true", "timeout": "soon"}, `shell: argument "timeout" is string, want a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := command.Run(t.Context(), &fakeHost{}, "shell", tt.args, opts)
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestShell_LongLines(t *testing.T) {
	opts := testOptions(t)
	opts.MaxLineLength = 5
	h := &fakeHost{}
	runCmd(t, t.Context(), h, "shell", shellArgs(opts, helper("print", "abcdefghij\nxy\n", "", "0")), opts)
	assert.Equal(t, "abcd\nefgh\nij\nxy\n", h.Text("stdout"))
}

func TestShell_Batching(t *testing.T) {
	t.Run("buffered", func(t *testing.T) {
		// With the stock master's 5 s buffer, a quick command's updates
		// all go in one batch when it completes.
		opts := testOptions(t)
		opts.BufferTimeout = 0
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "shell", shellArgs(opts, helper("print", "a\nb\n", "", "0")), opts)
		calls := h.Calls()
		require.Len(t, calls, 1)
		var keys []string
		for _, u := range calls[0].Updates {
			keys = append(keys, u.Key)
		}
		assert.Equal(t, []string{"header", "stdout", "rc", "header", "elapsed"}, keys)
	})
	t.Run("immediate", func(t *testing.T) {
		opts := testOptions(t)
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "shell", shellArgs(opts, helper("exit", "0")), opts)
		// one batch per header message, then rc, elapsedTime, elapsed
		assert.Equal(t, []string{"update", "update", "update", "update", "update", "update", "update", "update"}, h.Ops())
	})
	t.Run("size", func(t *testing.T) {
		opts := testOptions(t)
		opts.BufferTimeout = 0
		opts.BufferSize = 1000
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "shell", shellArgs(opts, helper("lines", "100")), opts)
		for _, c := range h.Calls() {
			for _, u := range c.Updates {
				if u.Key == "stdout" {
					size := len(u.Value.(string)) + 16*len(u.Times)
					assert.LessOrEqual(t, size, 1000)
				}
			}
		}
		assert.Equal(t, 100, strings.Count(h.Text("stdout"), "\n"))
	})
}

// A command that writes a lot at once fills its pipe, which then grows
// (on Linux): its output comes whole and in order, in updates larger than
// a new pipe holds when the master's buffer size allows.
func TestShell_LargeOutput(t *testing.T) {
	opts := testOptions(t)
	opts.BufferTimeout = 0
	opts.BufferSize = 256 << 10
	h := &fakeHost{}
	const n = 40000 // about 2 MB
	runCmd(t, t.Context(), h, "shell", shellArgs(opts, helper("lines", strconv.Itoa(n))), opts)
	var want strings.Builder
	for i := range n {
		fmt.Fprintf(&want, "line %d of the output of the benchmark command\n", i)
	}
	require.Equal(t, want.String(), h.Text("stdout"))
	largest := 0
	for _, c := range h.Calls() {
		for _, u := range c.Updates {
			if u.Key == "stdout" {
				largest = max(largest, len(u.Value.(string)))
			}
		}
	}
	assert.Greater(t, largest, 64<<10)
	assert.LessOrEqual(t, largest, 256<<10)
}

func TestShell_HostFailure(t *testing.T) {
	t.Run("before the start", func(t *testing.T) {
		opts := testOptions(t)
		pidfile := filepath.Join(opts.BaseDir, "started")
		h := &fakeHost{FailOn: "update"}
		err := command.Run(t.Context(), h, "shell", shellArgs(opts, helper("writelog", pidfile, "x")), opts)
		require.ErrorIs(t, err, errRefused)
		assert.Len(t, h.Calls(), 1, "nothing sent after the failure")
		assert.NoFileExists(t, pidfile, "the command did not run")
	})
	t.Run("while running", func(t *testing.T) {
		// The command is stopped once its output cannot be sent.
		opts := testOptions(t)
		h := &failingHost{fakeHost: fakeHost{}, failOnStdout: true}
		err := command.Run(t.Context(), h, "shell", shellArgs(opts, helper("hang")), opts)
		require.ErrorIs(t, err, errRefused)
	})
}

// failingHost fails the first stdout update.
type failingHost struct {
	fakeHost
	failOnStdout bool
}

func (h *failingHost) Update(ctx context.Context, updates []command.Update) error {
	for _, u := range updates {
		if u.Key == "stdout" && h.failOnStdout {
			return errRefused
		}
	}
	return h.fakeHost.Update(ctx, updates)
}
