//go:build unix

package remote

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/internal/testenv"
)

// A stockWorker is Debian's buildbot-worker, created with the msgpack
// protocol and run as a subprocess.
type stockWorker struct {
	tb   testing.TB
	name string
	dir  string
	env  []string // added to the worker's environment

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// newStockWorker creates a stock worker's folder for a master at addr.
func newStockWorker(tb testing.TB, addr, name, password string, flags ...string) *stockWorker {
	tb.Helper()
	testenv.NeedTool(tb, "buildbot-worker")
	dir := filepath.Join(tb.TempDir(), name)
	args := append([]string{"create-worker", "--quiet", "--protocol", "msgpack_experimental_v7"}, flags...)
	out, err := exec.Command("buildbot-worker", append(args, dir, addr, name, password)...).CombinedOutput()
	require.NoError(tb, err, "create-worker: %s", out)
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "info", "admin"), []byte("Kiln Tests <tests@kiln.invalid>\n"), 0o644))
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "info", "host"), []byte("stock "+name+"\n"), 0o644))
	w := &stockWorker{tb: tb, name: name, dir: dir}
	tb.Cleanup(func() {
		w.kill(syscall.SIGKILL)
		if tb.Failed() {
			if log, err := os.ReadFile(filepath.Join(dir, "twistd.log")); err == nil {
				tb.Logf("twistd.log of %s:\n%s", name, tail(string(log), 200))
			}
		}
	})
	return w
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// start runs the worker in the foreground, in its own process group.
func (w *stockWorker) start() {
	w.tb.Helper()
	cmd := exec.Command("buildbot-worker", "start", "--nodaemon", w.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), w.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(w.tb, cmd.Start())
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	w.mu.Lock()
	w.cmd, w.done = cmd, done
	w.mu.Unlock()
}

// kill sends sig to the worker's whole process group and waits for the
// worker to exit.
func (w *stockWorker) kill(sig syscall.Signal) {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.cmd = nil
	w.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(waitTimeout):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// killWorkerOnly kills the worker process alone, leaving the commands it
// runs orphaned (as a crash of the worker would).
func (w *stockWorker) killWorkerOnly() {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// waitFile waits until a file exists and is not empty, and returns it.
func waitFile(tb testing.TB, path string) string {
	tb.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		select {
		case <-tick.C:
		case <-deadline:
			tb.Fatalf("timed out waiting for %s", path)
		}
	}
}

// A stock worker killed in the middle of a build: the build ends RETRY,
// and its request is built again when the worker comes back.
func TestStockWorker_KilledMidBuild(t *testing.T) {
	testenv.SkipIfShort(t, "starts Buildbot's worker twice")
	t.Parallel()
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "stock1", Password: "pw"}},
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"stock1"}, "sh", "-c",
			"if [ -e ../../marker ]; then echo second run; exit 0; fi; touch ../../marker; echo $$ > ../../pid; exec sleep 300")},
	}
	m := startMaster(t, cfg, &Listener{Timeout: 5 * time.Second})
	w := newStockWorker(t, m.addr, "stock1", "pw")
	w.start()
	m.waitAttached(t, "stock1")

	bs := m.Submit(t, citest.Request{Builder: "b"})
	first := m.WaitRunning(t, "b")
	pid, err := strconv.Atoi(strings.TrimSpace(waitFile(t, filepath.Join(w.dir, "pid"))))
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	w.killWorkerOnly()
	assert.Equal(t, ci.Retry, m.WaitBuild(t, first).Results())

	w.start()
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.NotEqual(t, first, builds[0].Record.ID)
	assert.Equal(t, "second run\n", builds[0].Log("sh", "stdio"))
}

// A stock worker started with --use-tls connects over wss:// and, idle,
// stays attached through the master's keepalives over several timeouts.
func TestStockWorker_TLSKeepalive(t *testing.T) {
	testenv.SkipIfShort(t, "starts Buildbot's worker")
	t.Parallel()
	certFile, keyFile, _ := selfSigned(t)
	cfg, clock := onFakeClock(ci.MasterConfig{
		Workers:  []ci.WorkerConfig{{Name: "stock1", Password: "pw"}},
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"stock1"}, "sh", "-c", "echo over tls")},
	})
	const keepalive = 200 * time.Millisecond
	m := startMaster(t, cfg, &Listener{CertFile: certFile, KeyFile: keyFile, Timeout: 2 * time.Second, KeepaliveInterval: keepalive})
	w := newStockWorker(t, m.addr, "stock1", "pw", "--use-tls")
	w.env = []string{"SSL_CERT_FILE=" + certFile} // the worker trusts the test's certificate
	w.start()
	conn := m.waitAttached(t, "stock1")

	// 20 keepalives span twice the timeout; the worker logs each one it
	// answers.
	for range 20 {
		m.tick(t, clock, conn, keepalive)
	}
	log := filepath.Join(w.dir, "twistd.log")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for {
		b, _ := os.ReadFile(log)
		if strings.Count(string(b), "Connection keepalive confirmed") >= 20 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the worker did not answer 20 keepalives")
		}
	}
	require.NoError(t, conn.Err())
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "over tls\n", b.Log("sh", "stdio"))
}
