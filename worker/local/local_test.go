//go:build unix

package local_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/worker/local"
)

// MustConn returns a connection to a new worker in a temporary folder,
// serving the builder "b" in the folder "b", closed when the test ends.
func MustConn(tb testing.TB) *local.Conn {
	tb.Helper()
	c, err := local.NewConn("w1", tb.TempDir())
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	require.NoError(tb, c.SetBuilders(context.Background(), []ci.BuilderDir{{Builder: "b", Dir: "b"}}))
	return c
}

// recorder captures a command's updates through OnUpdate, and checks that
// they never arrive concurrently.
type recorder struct {
	mu      sync.Mutex
	updates []update
	text    map[string]*strings.Builder
}

type update struct {
	Key   string
	Value any
}

func newCommand(name string, args map[string]any) (*ci.RemoteCommand, *recorder) {
	r := &recorder{text: map[string]*strings.Builder{}}
	cmd := &ci.RemoteCommand{Name: name, Args: args, RC: -1}
	cmd.OnUpdate = func(key string, value any) {
		if !r.mu.TryLock() {
			panic("updates delivered concurrently")
		}
		defer r.mu.Unlock()
		r.updates = append(r.updates, update{key, value})
		if s, ok := value.(string); ok {
			if r.text[key] == nil {
				r.text[key] = &strings.Builder{}
			}
			r.text[key].WriteString(s)
		}
	}
	return cmd, r
}

func (r *recorder) Text(key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.text[key]; b != nil {
		return b.String()
	}
	return ""
}

func (r *recorder) Keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for _, u := range r.updates {
		if n := len(keys); n == 0 || keys[n-1] != u.Key {
			keys = append(keys, u.Key)
		}
	}
	return keys
}

func TestConn_Info(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "info"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "info", "host"), []byte("from the file\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "info", "admin"), []byte("overridden\n"), 0o644))
	w := &local.Worker{Name: "w1", Dir: dir, Admin: "Kiln <kiln@example.org>", Env: map[string]string{"HOME": "/home/kiln"}}
	c, err := w.Conn()
	require.NoError(t, err)
	defer c.Close()
	info := c.Info()
	assert.Equal(t, "w1", c.Name())
	assert.Equal(t, dir, info.Basedir())
	assert.Equal(t, "posix", info.System())
	assert.Equal(t, map[string]string{"HOME": "/home/kiln"}, info.Environ())
	assert.Equal(t, "Kiln <kiln@example.org>", info["admin"])
	assert.Equal(t, "from the file\n", info["host"])
	assert.Equal(t, runtime.NumCPU(), info["numcpus"])
	assert.Equal(t, "3.1", info["worker_commands"].(map[string]string)["upload_file"])
	assert.NotEmpty(t, info["version"])
	if _, err := os.Stat("/etc/os-release"); err == nil {
		assert.NotEmpty(t, info["os_id"])
	}
}

func TestConn_SetBuilders(t *testing.T) {
	c, err := local.NewConn("w1", t.TempDir())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetBuilders(t.Context(), []ci.BuilderDir{{Builder: "a", Dir: "a"}, {Builder: "b", Dir: "x/b"}}))
	assert.DirExists(t, filepath.Join(c.Dir(), "a"))
	assert.DirExists(t, filepath.Join(c.Dir(), "x", "b"))

	err = c.SetBuilders(t.Context(), []ci.BuilderDir{{Builder: "out", Dir: "../out"}})
	require.ErrorContains(t, err, "outside the worker's base folder")

	cmd, _ := newCommand("shell", map[string]any{"workdir": "build", "command": []any{"true"}})
	err = c.RunCommand(t.Context(), "nobody", cmd)
	require.EqualError(t, err, `local worker w1: run shell: builder "nobody" is not set up on this worker`)
}

func TestConn_Shell(t *testing.T) {
	c := MustConn(t)
	cmd, r := newCommand("shell", map[string]any{
		"workdir":    "build",
		"command":    []any{"sh", "-c", "echo out; echo err >&2; printf partial; exit 3"},
		"env":        map[string]any{"GREETING": "hi"},
		"logEnviron": false,
		"timeout":    1200,
	})
	require.NoError(t, c.RunCommand(t.Context(), "b", cmd))
	assert.Equal(t, 3, cmd.RC)
	assert.Equal(t, "out\npartial\n", r.Text("stdout"))
	assert.Equal(t, "err\n", r.Text("stderr"))
	workdir := filepath.Join(c.Dir(), "b", "build")
	assert.Contains(t, r.Text("header"), "sh -c 'echo out; echo err >&2; printf partial; exit 3'\n in dir "+workdir+" (timeout 1200 secs)\n")
	assert.Contains(t, r.Text("header"), "elapsedTime=")
	assert.IsType(t, 0.0, cmd.Updates["elapsed"])
	assert.DirExists(t, workdir)
}

func TestConn_Interrupt(t *testing.T) {
	c := MustConn(t)
	cmd, r := newCommand("shell", map[string]any{"workdir": "build", "command": "echo ready; exec sleep 60", "logEnviron": false})
	ctx, cancel := context.WithCancel(t.Context())
	ready := cmd.OnUpdate
	cmd.OnUpdate = func(key string, value any) {
		ready(key, value)
		if key == "stdout" {
			cancel()
		}
	}
	require.NoError(t, c.RunCommand(ctx, "b", cmd), "the command completed after the interrupt")
	assert.Equal(t, -1, cmd.RC)
	assert.Contains(t, r.Text("header"), "command interrupted, attempting to kill\nprocess killed by signal 9\n")
}

func TestConn_Close(t *testing.T) {
	c, err := local.NewConn("w1", t.TempDir())
	require.NoError(t, err)
	require.NoError(t, c.SetBuilders(t.Context(), []ci.BuilderDir{{Builder: "b", Dir: "b"}}))
	cmd, r := newCommand("shell", map[string]any{"workdir": "build", "command": "echo $$; exec sleep 60", "logEnviron": false})
	started := make(chan struct{})
	record := cmd.OnUpdate
	cmd.OnUpdate = func(key string, value any) {
		record(key, value)
		if key == "stdout" {
			close(started)
		}
	}
	result := make(chan error, 1)
	go func() { result <- c.RunCommand(t.Context(), "b", cmd) }()
	<-started
	require.NoError(t, c.Close())
	err = <-result
	require.ErrorIs(t, err, ci.ErrWorkerLost)
	pid, err := strconv.Atoi(strings.TrimSpace(r.Text("stdout")))
	require.NoError(t, err)
	// Close returned once the command's process was gone.
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH)

	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed")
	}
	require.ErrorIs(t, c.Ping(t.Context()), ci.ErrWorkerLost)
	cmd2, _ := newCommand("shell", map[string]any{"workdir": "build", "command": "true"})
	require.ErrorIs(t, c.RunCommand(t.Context(), "b", cmd2), ci.ErrWorkerLost)
	require.NoError(t, c.Close(), "Close twice")
}

func TestConn_FileCommands(t *testing.T) {
	c := MustConn(t)
	bdir := filepath.Join(c.Dir(), "b")
	run := func(name string, args map[string]any) (*ci.RemoteCommand, *recorder) {
		t.Helper()
		cmd, r := newCommand(name, args)
		require.NoError(t, c.RunCommand(t.Context(), "b", cmd))
		return cmd, r
	}
	cmd, _ := run("mkdir", map[string]any{"dir": "build/sub"})
	assert.Equal(t, 0, cmd.RC)
	assert.DirExists(t, filepath.Join(bdir, "build", "sub"))
	require.NoError(t, os.WriteFile(filepath.Join(bdir, "build", "f.txt"), []byte("hello"), 0o644))

	cmd, _ = run("listdir", map[string]any{"dir": "build"})
	assert.Equal(t, []string{"f.txt", "sub"}, cmd.Updates["files"])

	cmd, _ = run("glob", map[string]any{"path": "build/*.txt"})
	assert.Equal(t, []string{filepath.Join(bdir, "build", "f.txt")}, cmd.Updates["files"])

	cmd, _ = run("stat", map[string]any{"file": "f.txt", "workdir": "build"})
	st := cmd.Updates["stat"].([]int64)
	assert.Equal(t, int64(5), st[6])

	cmd, _ = run("cpdir", map[string]any{"fromdir": "build", "todir": "copy"})
	assert.Equal(t, 0, cmd.RC)
	assert.FileExists(t, filepath.Join(bdir, "copy", "f.txt"))

	cmd, _ = run("rmfile", map[string]any{"path": "copy/f.txt"})
	assert.Equal(t, 0, cmd.RC)
	assert.NoFileExists(t, filepath.Join(bdir, "copy", "f.txt"))

	cmd, r := run("rmfile", map[string]any{"path": "copy/f.txt"})
	assert.Equal(t, 2, cmd.RC)
	assert.Equal(t, "rmfile: No such file or directory: "+filepath.Join(bdir, "copy", "f.txt")+"\n", r.Text("header"))

	cmd, _ = run("rmdir", map[string]any{"dir": []any{"copy", "build"}})
	assert.Equal(t, 0, cmd.RC)
	assert.NoDirExists(t, filepath.Join(bdir, "copy"))
	assert.NoDirExists(t, filepath.Join(bdir, "build"))
}

// fileWriter is an in-memory ci.FileWriter recording what it is asked.
type fileWriter struct {
	bytes.Buffer
	ops []string
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	w.ops = append(w.ops, "write")
	if w.err != nil {
		return 0, w.err
	}
	return w.Buffer.Write(p)
}

func (w *fileWriter) Utime(access, modified time.Time) error {
	w.ops = append(w.ops, "utime "+modified.UTC().Format(time.DateOnly))
	return nil
}
func (w *fileWriter) Unpack() error { w.ops = append(w.ops, "unpack"); return nil }
func (w *fileWriter) Close() error  { w.ops = append(w.ops, "close"); return nil }

var _ ci.FileWriter = (*fileWriter)(nil)

func TestConn_Upload(t *testing.T) {
	c := MustConn(t)
	build := filepath.Join(c.Dir(), "b", "build")
	require.NoError(t, os.MkdirAll(filepath.Join(build, "out"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(build, "out", "a.txt"), []byte("0123456789"), 0o644))
	stamp := time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(filepath.Join(build, "out", "a.txt"), stamp, stamp))

	t.Run("file", func(t *testing.T) {
		w := &fileWriter{}
		cmd, r := newCommand("uploadFile", map[string]any{
			"workdir": "build", "workersrc": "out/a.txt", "maxsize": nil, "blocksize": 4, "keepstamp": true,
		})
		cmd.Upload = w
		require.NoError(t, c.RunCommand(t.Context(), "b", cmd))
		assert.Equal(t, 0, cmd.RC)
		assert.Equal(t, "0123456789", w.String())
		assert.Equal(t, []string{"write", "write", "write", "close", "utime 2020-01-02"}, w.ops)
		assert.Equal(t, "sending "+filepath.Join(build, "out", "a.txt")+"\n", r.Text("header"))
	})
	t.Run("directory", func(t *testing.T) {
		w := &fileWriter{}
		cmd, _ := newCommand("uploadDirectory", map[string]any{
			"workdir": "build", "workersrc": "out", "maxsize": nil, "blocksize": 16384, "compress": nil,
		})
		cmd.Upload = w
		require.NoError(t, c.RunCommand(t.Context(), "b", cmd))
		assert.Equal(t, 0, cmd.RC)
		assert.Equal(t, "unpack", w.ops[len(w.ops)-1])
		tr := tar.NewReader(&w.Buffer)
		var names []string
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			names = append(names, hdr.Name)
		}
		assert.Equal(t, []string{"", "a.txt"}, names)
	})
	t.Run("master refuses", func(t *testing.T) {
		w := &fileWriter{err: errors.New("disk full")}
		cmd, _ := newCommand("uploadFile", map[string]any{
			"workdir": "build", "workersrc": "out/a.txt", "maxsize": nil, "blocksize": 4, "keepstamp": false,
		})
		cmd.Upload = w
		err := c.RunCommand(t.Context(), "b", cmd)
		var ce *ci.CommandError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "uploadFile", ce.Command)
		assert.Contains(t, ce.Message, "disk full")
		assert.Equal(t, 1, cmd.RC)
	})
	t.Run("outside", func(t *testing.T) {
		cmd, _ := newCommand("uploadFile", map[string]any{
			"workdir": "build", "workersrc": "../../../../etc/passwd", "maxsize": nil, "blocksize": 4, "keepstamp": false,
		})
		cmd.Upload = &fileWriter{}
		err := c.RunCommand(t.Context(), "b", cmd)
		var ce *ci.CommandError
		require.ErrorAs(t, err, &ce)
		assert.Contains(t, ce.Message, "outside the worker's base folder")
	})
}

// readCloser is an in-memory download recording whether it was closed.
type readCloser struct {
	io.Reader
	closed bool
}

func (r *readCloser) Close() error { r.closed = true; return nil }

func TestConn_Download(t *testing.T) {
	c := MustConn(t)
	src := &readCloser{Reader: strings.NewReader("downloaded content")}
	cmd, _ := newCommand("downloadFile", map[string]any{
		"workdir": "build", "workerdest": "conf/x.cfg", "maxsize": nil, "blocksize": 5, "mode": 0o600,
	})
	cmd.Download = src
	require.NoError(t, c.RunCommand(t.Context(), "b", cmd))
	assert.Equal(t, 0, cmd.RC)
	assert.True(t, src.closed)
	p := filepath.Join(c.Dir(), "b", "build", "conf", "x.cfg")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "downloaded content", string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode())
}

func TestConn_CommandErrors(t *testing.T) {
	c := MustConn(t)
	t.Run("unknown command", func(t *testing.T) {
		cmd, _ := newCommand("frobnicate", map[string]any{})
		err := c.RunCommand(t.Context(), "b", cmd)
		var ce *ci.CommandError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "unrecognized WorkerCommand 'frobnicate'", ce.Message)
	})
	t.Run("missing argument", func(t *testing.T) {
		cmd, _ := newCommand("shell", map[string]any{"command": "true"})
		err := c.RunCommand(t.Context(), "b", cmd)
		require.EqualError(t, err, `local worker w1: shell: missing argument "workdir"`)
	})
	t.Run("no writer", func(t *testing.T) {
		require.NoError(t, os.MkdirAll(filepath.Join(c.Dir(), "b", "build"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(c.Dir(), "b", "build", "f"), []byte("x"), 0o644))
		cmd, _ := newCommand("uploadFile", map[string]any{"workdir": "build", "workersrc": "f", "maxsize": nil, "blocksize": 4})
		err := c.RunCommand(t.Context(), "b", cmd)
		require.ErrorContains(t, err, "the master has no writer for this upload")
	})
}

func TestConn_Concurrent(t *testing.T) {
	c := MustConn(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			cmd, r := newCommand("shell", map[string]any{"workdir": fmt.Sprintf("w%d", i), "command": []any{"echo", strconv.Itoa(i)}})
			assert.NoError(t, c.RunCommand(t.Context(), "b", cmd))
			assert.Equal(t, strconv.Itoa(i)+"\n", r.Text("stdout"))
			assert.Equal(t, 0, cmd.RC)
		})
	}
	wg.Wait()
}

// BenchmarkConn_RunCommand measures RunCommand of a shell command as a
// stock master sends it (environment in the header, 1200 s timeout), and
// of a command that starts no process. BenchmarkExec gives the cost of
// starting the same process with os/exec alone, for comparison: the
// difference is the worker's own overhead.
func BenchmarkConn_RunCommand(b *testing.B) {
	benchmarks := []struct {
		name    string
		command []any
		lines   int
	}{
		{"true", []any{"true"}, 0},
		{"1000 lines", []any{"seq", "-f", "line %g of the output of the benchmark command", "1000"}, 1000},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			c := MustConn(b)
			args := map[string]any{
				"workdir": "build", "command": bm.command, "env": map[string]any{},
				"want_stdout": true, "want_stderr": true, "logfiles": map[string]any{},
				"timeout": 1200, "maxTime": nil, "sigtermTime": nil, "usePTY": false,
				"logEnviron": true, "initial_stdin": nil, "interruptSignal": "KILL",
			}
			b.ReportAllocs()
			for b.Loop() {
				lines := 0
				cmd := &ci.RemoteCommand{Name: "shell", Args: args, RC: -1}
				cmd.OnUpdate = func(key string, value any) {
					if key == "stdout" {
						lines += strings.Count(value.(string), "\n")
					}
				}
				if err := c.RunCommand(context.Background(), "b", cmd); err != nil {
					b.Fatal(err)
				}
				if cmd.RC != 0 || lines != bm.lines {
					b.Fatalf("rc %d, %d lines", cmd.RC, lines)
				}
			}
		})
	}
	b.Run("mkdir", func(b *testing.B) {
		c := MustConn(b)
		b.ReportAllocs()
		for b.Loop() {
			cmd := &ci.RemoteCommand{Name: "mkdir", Args: map[string]any{"dir": "build"}, RC: -1}
			if err := c.RunCommand(context.Background(), "b", cmd); err != nil || cmd.RC != 0 {
				b.Fatal(err, cmd.RC)
			}
		}
	})
}

// BenchmarkExec starts true with os/exec, its output in pipes and in its
// own process group: the part of BenchmarkConn_RunCommand/true that is
// the system's.
func BenchmarkExec(b *testing.B) {
	for b.Loop() {
		cmd := exec.Command("true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
