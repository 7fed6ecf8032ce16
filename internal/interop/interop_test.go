//go:build unix

package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/testenv"
	"github.com/kilnci/kiln/worker/remote"
)

// waitTimeout bounds every wait.
const waitTimeout = 2 * time.Minute

// kilnWorker is the kiln-worker binary built for the tests.
var kilnWorker string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kilnWorker = filepath.Join(dir, "kiln-worker")
	cmd := exec.Command("go", "build", "-o", kilnWorker, "github.com/kilnci/kiln/cmd/kiln-worker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build kiln-worker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A workerKind makes and runs one kind of worker process.
type workerKind struct {
	name string
	// create makes the worker's folder for a master at addr.
	create func(tb testing.TB, dir, addr, name, password string)
	// start returns the command that runs it in the foreground.
	start func(dir string) *exec.Cmd
}

var kinds = []workerKind{
	{
		name: "kiln-worker",
		create: func(tb testing.TB, dir, addr, name, password string) {
			out, err := exec.Command(kilnWorker, "create-worker", dir, addr, name, password).CombinedOutput()
			require.NoError(tb, err, "create-worker: %s", out)
		},
		start: func(dir string) *exec.Cmd { return exec.Command(kilnWorker, "start", dir) },
	},
	{
		name: "buildbot-worker",
		create: func(tb testing.TB, dir, addr, name, password string) {
			testenv.NeedTool(tb, "buildbot-worker")
			testenv.SkipIfShort(tb, "starts Buildbot's worker")
			out, err := exec.Command("buildbot-worker", "create-worker", "--quiet", "--protocol", "msgpack_experimental_v7", dir, addr, name, password).CombinedOutput()
			require.NoError(tb, err, "create-worker: %s", out)
		},
		start: func(dir string) *exec.Cmd { return exec.Command("buildbot-worker", "start", "--nodaemon", dir) },
	},
}

// proc is a worker process.
type proc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

// run creates and starts a worker of kind k, with info files of its own,
// and stops it (SIGKILL to its group) when the test ends.
func run(tb testing.TB, k workerKind, addr, name, password string) (*proc, string) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), name)
	k.create(tb, dir, addr, name, password)
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "info", "admin"), []byte("Kiln Tests <tests@kiln.invalid>\n"), 0o644))
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "info", "host"), []byte(k.name+" on loopback\n"), 0o644))
	p := &proc{cmd: k.start(dir), done: make(chan struct{})}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	require.NoError(tb, p.cmd.Start())
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if tb.Failed() {
			tb.Logf("%s output:\n%s", k.name, p.out.String())
			if log, err := os.ReadFile(filepath.Join(dir, "twistd.log")); err == nil {
				tb.Logf("twistd.log:\n%s", log)
			}
		}
	})
	return p, dir
}

// stop sends SIGTERM to the worker and waits for it to exit.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// startMaster starts a master with a worker listener on 127.0.0.1.
func startMaster(tb testing.TB, cfg ci.MasterConfig) (*citest.Master, *remote.Listener, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	l := &remote.Listener{Listener: ln, Timeout: 20 * time.Second}
	cfg.Services = append(cfg.Services, l)
	m := citest.Start(tb, cfg, citest.Options{NoWorkers: true, LogLevel: slog.LevelError})
	return m, l, ln.Addr().String()
}

func connected(m *citest.Master, name string) bool {
	for _, w := range m.Workers() {
		if w.Name == name {
			return w.Connected
		}
	}
	return false
}

// waitFile waits until a file has a whole line, and returns it.
func waitFile(tb testing.TB, path string) string {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// TestWorkers runs the same build on each kind of worker: a shell command
// with output and a failure, every file transfer, folder commands and an
// interrupted command, and checks the same records.
func TestWorkers(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { testBuild(t, k) })
	}
}

func testBuild(t *testing.T, k workerKind) {
	masterDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(masterDir, "conf.txt"), []byte("configuration\nfrom the master\n"), 0o644))
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret pass"), bcrypt.MinCost)
	require.NoError(t, err)
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1", Password: string(hash)}},
		Builders: []ci.BuilderConfig{
			{
				Name:    "steps",
				Workers: []string{"w1"},
				Steps: []ci.Step{
					&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "fail"}, Command: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}},
					&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "prepare"}, Command: "mkdir -p out/sub && printf 'payload\\n' > out/a.txt && printf 'deep\\n' > out/sub/b.txt && printf 'single file\\n' > single.txt"},
					&steps.FileUpload{WorkerSrc: "single.txt", MasterDest: filepath.Join(masterDir, "single.txt")},
					&steps.FileDownload{MasterSrc: filepath.Join(masterDir, "conf.txt"), WorkerDest: "got/conf.txt", Mode: 0o750},
					&steps.DirectoryUpload{StepOptions: ci.StepOptions{Name: "dirupload"}, WorkerSrc: "out", MasterDest: filepath.Join(masterDir, "out"), Compress: "gz"},
					&steps.MakeDirectory{Dir: "build/newdir"},
					&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "made"}, Command: []string{"test", "-d", "newdir"}},
					&steps.RemoveDirectory{Dir: "build/newdir"},
					&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "removed"}, Command: []string{"test", "!", "-e", "newdir"}},
					&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "report"}, Command: []string{"sh", "-c", `printf '%s' "$1" > report.xml`, "sh",
						`<testsuite><testcase classname="calc" name="TestAdd" time="0.5"/><testcase classname="calc" name="TestSkip"><skipped/></testcase></testsuite>`}},
					&steps.JUnit{Reports: "report.xml"},
				},
			},
			{Name: "long", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "long"}, Command: []string{"sh", "-c", "echo $$ > pid; exec sleep 300"}}}},
		},
	}
	m, _, addr := startMaster(t, cfg)
	p, dir := run(t, k, addr, "w1", "s3cret pass")
	m.WaitFor(t, "the worker to attach", func() bool { return connected(m, "w1") })
	wc, ok := m.WorkerConn("w1")
	require.True(t, ok)
	conn := wc.(*remote.Conn)
	assert.Equal(t, dir, conn.Info().Basedir())
	assert.Equal(t, "posix", conn.Info().System())
	assert.NotEmpty(t, conn.Info().Environ()["PATH"])

	ctx := context.Background()
	ws, err := m.Store.ListWorkers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	assert.True(t, ws[0].Connected)
	assert.Equal(t, "Kiln Tests <tests@kiln.invalid>\n", ws[0].Info["admin"])
	assert.Equal(t, k.name+" on loopback\n", ws[0].Info["host"])
	assert.Equal(t, dir, ws[0].Info["basedir"])
	assert.NotContains(t, ws[0].Info, "environ")

	b := m.Build(t, citest.Request{Builder: "steps"})
	assert.Equal(t, ci.Failure, b.Results())
	assert.Equal(t, map[string]ci.Result{
		"fail": ci.Failure, "prepare": ci.Success, "upload": ci.Success, "download": ci.Success,
		"dirupload": ci.Success, "MakeDirectory": ci.Success, "made": ci.Success,
		"RemoveDirectory": ci.Success, "removed": ci.Success, "report": ci.Success, "junit": ci.Success,
	}, b.StepResults())
	// The JUnit report was read from the worker and its tests recorded.
	assert.Equal(t, "1 passed, 1 skipped", b.Step("junit").StateString)
	sets, _, err := m.Store.ListTestResultSets(ctx, ci.TestResultSetQuery{StepID: b.Step("junit").ID})
	require.NoError(t, err)
	require.Len(t, sets, 1)
	results, _, err := m.Store.ListTestResults(ctx, sets[0].ID, ci.Query{})
	require.NoError(t, err)
	require.Len(t, results, 1)
	assert.Equal(t, "calc.TestAdd", results[0].TestName)
	assert.Equal(t, "1", results[0].Value)
	assert.Equal(t, "out\n", citest.Output(b.LogLines("fail", "stdio"), "o"))
	assert.Equal(t, "err\n", citest.Output(b.LogLines("fail", "stdio"), "e"))
	header := b.Header("fail", "stdio")
	assert.Contains(t, header, "sh -c 'echo out; echo err >&2; exit 3'")
	assert.Contains(t, header, "in dir "+filepath.Join(dir, "steps", "build"))

	got, err := os.ReadFile(filepath.Join(masterDir, "single.txt"))
	require.NoError(t, err)
	assert.Equal(t, "single file\n", string(got))
	dest := filepath.Join(dir, "steps", "build", "got", "conf.txt")
	got, err = os.ReadFile(dest)
	require.NoError(t, err)
	assert.Equal(t, "configuration\nfrom the master\n", string(got))
	st, err := os.Stat(dest)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o750), st.Mode().Perm())
	for f, want := range map[string]string{"out/a.txt": "payload\n", "out/sub/b.txt": "deep\n"} {
		got, err := os.ReadFile(filepath.Join(masterDir, f))
		require.NoError(t, err, f)
		assert.Equal(t, want, string(got), f)
	}

	// An interrupted command: the build is cancelled and its process gone.
	bs := m.Submit(t, citest.Request{Builder: "long"})
	id := m.WaitRunning(t, "long")
	pid, err := strconv.Atoi(strings.TrimSpace(waitFile(t, filepath.Join(dir, "long", "build", "pid"))))
	require.NoError(t, err)
	require.NoError(t, m.StopBuild(ctx, id, "test stops it"))
	assert.Equal(t, ci.Cancelled, m.WaitBuild(t, id).Results())
	m.WaitFor(t, "the interrupted process to end", func() bool { return !alive(pid) })
	m.WaitBuildset(t, bs)
	assert.Zero(t, conn.Stats().UnknownCommands, "no message arrives for a finished command")

	// Stopped, the worker is recorded disconnected.
	p.stop()
	m.WaitFor(t, "the worker to be recorded disconnected", func() bool {
		ws, err := m.Store.ListWorkers(ctx)
		require.NoError(t, err)
		return !ws[0].Connected
	})
	<-conn.Done()
	assert.ErrorIs(t, conn.Err(), ci.ErrWorkerLost)
}

// TestWorkers_WrongPassword: a worker with a wrong password is refused and
// never attached, and the password appears in no log.
func TestWorkers_WrongPassword(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := ci.MasterConfig{
				Workers:  []ci.WorkerConfig{{Name: "w1", Password: "right"}},
				Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{Command: "true"}}}},
			}
			var logs testenv.SyncBuffer
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			m, l, addr := startMaster(t, cfg)
			p, _ := run(t, k, addr, "w1", "wrong-password-42")
			// The worker is refused, and tries again.
			m.WaitFor(t, "two refused logins", func() bool { return l.Stats().AuthFailures >= 2 })
			assert.False(t, connected(m, "w1"))
			p.stop()
			assert.Contains(t, logs.String(), "w1")
			assert.NotContains(t, logs.String(), "wrong-password-42")
			assert.NotContains(t, p.out.String(), "wrong-password-42")
		})
	}
}

// TestWorkers_GracefulStop: a worker asked to stop (the API's stop on a
// worker) finishes its build, then the master sends it shutdown and the
// worker process ends, whichever kind it is.
func TestWorkers_GracefulStop(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			release := filepath.Join(t.TempDir(), "release")
			cfg := ci.MasterConfig{
				Workers: []ci.WorkerConfig{{Name: "w1", Password: "pass"}},
				Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{
					Command: []string{"sh", "-c", `while [ ! -e "$1" ]; do sleep 0.05; done; echo released`, "sh", release},
				}}}},
			}
			var logs testenv.SyncBuffer
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			m, _, addr := startMaster(t, cfg)
			p, _ := run(t, k, addr, "w1", "pass")
			m.WaitFor(t, "the worker to attach", func() bool { return connected(m, "w1") })
			bs := m.Submit(t, citest.Request{Builder: "b"})
			m.WaitRunning(t, "b")
			require.NoError(t, m.StopWorker("w1"))
			select {
			case <-p.done:
				t.Fatal("the worker stopped before its build ended")
			case <-time.After(200 * time.Millisecond):
			}
			require.NoError(t, os.WriteFile(release, nil, 0o644))
			b := m.WaitBuildset(t, bs)
			assert.Equal(t, ci.Success, b[0].Results())
			select {
			case <-p.done:
			case <-time.After(waitTimeout):
				t.Fatal("the worker process did not end after shutdown")
			}
			assert.Contains(t, logs.String(), `msg="worker stopped" worker=w1`)
			m.WaitFor(t, "the worker to be detached", func() bool { return !connected(m, "w1") })
		})
	}
}
