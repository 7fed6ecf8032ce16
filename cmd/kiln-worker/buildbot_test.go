//go:build unix

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/kilnci/kiln/internal/testenv"
)

// The master of TestBuildbotMaster: one worker, one builder whose steps
// cover output on both streams, a log file, a failing rc, uploads of a
// file and a folder, and a download. A Periodic scheduler starts a build
// as soon as the master runs (its first actuation is "as soon as
// possible"), so no web UI is needed. The last step writes to a FIFO the
// test reads: the build is then about to finish.
const interopMasterCfg = `# -*- python -*-
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {}
c['title'] = 'kiln-worker interop'
c['buildbotURL'] = 'http://localhost/'
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['logCompressionMethod'] = 'raw'
c['workers'] = [worker.Worker('kw', 'secret pass')]
# msgpack takes a port number only, and listens on every interface.
c['protocols'] = {'msgpack_experimental_v7': {'port': {{.Port}}}}
c['schedulers'] = [schedulers.Periodic(name='now', builderNames=['interop'], periodicBuildTimer=24 * 3600)]

f = util.BuildFactory()
f.addStep(steps.ShellCommand(name='fail', logfiles={'mylog': 'my.log'},
    command=['sh', '-c', 'echo out-line; echo err-line >&2; echo log-line > my.log; exit 3']))
f.addStep(steps.ShellCommand(name='make',
    command=['sh', '-c', 'echo uploaded content > up.txt; mkdir -p dist/sub; echo A > dist/a.txt; echo B > dist/sub/b.txt']))
f.addStep(steps.FileUpload(name='upload', workersrc='up.txt', masterdest={{.Uploaded}}))
f.addStep(steps.DirectoryUpload(name='upload-dir', workersrc='dist', masterdest={{.UploadedDir}}))
f.addStep(steps.FileDownload(name='download', mastersrc={{.ToSend}}, workerdest='down.txt', mode=0o640))
f.addStep(steps.ShellCommand(name='last', env={'FIFO': {{.FIFO}}},
    command=['sh', '-c', 'cat down.txt && echo done > "$FIFO"']))
c['builders'] = [util.BuilderConfig(name='interop', workernames=['kw'], factory=f)]
`

// TestBuildbotMaster runs the kiln-worker binary against a stock Buildbot
// master (Debian's buildbot 3.7) and checks what the master recorded of a
// build in its own database, and the files transferred both ways.
func TestBuildbotMaster(t *testing.T) {
	buildbot := testenv.NeedTool(t, "buildbot")
	bin := buildBinary(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	masterDir := filepath.Join(dir, "master")
	out, err := exec.CommandContext(ctx, buildbot, "create-master", "-q", "-n", masterDir).CombinedOutput()
	require.NoError(t, err, "buildbot create-master:\n%s", out)
	p := struct {
		Port                                int
		Uploaded, UploadedDir, ToSend, FIFO string
	}{
		Port:        freePort(t),
		Uploaded:    filepath.Join(dir, "uploaded.txt"),
		UploadedDir: filepath.Join(dir, "uploaded-dir"),
		ToSend:      filepath.Join(dir, "to-send.txt"),
		FIFO:        filepath.Join(dir, "done.fifo"),
	}
	require.NoError(t, os.WriteFile(p.ToSend, []byte("sent content\n"), 0o644))
	require.NoError(t, syscall.Mkfifo(p.FIFO, 0o600))
	var cfg bytes.Buffer
	require.NoError(t, template.Must(template.New("").Parse(interopMasterCfg)).Execute(&cfg, pyStrings(p)))
	require.NoError(t, os.WriteFile(filepath.Join(masterDir, "master.cfg"), cfg.Bytes(), 0o644))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(masterDir, "twistd.log"))
			t.Logf("master's twistd.log:\n%s", b)
		}
	})

	// The FIFO's reader: the build's last step writes to it.
	lastStep := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(p.FIFO) // blocks until the step writes
		lastStep <- string(b)
	}()
	t.Cleanup(func() { // release the reader if the step never came
		if f, err := os.OpenFile(p.FIFO, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})

	master := exec.Command(buildbot, "start", "--nodaemon", masterDir)
	master.Stdout, master.Stderr = testWriter{t}, testWriter{t}
	require.NoError(t, master.Start())
	masterDone := waitProcess(t, master)

	workerDir := filepath.Join(dir, "worker")
	out, err = exec.CommandContext(ctx, bin, "create-worker", "-r", "--maxdelay", "1", workerDir, fmt.Sprintf("127.0.0.1:%d", p.Port), "kw", "secret pass").CombinedOutput()
	require.NoError(t, err, "kiln-worker create-worker:\n%s", out)
	wk := exec.Command(bin, "start", "--nodaemon", workerDir)
	attached := make(chan struct{})
	wk.Stderr = &logWatcher{t: t, want: "attached to master", found: attached}
	require.NoError(t, wk.Start())
	workerDone := waitProcess(t, wk)

	select {
	case <-attached:
	case err := <-masterDone:
		t.Fatalf("the master stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("the worker did not attach")
	}
	select {
	case s := <-lastStep:
		assert.Equal(t, "done\n", s)
	case err := <-masterDone:
		t.Fatalf("the master stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("the build did not reach its last step")
	}
	if rss, err := vmRSS(wk.Process.Pid); assert.NoError(t, err) {
		t.Logf("kiln-worker RSS after attaching and running a build: %d KiB", rss)
	}

	// A clean shutdown of the master waits for the build to finish.
	require.NoError(t, master.Process.Signal(syscall.SIGUSR1))
	select {
	case err := <-masterDone:
		require.NoError(t, err, "the master's clean shutdown")
	case <-ctx.Done():
		t.Fatal("the master did not shut down")
	}
	require.NoError(t, wk.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-workerDone:
		assert.NoError(t, err, "kiln-worker exits with status 0 on SIGTERM")
	case <-ctx.Done():
		t.Fatal("kiln-worker did not stop on SIGTERM")
	}

	// What the master recorded.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(masterDir, "state.sqlite")+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var buildID, results int
	var complete sql.NullInt64
	require.NoError(t, db.QueryRow(`SELECT id, results, complete_at FROM builds`).Scan(&buildID, &results, &complete))
	assert.Equal(t, 2, results, "the build failed (FAILURE) because of its first step")
	assert.True(t, complete.Valid, "the build is complete")

	steps := map[string]int{}
	var order []string
	rows, err := db.Query(`SELECT name, results FROM steps WHERE buildid = ? ORDER BY number`, buildID)
	require.NoError(t, err)
	for rows.Next() {
		var name string
		var res int
		require.NoError(t, rows.Scan(&name, &res))
		steps[name] = res
		order = append(order, name)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{"worker_preparation", "fail", "make", "upload", "upload-dir", "download", "last"}, order)
	assert.Equal(t, map[string]int{"worker_preparation": 0, "fail": 2, "make": 0, "upload": 0, "upload-dir": 0, "download": 0, "last": 0}, steps)

	stdio := logText(t, db, buildID, "fail", "stdio")
	assert.Contains(t, stdio, "oout-line\n")
	assert.Contains(t, stdio, "eerr-line\n")
	assert.Contains(t, stdio, "h watching logfiles {'mylog': 'my.log'}\n")
	assert.Contains(t, stdio, "hprogram finished with exit code 3")
	assert.Equal(t, "olog-line", logText(t, db, buildID, "fail", "mylog"))
	assert.Contains(t, logText(t, db, buildID, "last", "stdio"), "hprogram finished with exit code 0")

	// The files transferred.
	b, err := os.ReadFile(p.Uploaded)
	require.NoError(t, err)
	assert.Equal(t, "uploaded content\n", string(b))
	b, err = os.ReadFile(filepath.Join(p.UploadedDir, "sub", "b.txt"))
	require.NoError(t, err)
	assert.Equal(t, "B\n", string(b))
	// Buildbot 3.7's master answers update_read_file without the data it
	// read (its msgpack call_update_read_file drops remote_read's result),
	// so a download over msgpack writes an empty file, whatever the
	// worker; a stock buildbot-worker does the same.
	down := filepath.Join(workerDir, "interop", "build", "down.txt")
	b, err = os.ReadFile(down)
	require.NoError(t, err)
	assert.Empty(t, string(b))
	fi, err := os.Stat(down)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}

// pyStrings returns p with its strings as Python literals (JSON's are).
func pyStrings(p any) map[string]any {
	b, _ := json.Marshal(p)
	var m map[string]any
	json.Unmarshal(b, &m)
	for k, v := range m {
		if s, ok := v.(string); ok {
			q, _ := json.Marshal(s)
			m[k] = string(q)
		}
	}
	return m
}

// logText returns the text Buildbot stored of a step's log.
func logText(t *testing.T, db *sql.DB, buildID int, step, log string) string {
	t.Helper()
	rows, err := db.Query(`SELECT c.content FROM logchunks c
		JOIN logs l ON l.id = c.logid JOIN steps s ON s.id = l.stepid
		WHERE s.buildid = ? AND s.name = ? AND l.name = ? ORDER BY c.first_line`, buildID, step, log)
	require.NoError(t, err)
	defer rows.Close()
	var b strings.Builder
	n := 0
	for rows.Next() {
		var chunk []byte
		require.NoError(t, rows.Scan(&chunk))
		if n > 0 {
			b.WriteByte('\n')
		}
		b.Write(chunk)
		n++
	}
	require.NoError(t, rows.Err())
	require.NotZero(t, n, "no log %s of step %s", log, step)
	return b.String()
}
