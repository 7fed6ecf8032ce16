package worker_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker"
	"github.com/kilnci/kiln/worker/protocol"
)

func TestWorker_Handshake(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	require.NoError(t, os.MkdirAll(filepath.Join(w.BaseDir, "info"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(w.BaseDir, "info", "host"), []byte("a test host\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(w.BaseDir, "info", "access_uri"), []byte("ssh://w1\n"), 0o644))
	w.Admin = "Ada <ada@example.org>"
	w.Env = map[string]string{"PATH": "/usr/bin:/bin", "KILN_TEST": "yes"}
	startWorker(t, w)
	c := m.accept()

	info := c.handshake()
	assert.Equal(t, w.BaseDir, info["basedir"])
	assert.Equal(t, "posix", info["system"])
	assert.Equal(t, int64(runtime.NumCPU()), info["numcpus"])
	assert.Equal(t, protocol.Version, info["version"])
	assert.Equal(t, "Ada <ada@example.org>", info["admin"])
	assert.Equal(t, "a test host\n", info["host"])
	assert.Equal(t, "ssh://w1\n", info["access_uri"])
	assert.Equal(t, false, info["delete_leftover_dirs"])
	assert.Equal(t, map[string]any{"PATH": "/usr/bin:/bin", "KILN_TEST": "yes"}, info["environ"])
	cmds := map[string]any{}
	for k, v := range protocol.WorkerCommands() {
		cmds[k] = v
	}
	assert.Equal(t, cmds, info["worker_commands"])
	if _, err := os.Stat("/etc/os-release"); err == nil {
		assert.NotEmpty(t, info["os_id"], "os-release fields")
	}
	assert.Equal(t, []string{"/"}, m.upgradePaths(), "the upgrade request's path")

	r := c.call(protocol.Message{"op": "keepalive"})
	assert.NoError(t, r.ResponseError())
	assert.Nil(t, r["result"])
	r = c.call(protocol.Message{"op": "print", "message": "ping"})
	assert.NoError(t, r.ResponseError())

	r = c.call(protocol.Message{"op": "frobnicate"})
	assert.Equal(t, true, r["is_exception"])
	assert.Equal(t, "Command frobnicate does not exist.", r["result"])

	r = c.call(protocol.Message{"op": "set_worker_settings", "args": map[string]any{"buffer_size": "big"}})
	assert.Equal(t, true, r["is_exception"], "a mistyped setting is refused")
	r = c.call(protocol.Message{"op": "print"})
	assert.Equal(t, true, r["is_exception"], "print without a message")

	// The connection goes on after refused requests.
	r = c.call(protocol.Message{"op": "keepalive"})
	assert.NoError(t, r.ResponseError())
}

func TestWorker_SetBuilderList(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	w.DeleteLeftoverDirs = true
	require.NoError(t, os.MkdirAll(filepath.Join(w.BaseDir, "old-builder", "build"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(w.BaseDir, "info"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(w.BaseDir, "notes.txt"), nil, 0o644))
	startWorker(t, w)
	c := m.accept()
	info := c.handshake()
	assert.Equal(t, true, info["delete_leftover_dirs"])

	abs := filepath.Join(w.BaseDir, "elsewhere", "two")
	r := c.call(protocol.Message{"op": "set_builder_list", "builders": []any{
		[]any{"one", "one-dir"}, []any{"two", abs},
	}})
	require.NoError(t, r.ResponseError())
	assert.Equal(t, []any{"one", "two"}, r["result"])
	assert.DirExists(t, filepath.Join(w.BaseDir, "one-dir"))
	assert.DirExists(t, abs)
	assert.NoDirExists(t, filepath.Join(w.BaseDir, "old-builder"), "leftover folder deleted")
	assert.DirExists(t, filepath.Join(w.BaseDir, "info"))
	assert.FileExists(t, filepath.Join(w.BaseDir, "notes.txt"), "files are not folders")

	r = c.call(protocol.Message{"op": "set_builder_list", "builders": []any{[]any{"out", "/"}}})
	assert.Equal(t, true, r["is_exception"], "a folder outside the base folder is refused: %v", r["result"])
	r = c.call(protocol.Message{"op": "set_builder_list", "builders": []any{"one"}})
	assert.Equal(t, true, r["is_exception"])
}

func TestWorker_ShellCommand(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()

	workdir := filepath.Join(w.BaseDir, "b", "build")
	run := c.runCommand("7", "shell", map[string]any{
		"workdir":  workdir,
		"command":  []any{"sh", "-c", "echo one; echo two; echo oops >&2; printf partial; echo log line > my.log; exit 3"},
		"env":      map[string]any{},
		"logfiles": map[string]any{"mine": "my.log"},
		"timeout":  int64(60),
	}, nil)

	assert.Nil(t, run.complete, "a failing command still completes normally")
	assert.Equal(t, int64(3), run.rc(t))
	assert.Equal(t, "one\ntwo\npartial\n", run.text(t, "stdout"))
	assert.Equal(t, "oops\n", run.text(t, "stderr"))
	assert.Contains(t, run.text(t, "header"), " in dir "+workdir)

	var sawLog, sawElapsed bool
	for _, u := range run.updates {
		switch u.Key {
		case "stdout", "stderr", "header":
			assertLinesValue(t, u.Value)
		case "log":
			pair, ok := u.Value.([]any)
			require.True(t, ok, "log value is a %T", u.Value)
			require.Len(t, pair, 2)
			assert.Equal(t, "mine", pair[0])
			assertLinesValue(t, pair[1])
			text, _ := protocol.UpdateText(pair[1])
			assert.Equal(t, "log line\n", text)
			sawLog = true
		case "elapsed":
			_, ok := u.Value.(float64)
			assert.True(t, ok, "elapsed is a %T", u.Value)
			sawElapsed = true
		}
	}
	assert.True(t, sawLog, "a log update")
	assert.True(t, sawElapsed, "an elapsed update")

	// The worker numbers its requests from 0, one by one.
	for i, req := range run.requests {
		assert.Equal(t, int64(i), req.Seq(), "request %d: %v", i, req.Op())
	}
}

// assertLinesValue checks v7's [text, newline offsets, line times], as
// protocol.ParseMessage gives it: offsets and times as an []int64 and a
// []float64.
func assertLinesValue(t *testing.T, v any) {
	t.Helper()
	lv, ok := v.([]any)
	require.True(t, ok, "output value is a %T, not v7's list", v)
	require.Len(t, lv, 3)
	text, ok := lv[0].(string)
	require.True(t, ok)
	offsets, ok := lv[1].([]int64)
	require.True(t, ok, "offsets are a %T", lv[1])
	times, ok := lv[2].([]float64)
	require.True(t, ok, "times are a %T", lv[2])
	var want []int64
	for i := range len(text) {
		if text[i] == '\n' {
			want = append(want, int64(i))
		}
	}
	assert.Equal(t, want, offsets, "newline offsets of %q", text)
	assert.Len(t, times, len(offsets))
	for _, f := range times {
		assert.True(t, f > 1e9, "line time %v", f)
	}
}

func TestWorker_StartCommandErrors(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()

	r := c.call(protocol.Message{"op": "start_command", "command_id": "1", "command_name": "frob", "args": map[string]any{}})
	assert.Equal(t, true, r["is_exception"])
	assert.Equal(t, "unrecognized WorkerCommand 'frob'", r["result"])

	r = c.call(protocol.Message{"op": "start_command", "command_id": "2", "command_name": "shell", "args": map[string]any{"workdir": "x"}})
	assert.Equal(t, true, r["is_exception"])
	assert.Contains(t, r["result"], "missing args: command")

	r = c.call(protocol.Message{"op": "start_command", "command_id": 3, "command_name": "shell", "args": map[string]any{}})
	assert.Equal(t, true, r["is_exception"], "command_id must be a string")

	// Started, then failed: complete carries the failure.
	run := c.runCommand("4", "rmfile", map[string]any{"path": "/etc/passwd"}, nil)
	assert.Contains(t, run.complete, "outside the worker's base folder")

	c.startCommand("5", "shell", map[string]any{"workdir": w.BaseDir, "command": []any{"sleep", "60"}})
	r = c.call(protocol.Message{"op": "start_command", "command_id": "5", "command_name": "shell", "args": map[string]any{"workdir": w.BaseDir, "command": []any{"true"}}})
	assert.Equal(t, true, r["is_exception"], "an id already running")
	r = c.call(protocol.Message{"op": "interrupt_command", "command_id": "5", "why": "test over"})
	require.NoError(t, r.ResponseError())
	c.follow("5", nil)
}

func TestWorker_ListdirEmpty(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()
	empty := filepath.Join(w.BaseDir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	run := c.runCommand("0", "listdir", map[string]any{"path": empty}, nil)
	require.Equal(t, "files", run.updates[0].Key)
	assert.Equal(t, []any{}, run.updates[0].Value, "an empty list, not nil")
}

func TestWorker_Validate(t *testing.T) {
	err := (&worker.Worker{Name: "a:b", Master: "http://x", CAFile: "ca.pem"}).Run(t.Context())
	require.Error(t, err)
	for _, want := range []string{"colon", "no base folder", "not ws or wss"} {
		assert.ErrorContains(t, err, want)
	}
	err = (&worker.Worker{Name: "a", BaseDir: t.TempDir(), Master: "localhost:9989", CAFile: "ca.pem"}).Run(t.Context())
	assert.ErrorContains(t, err, "not a wss:// URL")
	err = (&worker.Worker{Name: "a", BaseDir: t.TempDir(), Master: "wss://localhost/", CAFile: "missing.pem"}).Run(t.Context())
	assert.ErrorContains(t, err, "CA file")
	err = (&worker.Worker{Name: "a", BaseDir: t.TempDir(), Master: "localhost:http"}).Run(t.Context())
	assert.ErrorContains(t, err, "port")
}

// TestWorker_UpdatesInFlight: a command's updates go out without waiting
// for their responses, eight at most; past that its output waits for the
// master. A refused update is logged and the command goes on.
func TestWorker_UpdatesInFlight(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	logs := make(records, 1024)
	w.Logger = slog.New(logs)
	startWorker(t, w)
	c := m.accept()
	c.handshake() // no buffering: each read of the output is an update

	c.startCommand("1", "shell", map[string]any{
		"workdir": filepath.Join(w.BaseDir, "b", "build"),
		"command": []any{"sh", "-c", "i=0; while [ $i -lt 30 ]; do echo $i; i=$((i+1)); sleep 0.01; done"},
		"env":     map[string]any{},
		"timeout": int64(60),
	})
	var held []protocol.Message
	for range 8 {
		u := c.recv()
		require.Equal(t, protocol.OpUpdate, u.Op(), "request %v", u)
		held = append(held, u)
	}
	// The command prints a line every 10 ms: with eight updates awaiting
	// their response, nothing more comes.
	select {
	case u := <-c.in:
		t.Fatalf("a ninth request while eight updates await their response: %v", u)
	case <-time.After(300 * time.Millisecond):
	}
	c.respond(held[0], nil, errors.New("no such log"))
	assert.Contains(t, logs.waitLog(t, slog.LevelWarn, "the master refused an update"), "no such log")
	u := c.recv()
	require.Equal(t, protocol.OpUpdate, u.Op(), "request %v", u)
	for _, h := range held[1:] {
		c.respond(h, nil, nil)
	}
	c.respond(u, nil, nil)
	run := c.follow("1", nil)
	var first []protocol.UpdatePair
	for _, h := range append(held, u) {
		ups, err := protocol.ParseUpdates(h["args"])
		require.NoError(t, err)
		first = append(first, ups...)
	}
	run.updates = append(first, run.updates...)
	assert.Nil(t, run.complete)
	assert.Equal(t, int64(0), run.rc(t))
	var want strings.Builder
	for i := range 30 {
		fmt.Fprintln(&want, i)
	}
	assert.Equal(t, want.String(), run.text(t, "stdout"))
}
