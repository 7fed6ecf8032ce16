package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/worker/protocol"
)

func shellBuilder(name string, workers []string, command ...string) ci.BuilderConfig {
	return ci.BuilderConfig{
		Name:    name,
		Workers: workers,
		Steps:   []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "sh"}, Command: command}},
	}
}

// The master greets a worker exactly as Buildbot's does (see the trace in
// doc/protocol.md): print, get_worker_info, set_worker_settings, listdir,
// mkdir of the missing folders, print per builder.
func TestHandshake(t *testing.T) {
	cfg := ci.MasterConfig{
		Workers: fakeWorkers("w1"),
		Builders: []ci.BuilderConfig{
			shellBuilder("one", []string{"w1"}, "true"),
			shellBuilder("two", []string{"w1"}, "true"),
			{Name: "ten", Workers: []string{"w1"}, WorkerBuildDir: "ten-dir", Steps: []ci.Step{&steps.ShellCommand{Command: "true"}}},
		},
	}
	m := startMaster(t, cfg, nil)
	f, conn := m.attachFake(t, "w1", fakeOptions{})

	reqs := f.waitRequests("", 8)
	ops := make([]string, len(reqs))
	for i, r := range reqs {
		ops[i] = r.Op()
		assert.Equal(t, int64(i), r.Seq(), "the master numbers its requests from 0")
	}
	assert.Equal(t, []string{"print", "get_worker_info", "set_worker_settings", "start_command", "start_command", "print", "print", "print"}, ops)
	assert.Equal(t, "attached", reqs[0]["message"])
	assert.Equal(t, map[string]any{
		"newline_re":      `(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)`,
		"max_line_length": int64(4096),
		"buffer_timeout":  0.2,
		"buffer_size":     int64(262144),
	}, reqs[2]["args"])
	assert.Equal(t, "listdir", reqs[3]["command_name"])
	assert.Equal(t, map[string]any{"path": "/fake/w1"}, reqs[3]["args"])
	assert.NotContains(t, reqs[3], "builder_name")
	assert.Equal(t, "mkdir", reqs[4]["command_name"])
	assert.Equal(t, map[string]any{"paths": []any{"/fake/w1/info", "/fake/w1/one", "/fake/w1/ten-dir", "/fake/w1/two"}}, reqs[4]["args"])
	assert.NotEqual(t, reqs[3]["command_id"], reqs[4]["command_id"])
	for _, r := range reqs[5:] {
		assert.Equal(t, "attached", r["message"])
	}

	// Info keeps the environment in memory; the store does not.
	assert.Equal(t, "/fake/w1", conn.Info().Basedir())
	assert.Equal(t, "s3cret", conn.Info().Environ()["SECRET"])
	ws, err := m.Store.ListWorkers(context.Background())
	require.NoError(t, err)
	require.Len(t, ws, 1)
	assert.True(t, ws[0].Connected)
	assert.Equal(t, "Fake Admin <fake@example.invalid>\n", ws[0].Info["admin"])
	assert.Equal(t, "a fake host\n", ws[0].Info["host"])
	assert.NotContains(t, ws[0].Info, "environ")
}

// A worker that asks for it has its leftover folders removed, as
// Buildbot's master does: stat of each entry that is not a builder's, then
// rmdir of those that are folders.
func TestHandshake_DeleteLeftoverDirs(t *testing.T) {
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("one", []string{"w1"}, "true")}}
	m := startMaster(t, cfg, nil)
	f, err := dialFake(t, m.addr, "w1", fakeOptions{
		info:    map[string]any{"delete_leftover_dirs": int64(1)},
		listdir: []any{"info", "one", "old", "notes.txt"},
		onCommand: func(f *fakeWorker, c fakeCommand) {
			switch c.Name {
			case "stat":
				mode := int64(0o100644)
				if c.Args["path"] == "/fake/w1/old" {
					mode = 0o040755
				}
				f.update(c.ID, []any{"stat", []any{mode, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, []any{"rc", 0})
			default:
				f.update(c.ID, []any{"rc", 0})
			}
			f.complete(c.ID, nil)
		},
	})
	require.NoError(t, err)
	m.waitAttached(t, "w1")
	var names []string
	var args []any
	for _, r := range f.requestsOf("start_command") {
		names = append(names, r["command_name"].(string))
		args = append(args, r["args"])
	}
	// Nothing to create; "old" is a folder, "notes.txt" is not.
	assert.Equal(t, []string{"listdir", "stat", "stat", "rmdir"}, names)
	assert.Equal(t, map[string]any{"path": "/fake/w1/old"}, args[1])
	assert.Equal(t, map[string]any{"path": "/fake/w1/notes.txt"}, args[2])
	assert.Equal(t, map[string]any{"paths": []any{"/fake/w1/old"}}, args[3])
}

// A build's commands carry the builder's name, a command id and wire
// arguments; the worker's updates reach the step's logs in order.
func TestRunCommand_Shell(t *testing.T) {
	cfg := ci.MasterConfig{
		Workers:  fakeWorkers("w1"),
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "make", "all")},
	}
	m := startMaster(t, cfg, nil)
	got := make(chan fakeCommand, 1)
	m.attachFake(t, "w1", fakeOptions{onCommand: func(f *fakeWorker, c fakeCommand) {
		got <- c
		f.update(c.ID,
			[]any{"header", lines("make all\n")},
			[]any{"stdout", lines("compiling\n")},
			[]any{"stderr", lines("warning: x\n")},
			[]any{"rc", 2},
			[]any{"elapsed", 0.25},
			[]any{"stdout", lines("last line\n")},
		)
		f.complete(c.ID, nil)
	}})
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Failure, b.Results())
	c := <-got
	assert.Equal(t, "shell", c.Name)
	assert.Equal(t, "b", c.Builder)
	assert.Equal(t, "/fake/w1/b/build", c.Args["workdir"])
	assert.Equal(t, []any{"make", "all"}, c.Args["command"])
	assert.Equal(t, true, c.Args["want_stdout"])
	assert.Equal(t, "compiling\nwarning: x\nlast line\n", b.Log("sh", "stdio"))
	assert.Contains(t, b.LogLines("sh", "stdio"), "ocompiling\new")
	assert.Contains(t, b.Header("sh", "stdio"), "make all\n")
}

// Conn.RunCommand, driven directly: the value types of updates, a
// command the worker refuses, one it fails, and file transfers.
func TestRunCommand_Direct(t *testing.T) {
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}}
	m := startMaster(t, cfg, nil)
	ctx := context.Background()
	var script func(f *fakeWorker, c fakeCommand)
	_, conn := m.attachFake(t, "w1", fakeOptions{onCommand: func(f *fakeWorker, c fakeCommand) { script(f, c) }})

	t.Run("update types", func(t *testing.T) {
		script = func(f *fakeWorker, c fakeCommand) {
			f.update(c.ID,
				[]any{"files", []any{"a", "b"}},
				[]any{"stat", []any{int64(0o40755), 1, 2, 3.5}},
				[]any{"log", []any{"extra.log", lines("log text\n")}},
				[]any{"custom", map[string]any{"k": 1}},
				[]any{"elapsed", 3},
				[]any{"rc", -9},
			)
			f.complete(c.ID, nil)
		}
		var seen []string
		var vals = map[string]any{}
		cmd := &ci.RemoteCommand{Name: "glob", Args: map[string]any{"path": "x"}, OnUpdate: func(k string, v any) { seen = append(seen, k); vals[k] = v }}
		require.NoError(t, conn.RunCommand(ctx, "b", cmd))
		assert.Equal(t, []string{"files", "stat", "log", "custom", "elapsed", "rc"}, seen)
		assert.Equal(t, []string{"a", "b"}, vals["files"])
		assert.Equal(t, []int64{0o40755, 1, 2, 3}, vals["stat"])
		assert.Equal(t, [2]string{"extra.log", "log text\n"}, vals["log"])
		assert.Equal(t, map[string]any{"k": int64(1)}, vals["custom"])
		assert.Equal(t, 3.0, vals["elapsed"])
		assert.Equal(t, -9, cmd.RC)
	})

	t.Run("output kept by OnUpdate", func(t *testing.T) {
		// Output text shares the frame it came in until the update is
		// applied; frames are then read into the same buffers again.
		// What a step keeps from OnUpdate stays as it was sent.
		text := func(i int) string {
			return fmt.Sprintf("update %02d %s\n", i, strings.Repeat(string(rune('a'+i)), 300))
		}
		script = func(f *fakeWorker, c fakeCommand) {
			for i := range 20 {
				f.update(c.ID, []any{"stdout", lines(text(i))}, []any{"log", []any{"extra.log", lines(text(i))}},
					[]any{"header", text(i)})
			}
			f.complete(c.ID, nil)
		}
		var kept []any
		cmd := &ci.RemoteCommand{Name: "shell", Args: map[string]any{"workdir": "x"}, OnUpdate: func(k string, v any) { kept = append(kept, v) }}
		require.NoError(t, conn.RunCommand(ctx, "b", cmd))
		require.Len(t, kept, 60)
		for i := range 20 {
			assert.Equal(t, text(i), kept[3*i], "stdout of update %d", i)
			assert.Equal(t, [2]string{"extra.log", text(i)}, kept[3*i+1], "log of update %d", i)
			assert.Equal(t, text(i), kept[3*i+2], "header of update %d", i)
		}
	})

	t.Run("failure", func(t *testing.T) {
		script = func(f *fakeWorker, c fakeCommand) { f.complete(c.ID, "ValueError: missing args: path") }
		err := conn.RunCommand(ctx, "b", &ci.RemoteCommand{Name: "rmfile", Args: map[string]any{"path": "x"}})
		var ce *ci.CommandError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "rmfile", ce.Command)
		assert.Equal(t, "ValueError: missing args: path", ce.Message)
	})

	t.Run("unknown builder", func(t *testing.T) {
		err := conn.RunCommand(ctx, "nope", &ci.RemoteCommand{Name: "shell", Args: map[string]any{"workdir": "x"}})
		require.ErrorContains(t, err, `builder "nope" is not set up`)
	})

	t.Run("ctx done", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, conn.RunCommand(cctx, "b", &ci.RemoteCommand{Name: "shell", Args: map[string]any{"workdir": "x"}}), context.Canceled)
	})

	t.Run("download", func(t *testing.T) {
		var got [][]byte
		var closed protocol.Message
		script = func(f *fakeWorker, c fakeCommand) {
			for {
				r := f.call(protocol.Message{"op": protocol.OpUpdateReadFile, "command_id": c.ID, "length": 4})
				b, ok := r["result"].([]byte)
				if !ok {
					t.Errorf("read_file result is a %T", r["result"])
					break
				}
				got = append(got, b)
				if len(b) == 0 {
					break
				}
			}
			closed = f.call(protocol.Message{"op": protocol.OpUpdateReadFileClose, "command_id": c.ID})
			f.update(c.ID, []any{"rc", 0})
			f.complete(c.ID, nil)
		}
		rc := &closeCounter{Reader: strings.NewReader("0123456789")}
		cmd := &ci.RemoteCommand{Name: "downloadFile", Args: map[string]any{"workdir": "build", "workerdest": "f"}, Download: rc}
		require.NoError(t, conn.RunCommand(ctx, "b", cmd))
		assert.Equal(t, [][]byte{[]byte("0123"), []byte("4567"), []byte("89"), {}}, got)
		assert.NoError(t, closed.ResponseError())
		assert.Equal(t, 1, rc.closes)
	})

	t.Run("upload", func(t *testing.T) {
		var resps []protocol.Message
		script = func(f *fakeWorker, c fakeCommand) {
			resps = append(resps,
				f.call(protocol.Message{"op": protocol.OpUpdateUploadFileWrite, "command_id": c.ID, "args": []byte("hello ")}),
				f.call(protocol.Message{"op": protocol.OpUpdateUploadFileWrite, "command_id": c.ID, "args": []byte("world")}),
				f.call(protocol.Message{"op": protocol.OpUpdateUploadFileClose, "command_id": c.ID}),
				f.call(protocol.Message{"op": protocol.OpUpdateUploadFileUtime, "command_id": c.ID, "access_time": 1700000000.5, "modified_time": int64(1600000000)}),
				f.call(protocol.Message{"op": protocol.OpUpdateUploadDirectoryUnpack, "command_id": c.ID}),
			)
			f.update(c.ID, []any{"rc", 0})
			f.complete(c.ID, nil)
		}
		w := &recordWriter{}
		cmd := &ci.RemoteCommand{Name: "uploadFile", Args: map[string]any{"workdir": "build", "workersrc": "f"}, Upload: w}
		require.NoError(t, conn.RunCommand(ctx, "b", cmd))
		assert.Equal(t, "write:hello |write:world|close|utime:1700000000.500,1600000000.000|unpack", strings.Join(w.calls, "|"))
		for i, r := range resps[:4] {
			assert.NoError(t, r.ResponseError(), "response %d", i)
		}
		assert.ErrorContains(t, resps[4].ResponseError(), "no unpack here", "the writer's error is the worker's exception")
	})

	t.Run("transfer without writer", func(t *testing.T) {
		var r protocol.Message
		script = func(f *fakeWorker, c fakeCommand) {
			r = f.call(protocol.Message{"op": protocol.OpUpdateUploadFileWrite, "command_id": c.ID, "args": []byte("x")})
			f.complete(c.ID, "upload failed")
		}
		err := conn.RunCommand(ctx, "b", &ci.RemoteCommand{Name: "uploadFile", Args: map[string]any{"workdir": "build", "workersrc": "f"}})
		require.Error(t, err)
		assert.ErrorContains(t, r.ResponseError(), "no writer")
	})
}

type closeCounter struct {
	io.Reader
	closes int
}

func (c *closeCounter) Close() error { c.closes++; return nil }

type recordWriter struct{ calls []string }

func (w *recordWriter) Write(p []byte) (int, error) {
	w.calls = append(w.calls, "write:"+string(p))
	return len(p), nil
}
func (w *recordWriter) Close() error { w.calls = append(w.calls, "close"); return nil }
func (w *recordWriter) Utime(a, m time.Time) error {
	w.calls = append(w.calls, "utime:"+fmtUnix(a)+","+fmtUnix(m))
	return nil
}
func (w *recordWriter) Unpack() error {
	w.calls = append(w.calls, "unpack")
	return errors.New("no unpack here")
}

func fmtUnix(t time.Time) string { return fmt.Sprintf("%.3f", float64(t.UnixNano())/1e9) }

// TestConn_IdleGoroutines: an idle connection keeps one goroutine, its
// reader. The writer runs while there are frames to write, the monitor is
// a timer, and the HTTP handler returns once the worker is attached, so
// that hundreds of idle workers cost the master little. A connection still
// writes after being idle.
func TestConn_IdleGoroutines(t *testing.T) {
	names := []string{"w1", "w2", "w3"}
	cfg := ci.MasterConfig{Workers: fakeWorkers(names...), Builders: []ci.BuilderConfig{shellBuilder("b", names, "true")}}
	m := startMaster(t, cfg, nil)
	var conns []*Conn
	for _, n := range names {
		_, c := m.attachFake(t, n, fakeOptions{})
		conns = append(conns, c)
	}
	m.WaitFor(t, "one goroutine per idle connection", func() bool { return connGoroutines() == len(names) })
	for _, c := range conns {
		require.NoError(t, c.Ping(context.Background()))
	}
}

// connGoroutines counts the goroutines running the master's side of
// worker connections.
func connGoroutines() int {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for g := range strings.SplitSeq(b.String(), "\n\n") {
		if strings.Contains(g, "remote.(*Conn).") || strings.Contains(g, "remote.(*Listener).serveWorker") {
			n++
		}
	}
	return n
}

// What runs once a connection ends is registered with the connection,
// contexts derived from it included, and unregistered by stop; an idle
// connection keeps no table of requests or commands.
func TestConn_AfterDone(t *testing.T) {
	m := startMaster(t, ci.MasterConfig{Workers: fakeWorkers("w1")}, nil)
	_, c := m.attachFake(t, "w1", fakeOptions{})
	registered := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.afters)
	}
	// The master watches the connection just after marking its worker
	// attached: its registration can follow attachFake's return. The
	// attach handshake registers too, until the Listener counts the
	// worker attached; until then two registrations may be the
	// connection's own and the handshake's.
	const n = 2 // the connection's own and the master's
	m.WaitFor(t, "the handshake to end, its requests answered, and the master to watch", func() bool {
		if m.l.Stats().Attached != 1 {
			return false
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.pending == nil && c.cmds == nil && len(c.afters) == n
	})

	ran := make(chan string, 3)
	stop := c.AfterDone(func() { ran <- "stopped" })
	c.AfterDone(func() { ran <- "kept" })
	require.Equal(t, n+2, registered())
	require.True(t, stop())
	require.False(t, stop(), "a second stop finds nothing to stop")
	require.Equal(t, n+1, registered())

	canceled, cancel := context.WithCancel(c.ctx())
	live, cancelLive := context.WithTimeout(c.ctx(), time.Hour)
	defer cancelLive()
	require.Equal(t, n+3, registered())
	cancel()
	require.Equal(t, n+2, registered(), "a canceled context unregisters")
	require.NoError(t, live.Err())

	require.NoError(t, c.Close())
	assert.Equal(t, "kept", <-ran)
	<-live.Done()
	assert.ErrorIs(t, live.Err(), context.Canceled)
	assert.ErrorIs(t, canceled.Err(), context.Canceled)
	c.AfterDone(func() { ran <- "late" })
	assert.Equal(t, "late", <-ran, "registered once the connection has ended, it runs at once")
	assert.Empty(t, ran, "stopped, it did not run")
}

// At most maxAttaching attach handshakes run at once; the other
// connections wait for theirs, which start as those end.
func TestListener_AttachQueue(t *testing.T) {
	n := maxAttaching + 5
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("w%d", i)
	}
	m := startMaster(t, ci.MasterConfig{Workers: fakeWorkers(names...)}, nil)
	fakes := make([]*fakeWorker, n)
	for i, name := range names {
		f, err := dialFake(t, m.addr, name, fakeOptions{mute: true})
		require.NoError(t, err)
		fakes[i] = f
	}
	greeted := func() (in []*fakeWorker, out []*fakeWorker) {
		for _, f := range fakes {
			if len(f.requestsOf("print")) > 0 {
				in = append(in, f)
			} else {
				out = append(out, f)
			}
		}
		return in, out
	}
	queued := func() int {
		m.l.attachMu.Lock()
		defer m.l.attachMu.Unlock()
		return len(m.l.attachQueue)
	}
	m.WaitFor(t, "the handshakes to start and the others to wait", func() bool {
		in, _ := greeted()
		return len(in) == maxAttaching && queued() == 5
	})
	in, waiting := greeted()
	require.Len(t, waiting, 5)

	// The workers that do not answer go; the others' handshakes start.
	for _, f := range in[:5] {
		f.ws.CloseNow()
	}
	for _, f := range waiting {
		f.waitRequests("print", 1)
	}
	require.Equal(t, 0, queued())
}
