//go:build unix

package multimaster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// waitTimeout bounds each wait of the test: a master's start, a worker's
// attachment, the end of the load. None is a measure.
const waitTimeout = 3 * time.Minute

// githubSecret is the GitHub hooks' secret.
const githubSecret = "hook-secret-9Yt"

// buildPrograms builds the master and kiln-worker programs into dir.
func buildPrograms(t *testing.T, dir string) (master, worker string) {
	t.Helper()
	master, worker = filepath.Join(dir, "clustermaster"), filepath.Join(dir, "kiln-worker")
	for out, pkg := range map[string]string{
		master: "github.com/kilnci/kiln/internal/cmd/clustermaster",
		worker: "github.com/kilnci/kiln/cmd/kiln-worker",
	} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "build %s: %s", pkg, b)
	}
	return master, worker
}

// A master is a running clustermaster process.
type master struct {
	name       string
	http       string // base URL of its web server, with a final /
	workerAddr string
	logPath    string
	cmd        *exec.Cmd
	done       chan struct{}
	dead       atomic.Bool // killed by the test
}

// masterArgs are the flags every master gets, but for -dir and -name.
type masterArgs []string

// startMaster starts a master named name and waits for its ready line.
func startMaster(t *testing.T, prog, dir, name, dbURL string, args masterArgs) *master {
	t.Helper()
	m := &master{name: name, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	log, err := os.Create(m.logPath)
	require.NoError(t, err)
	defer log.Close()
	m.cmd = exec.Command(prog, append([]string{"-dir", filepath.Join(dir, name), "-name", name}, args...)...)
	m.cmd.Env = append(os.Environ(), "KILN_DATABASE="+dbURL, "KILN_GITHUB_SECRET="+githubSecret)
	m.cmd.Stderr = log
	out, err := m.cmd.StdoutPipe()
	require.NoError(t, err)
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, m.cmd.Start())
	ready := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		ready <- line
		io.Copy(io.Discard, r)
		m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		m.kill()
		if t.Failed() {
			b, _ := os.ReadFile(m.logPath)
			t.Logf("master %s's log (last 4,000 bytes):\n%s", name, tail(b, 4000))
		}
	})
	select {
	case line := <-ready:
		var workers, httpAddr string
		if _, err := fmt.Sscanf(line, "ready name="+name+" workers=%s http=%s", &workers, &httpAddr); err != nil {
			b, _ := os.ReadFile(m.logPath)
			t.Fatalf("master %s did not start (%q): %s", name, line, b)
		}
		m.workerAddr, m.http = workers, "http://"+httpAddr+"/"
	case <-time.After(waitTimeout):
		t.Fatalf("master %s did not print its ready line within %v", name, waitTimeout)
	}
	return m
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// kill sends SIGKILL to the master's process group and waits for its end.
func (m *master) kill() {
	m.dead.Store(true)
	syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
}

// stop sends SIGTERM and waits for the master to end, at most
// waitTimeout; it reports whether it ended of itself.
func (m *master) stop() bool {
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		return true
	case <-time.After(waitTimeout):
		m.kill()
		return false
	}
}

// A workerSpec says which worker runs where.
type workerSpec struct {
	name   string
	kind   string // "kiln-worker" or "buildbot-worker"
	master string
}

// startWorker creates and starts a worker attached to m; it is killed
// when the test ends.
func startWorker(t *testing.T, kilnWorker, dir string, w workerSpec, m *master) {
	t.Helper()
	wdir := filepath.Join(dir, w.name)
	var create, start *exec.Cmd
	switch w.kind {
	case "kiln-worker":
		create = exec.Command(kilnWorker, "create-worker", wdir, m.workerAddr, w.name, "pass")
		start = exec.Command(kilnWorker, "start", wdir)
	default:
		create = exec.Command("buildbot-worker", "create-worker", "--quiet", "--protocol", "msgpack_experimental_v7", wdir, m.workerAddr, w.name, "pass")
		start = exec.Command("buildbot-worker", "start", "--nodaemon", wdir)
	}
	out, err := create.CombinedOutput()
	require.NoError(t, err, "%s create-worker %s: %s", w.kind, w.name, out)
	log, err := os.Create(filepath.Join(dir, w.name+".log"))
	require.NoError(t, err)
	defer log.Close()
	start.Stdout, start.Stderr = log, log
	start.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, start.Start())
	done := make(chan struct{})
	go func() {
		start.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-start.Process.Pid, syscall.SIGKILL)
		<-done
	})
}

// db is the test's own connection to the masters' database. Its
// transactions are counted, to be taken out of the database's figures.
type db struct {
	conn  *pgx.Conn
	mu    sync.Mutex
	xacts int
}

func (d *db) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.xacts++
	return d.conn.QueryRow(ctx, sql, args...)
}

// each runs sql and calls scan for each row.
func (d *db) each(ctx context.Context, sql string, args []any, scan func(pgx.Rows) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.xacts++
	rows, err := d.conn.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (d *db) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, d.queryRow(t.Context(), sql, args...).Scan(&n), "%s", sql)
	return n
}

// waitFor polls cond every 100ms until it holds, or fails the test with
// what() after timeout.
func waitFor(t *testing.T, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dbStats are the database's counters in pg_stat_database.
type dbStats struct {
	xacts, inserted, updated, deleted int64
}

func (d *db) stats(t *testing.T) dbStats {
	t.Helper()
	var s dbStats
	require.NoError(t, d.queryRow(t.Context(), `SELECT xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.xacts, &s.inserted, &s.updated, &s.deleted))
	return s
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// httpClient bounds every call to a master.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// notReached reports whether err says the request never reached the
// master (so that sending it elsewhere cannot make it twice).
func notReached(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// post sends body to url and returns the status and the answer.
func post(url string, header http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = header
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
