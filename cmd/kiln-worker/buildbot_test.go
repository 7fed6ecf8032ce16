//go:build unix

package main

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
// cover a Git checkout (a clone, then an update of it), output on both
// streams, a log file, a failing rc, a property set from a command's
// output, uploads of a file and a folder, a download, a folder made and
// removed, and a command killed by its timeout. A Periodic scheduler
// starts a build as soon as the master runs (its first actuation is "as
// soon as possible"), so no web UI is needed. The last step, which runs
// whatever happened before it, writes to a FIFO the test reads: the build
// is then about to finish.
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
# listdir of a missing folder, git clone; then listdir, git clean, fetch, checkout.
f.addStep(steps.Git(name='git', repourl={{.Repo}}, mode='incremental'))
f.addStep(steps.Git(name='git-fresh', repourl={{.Repo}}, mode='full', method='fresh'))
f.addStep(steps.ShellCommand(name='fail', logfiles={'mylog': 'my.log'},
    command=['sh', '-c', 'echo out-line; echo err-line >&2; echo log-line > my.log; exit 3']))
f.addStep(steps.SetPropertyFromCommand(name='setprop', property='myprop',
    command=['sh', '-c', 'echo "  prop value  "; echo not-in-prop >&2']))
f.addStep(steps.ShellCommand(name='make',
    command=['sh', '-c', 'echo uploaded content > up.txt; mkdir -p dist/sub; echo A > dist/a.txt; echo B > dist/sub/b.txt']))
f.addStep(steps.FileUpload(name='upload', workersrc='up.txt', masterdest={{.Uploaded}}))
f.addStep(steps.DirectoryUpload(name='upload-dir', workersrc='dist', masterdest={{.UploadedDir}}))
f.addStep(steps.FileDownload(name='download', mastersrc={{.ToSend}}, workerdest='down.txt', mode=0o640))
# MakeDirectory and RemoveDirectory take paths from the builder's folder.
f.addStep(steps.MakeDirectory(name='mkdir', dir='build/made/deep'))
f.addStep(steps.ShellCommand(name='made', command=['test', '-d', 'made/deep']))
f.addStep(steps.RemoveDirectory(name='rmdir', dir='build/made'))
f.addStep(steps.ShellCommand(name='removed', command=['test', '-d', 'made'], decodeRC={1: util.SUCCESS}))
# Silent for 60 s: killed after 2, with the sleep its shell started.
f.addStep(steps.ShellCommand(name='timeout', timeout=2,
    command=['sh', '-c', 'sleep 60 & echo $! > sleep.pid; wait']))
# Steps named x-... are checked by comparison with the same build on a
# stock buildbot-worker: results and logs must be the same.
f.addStep(steps.ShellCommand(name='x-utf8', command=['printf', 'caf\\351 \\303\\251t\\303\\251\\n']))
f.addStep(steps.ShellCommand(name='x-string', command='echo one && echo two >&2'))
f.addStep(steps.ShellCommand(name='x-env', command=['sh', '-c', 'echo "$P|$X|${Y-unset}"'], env={'P': ['a', 'b'], 'X': '${HOME}/x', 'Y': None}))
f.addStep(steps.ShellCommand(name='x-cr', command=['printf', 'a\\rb\\r\\nc']))
f.addStep(steps.ShellCommand(name='x-big', command=['sh', '-c', 'seq 1 30000']))
f.addStep(steps.ShellCommand(name='x-maxtime', command=['sh', '-c', 'while true; do echo x; sleep 0.3; done'], maxTime=2))
f.addStep(steps.ShellCommand(name='x-sigterm', command=['sh', '-c', 'trap "echo got-term; exit 5" TERM; sleep 60 & wait'], timeout=1, sigtermTime=1))
f.addStep(steps.DirectoryUpload(name='x-gz', workersrc='dist', masterdest={{.UploadedDir}} + '.gz', compress='gz'))
f.addStep(steps.DirectoryUpload(name='x-bz2', workersrc='dist', masterdest={{.UploadedDir}} + '.bz2', compress='bz2'))
f.addStep(steps.Git(name='x-clobber', repourl={{.Repo}}, mode='full', method='clobber', workdir='src2'))
f.addStep(steps.Git(name='x-copy', repourl={{.Repo}}, mode='full', method='copy', workdir='src3'))
f.addStep(steps.SetPropertyFromCommand(name='x-extract', command='echo a=1; echo b=2 >&2; exit 0', extract_fn=lambda rc, out, err: {'ex_out': out.strip(), 'ex_err': err.strip(), 'ex_rc': rc}))
f.addStep(steps.MultipleFileUpload(name='x-multi', workersrcs=['up.txt', 'dist'], masterdest={{.UploadedDir}} + '.multi'))
f.addStep(steps.FileExists(name='x-exists', file='build/up.txt'))
f.addStep(steps.FileExists(name='x-exists-not', file='build/none.txt', haltOnFailure=False, flunkOnFailure=False))
f.addStep(steps.CopyDirectory(name='x-cpdir', src='build/dist', dest='build/dist2'))
f.addStep(steps.RemoveDirectory(name='x-rmdir-list', dir=['build/dist2']))
f.addStep(steps.ShellCommand(name='x-workdir', workdir='nowhere/deep', command=['pwd']))
f.addStep(steps.ShellCommand(name='x-nocmd', command=['no-such-program'], flunkOnFailure=False))
f.addStep(steps.ShellCommand(name='x-stdin', command=['cat'], initialStdin='from stdin\n'))
f.addStep(steps.ShellCommand(name='x-rc', command=['sh', '-c', 'exit 300']))
f.addStep(steps.ShellCommand(name='x-selfkill', command=['sh', '-c', 'echo before; kill -9 $$']))
f.addStep(steps.ShellCommand(name='x-nolog', command=['echo', 'hi'], logEnviron=False))
f.addStep(steps.ShellCommand(name='x-logfile-missing', command=['true'], logfiles={'nolog': 'absent.log'}))
f.addStep(steps.ShellCommand(name='x-pty', command=['sh', '-c', 'test -t 0 && test -t 1 && echo on a tty; echo err >&2'], usePTY=True))
# A failed upload, last of the x- steps.
f.addStep(steps.FileUpload(name='x-missing', workersrc='nope.txt', masterdest={{.Uploaded}} + '.missing', haltOnFailure=False))
f.addStep(steps.ShellCommand(name='last', alwaysRun=True, env={'FIFO': {{.FIFO}}},
    command=['sh', '-c', 'cat down.txt README && echo done > "$FIFO"']))
c['builders'] = [util.BuilderConfig(name='interop', workernames=['kw'], factory=f)]
`

// TestBuildbotMaster runs the kiln-worker binary against a stock Buildbot
// master (Debian's buildbot 3.7) and checks what the master recorded of a
// build in its own database, and what the build did on both sides. The
// same build on a stock buildbot-worker, under the same checks, shows
// that they describe Buildbot's behaviour and not only Kiln's.
func TestBuildbotMaster(t *testing.T) {
	testenv.SkipIfShort(t, "runs Buildbot's master, with each worker")
	buildbot := testenv.NeedTool(t, "buildbot")
	var kiln, stock stepRecords
	t.Run("kiln-worker", func(t *testing.T) {
		bin := buildBinary(t)
		var exit error
		kiln, exit = testBuildbotMaster(t, buildbot, func(ctx context.Context, dir, master string) *exec.Cmd {
			out, err := exec.CommandContext(ctx, bin, "create-worker", "-r", "--maxdelay", "1", dir, master, "kw", "secret pass").CombinedOutput()
			require.NoError(t, err, "kiln-worker create-worker:\n%s", out)
			return exec.Command(bin, "start", "--nodaemon", dir)
		})
		assert.NoError(t, exit, "kiln-worker exits with status 0 on SIGTERM")
	})
	t.Run("buildbot-worker", func(t *testing.T) {
		bin := testenv.NeedTool(t, "buildbot-worker")
		var exit error
		stock, exit = testBuildbotMaster(t, buildbot, func(ctx context.Context, dir, master string) *exec.Cmd {
			out, err := exec.CommandContext(ctx, bin, "create-worker", "-q", "--maxretries", "30", "--protocol", "msgpack_experimental_v7",
				dir, master, "kw", "secret pass").CombinedOutput()
			require.NoError(t, err, "buildbot-worker create-worker:\n%s", out)
			t.Cleanup(func() {
				if t.Failed() {
					b, _ := os.ReadFile(filepath.Join(dir, "twistd.log"))
					t.Logf("buildbot-worker's twistd.log:\n%s", b)
				}
			})
			return exec.Command(bin, "start", "--nodaemon", dir)
		})
		t.Logf("buildbot-worker on SIGTERM: %v", exit) // twistd dies of the signal
	})
	if kiln == nil || stock == nil {
		return
	}
	// Every step, x- ones included, has the same result and the same logs
	// on both workers.
	var kilnSteps, stockSteps []string
	for _, r := range kiln {
		kilnSteps = append(kilnSteps, r.Name)
	}
	for _, r := range stock {
		stockSteps = append(stockSteps, r.Name)
	}
	require.Equal(t, stockSteps, kilnSteps, "the steps run")
	assert.Contains(t, kilnSteps, "x-missing", "the x- steps ran")
	for i := range stock {
		want, got := withoutSubprocesses(stock[i]), kiln[i]
		if want.Name == "x-nocmd" {
			// A program that cannot start: buildbot-worker logs the
			// Python traceback of its child, kiln-worker the reason.
			assert.Equal(t, []string{`ecannot run "no-such-program": executable file not found in PATH`}, got.Logs["stdio"]['e'])
			assert.Contains(t, strings.Join(want.Logs["stdio"]['e'], "\n"), "No such file or directory: b'/bin/no-such-program'")
			delete(want.Logs["stdio"], 'e')
			delete(got.Logs["stdio"], 'e')
		}
		if want.Name == "x-maxtime" {
			// How many lines a loop printed before maxTime killed it
			// depends on scheduling: both print the same line, several
			// times.
			for who, r := range map[string]stepRecord{"buildbot-worker": want, "kiln-worker": got} {
				out := r.Logs["stdio"]['o']
				assert.GreaterOrEqual(t, len(out), 2, "%s: the loop ran", who)
				for _, l := range out {
					assert.Equal(t, "ox", l, who)
				}
				delete(r.Logs["stdio"], 'o')
			}
		}
		assert.Equal(t, want, got, "step %s on buildbot-worker, then on kiln-worker", want.Name)
	}
}

// withoutSubprocesses returns r without what a stock worker logs of the
// programs it runs for rmdir (rm -rf) and cpdir (cp -R -P -p -v, which
// lists every file copied): kiln-worker does both in-process and logs
// their exit codes only. This is the one difference in the logs.
func withoutSubprocesses(r stepRecord) stepRecord {
	out := stepRecord{Name: r.Name, Result: r.Result, Logs: map[string]map[byte][]string{}}
	for name, streams := range r.Logs {
		s := map[byte][]string{}
		for stream, lines := range streams {
			var kept []string
			for i := 0; i < len(lines); i++ {
				switch {
				case strings.HasPrefix(lines[i], "hrm -rf ") || strings.HasPrefix(lines[i], "hcp -R -P -p -v "):
					i += 5 // the header: in dir, logfiles, argv, environment, PTY
				case stream == 'o' && cpVerbose.MatchString(lines[i]):
				default:
					kept = append(kept, lines[i])
				}
			}
			s[stream] = kept
		}
		out.Logs[name] = s
	}
	return out
}

var cpVerbose = regexp.MustCompile(`^o'[^']*' -> '[^']*'$`)

// A stepRecord is what a Buildbot master stored of a step, made
// comparable between runs: the result, and each log's lines by stream
// (a stream's order is kept, their interleaving is not: it depends on
// scheduling), without timings, environments and temporary paths.
type stepRecord struct {
	Name   string
	Result int
	Logs   map[string]map[byte][]string
}

type stepRecords []stepRecord

var (
	elapsedLine = regexp.MustCompile(`^helapsedTime=[0-9.]+$`)
	tempPath    = regexp.MustCompile(`/tmp/TestBuildbotMaster[^/]*/[0-9]+`)
)

// readSteps returns the records of the steps of build buildID.
func readSteps(t *testing.T, db *sql.DB, buildID int) stepRecords {
	t.Helper()
	rows, err := db.Query(`SELECT s.name, s.results, l.name FROM steps s LEFT JOIN logs l ON l.stepid = s.id
		WHERE s.buildid = ? ORDER BY s.number, l.name`, buildID)
	require.NoError(t, err)
	defer rows.Close()
	var recs stepRecords
	for rows.Next() {
		var name string
		var result int
		var logName sql.NullString
		require.NoError(t, rows.Scan(&name, &result, &logName))
		if len(recs) == 0 || recs[len(recs)-1].Name != name {
			recs = append(recs, stepRecord{Name: name, Result: result, Logs: map[string]map[byte][]string{}})
		}
		if !logName.Valid {
			continue
		}
		streams := map[byte][]string{}
		text, _ := readLog(t, db, buildID, name, logName.String)
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "h  ") || elapsedLine.MatchString(line) {
				continue // the environment, a duration
			}
			line = tempPath.ReplaceAllString(line, "$$TMP")
			var stream byte
			if line != "" {
				stream = line[0]
			}
			streams[stream] = append(streams[stream], line)
		}
		recs[len(recs)-1].Logs[logName.String] = streams
	}
	require.NoError(t, rows.Err())
	return recs
}

// testBuildbotMaster runs the build of interopMasterCfg on a worker that
// newWorker creates in dir for master (host:port), returning the command
// that starts it, and checks the outcome. It returns the records of the
// build's steps and how the worker exited on SIGTERM, at the end.
func testBuildbotMaster(t *testing.T, buildbot string, newWorker func(ctx context.Context, dir, master string) *exec.Cmd) (recs stepRecords, exit error) {
	dir := t.TempDir()
	repo, rev := gitRepo(t, filepath.Join(dir, "repo"), map[string]string{"README": "checked out\n"})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	masterDir := filepath.Join(dir, "master")
	out, err := exec.CommandContext(ctx, buildbot, "create-master", "-q", "-n", masterDir).CombinedOutput()
	require.NoError(t, err, "buildbot create-master:\n%s", out)
	p := struct {
		Port                                      int
		Repo, Uploaded, UploadedDir, ToSend, FIFO string
	}{
		Port:        freePort(t),
		Repo:        repo,
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
	wk := newWorker(ctx, workerDir, fmt.Sprintf("127.0.0.1:%d", p.Port))
	wk.Stdout, wk.Stderr = testWriter{t}, testWriter{t}
	require.NoError(t, wk.Start())
	workerDone := waitProcess(t, wk)

	select {
	case s := <-lastStep:
		assert.Equal(t, "done\n", s)
	case err := <-workerDone:
		t.Fatalf("the worker stopped: %v", err)
	case err := <-masterDone:
		t.Fatalf("the master stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("the build did not reach its last step")
	}
	if rss, err := vmRSS(wk.Process.Pid); assert.NoError(t, err) {
		t.Logf("worker's RSS after attaching and running a build: %d KiB", rss)
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
	case exit = <-workerDone:
	case <-ctx.Done():
		t.Fatal("the worker did not stop on SIGTERM")
	}

	// What the master recorded.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(masterDir, "state.sqlite")+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var buildID, results int
	var complete sql.NullInt64
	require.NoError(t, db.QueryRow(`SELECT id, results, complete_at FROM builds`).Scan(&buildID, &results, &complete))
	assert.Equal(t, 2, results, "the build failed (FAILURE) because of its steps fail and timeout")
	assert.True(t, complete.Valid, "the build is complete")

	steps := map[string]int{}
	took := map[string]int64{}
	var order []string
	rows, err := db.Query(`SELECT name, results, complete_at - started_at FROM steps WHERE buildid = ? ORDER BY number`, buildID)
	require.NoError(t, err)
	for rows.Next() {
		var name string
		var res int
		var secs int64
		require.NoError(t, rows.Scan(&name, &res, &secs))
		if strings.HasPrefix(name, "x-") {
			continue // compared with buildbot-worker's
		}
		steps[name] = res
		took[name] = secs
		order = append(order, name)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{"worker_preparation", "git", "git-fresh", "fail", "setprop", "make", "upload", "upload-dir", "download",
		"mkdir", "made", "rmdir", "removed", "timeout", "last"}, order)
	assert.Equal(t, map[string]int{"worker_preparation": 0, "git": 0, "git-fresh": 0, "fail": 2, "setprop": 0, "make": 0,
		"upload": 0, "upload-dir": 0, "download": 0, "mkdir": 0, "made": 0, "rmdir": 0, "removed": 0, "timeout": 2, "last": 0}, steps)

	props := buildProperties(t, db, buildID)
	assert.Equal(t, [2]string{`"prop value"`, "SetPropertyFromCommand Step"}, props["myprop"], "stdout, stripped")
	assert.Equal(t, [2]string{`"` + rev + `"`, "Git"}, props["got_revision"])
	assert.Contains(t, logText(t, db, buildID, "setprop", "property changes"), "myprop: 'prop value'")
	git := logText(t, db, buildID, "git", "stdio")
	assert.Contains(t, git, " clone ")
	assert.Contains(t, git, "hprogram finished with exit code 0")
	fresh := logText(t, db, buildID, "git-fresh", "stdio")
	for _, cmd := range []string{" clean -f -f -d -x", " fetch -f -t ", " checkout -f FETCH_HEAD"} {
		assert.Contains(t, fresh, cmd, "an update of the clone")
	}
	assert.NotContains(t, fresh, " clone ")

	stdio := logText(t, db, buildID, "fail", "stdio")
	assert.Contains(t, stdio, "oout-line\n")
	assert.Contains(t, stdio, "eerr-line\n")
	assert.Contains(t, stdio, "h watching logfiles {'mylog': 'my.log'}\n")
	assert.Contains(t, stdio, "hprogram finished with exit code 3")
	assert.Equal(t, "olog-line", logText(t, db, buildID, "fail", "mylog"))
	assert.Contains(t, logText(t, db, buildID, "made", "stdio"), "hprogram finished with exit code 0")
	assert.Contains(t, logText(t, db, buildID, "removed", "stdio"), "hprogram finished with exit code 1")
	last := logText(t, db, buildID, "last", "stdio")
	assert.Contains(t, last, "ochecked out\n", "README from the checkout")
	assert.Contains(t, last, "hprogram finished with exit code 0")

	// The timeout: the log says so, the whole process group is killed
	// (rc -1) two seconds in, not sixty.
	timedOut := logText(t, db, buildID, "timeout", "stdio")
	assert.Contains(t, timedOut, "hcommand timed out: 2 seconds without output running [b'sh', b'-c', b'sleep 60 & echo $! > sleep.pid; wait'], attempting to kill\n")
	assert.Contains(t, timedOut, "hprocess killed by signal 9\n")
	assert.Contains(t, timedOut, "hprogram finished with exit code -1")
	assert.Less(t, took["timeout"], int64(30), "seconds the timeout step took")
	build := filepath.Join(workerDir, "interop", "build")
	b, err := os.ReadFile(filepath.Join(build, "sleep.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	assert.False(t, running(pid), "the timed-out command's sleep %d is gone", pid)

	// The files on both sides.
	b, err = os.ReadFile(filepath.Join(build, "README"))
	require.NoError(t, err)
	assert.Equal(t, "checked out\n", string(b))
	assert.NoDirExists(t, filepath.Join(build, "made"))
	b, err = os.ReadFile(p.Uploaded)
	require.NoError(t, err)
	assert.Equal(t, "uploaded content\n", string(b))
	b, err = os.ReadFile(filepath.Join(p.UploadedDir, "sub", "b.txt"))
	require.NoError(t, err)
	assert.Equal(t, "B\n", string(b))
	// Buildbot 3.7's master answers update_read_file without the data it
	// read (its msgpack call_update_read_file drops remote_read's result),
	// so a download over msgpack writes an empty file, whatever the
	// worker; a stock buildbot-worker does the same.
	down := filepath.Join(build, "down.txt")
	b, err = os.ReadFile(down)
	require.NoError(t, err)
	assert.Empty(t, string(b))
	fi, err := os.Stat(down)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	return readSteps(t, db, buildID), exit
}

// running reports whether process pid exists and is not a zombie: a
// killed process whose parent died too waits as a zombie until PID 1
// reaps it.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := bytes.Cut(b[bytes.LastIndexByte(b, ')')+1:], []byte(" "))
	return len(rest) > 0 && rest[0] != 'Z' && rest[0] != 'X'
}

// gitRepo creates a Git repository in dir with one commit of files, and
// returns dir and the commit's hash.
func gitRepo(t *testing.T, dir string, files map[string]string) (string, string) {
	t.Helper()
	gitPath := testenv.NeedTool(t, "git")
	git := func(args ...string) string {
		cmd := exec.Command(gitPath, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
			"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z") // the same hash every time
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v:\n%s", args, out)
		return strings.TrimSpace(string(out))
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	git("init", "-q", "-b", "main")
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	git("add", ".")
	git("commit", "-q", "-m", "first")
	return dir, git("rev-parse", "HEAD")
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

// buildProperties returns the properties Buildbot stored of a build: its
// value as JSON and its source, by name.
func buildProperties(t *testing.T, db *sql.DB, buildID int) map[string][2]string {
	t.Helper()
	rows, err := db.Query(`SELECT name, value, source FROM build_properties WHERE buildid = ?`, buildID)
	require.NoError(t, err)
	defer rows.Close()
	props := map[string][2]string{}
	for rows.Next() {
		var name, value, source string
		require.NoError(t, rows.Scan(&name, &value, &source))
		props[name] = [2]string{value, source}
	}
	require.NoError(t, rows.Err())
	return props
}

// logText returns the text Buildbot stored of a step's log, its chunks
// joined by newlines. A log whose chunks Buildbot compressed (when
// logCompressionMethod is not "raw") is decompressed: column compressed
// is 0 for none, 1 for gzip, 2 for bz2, 3 for lz4 (not read here).
func logText(t *testing.T, db *sql.DB, buildID int, step, log string) string {
	t.Helper()
	text, chunks := readLog(t, db, buildID, step, log)
	require.NotZero(t, chunks, "no log %s of step %s", log, step)
	return text
}

// readLog returns the text of a step's log and how many chunks it has.
func readLog(t *testing.T, db *sql.DB, buildID int, step, log string) (string, int) {
	t.Helper()
	rows, err := db.Query(`SELECT c.content, c.compressed FROM logchunks c
		JOIN logs l ON l.id = c.logid JOIN steps s ON s.id = l.stepid
		WHERE s.buildid = ? AND s.name = ? AND l.name = ? ORDER BY c.first_line`, buildID, step, log)
	require.NoError(t, err)
	defer rows.Close()
	var b strings.Builder
	n := 0
	for rows.Next() {
		var chunk []byte
		var compressed int
		require.NoError(t, rows.Scan(&chunk, &compressed))
		var r io.Reader
		switch compressed {
		case 0:
		case 1:
			r, err = gzip.NewReader(bytes.NewReader(chunk))
			require.NoError(t, err)
		case 2:
			r = bzip2.NewReader(bytes.NewReader(chunk))
		default:
			t.Fatalf("log %s of step %s: compression %d is not read here; set logCompressionMethod to 'raw'", log, step, compressed)
		}
		if r != nil {
			chunk, err = io.ReadAll(r)
			require.NoError(t, err)
		}
		if n > 0 {
			b.WriteByte('\n')
		}
		b.Write(chunk)
		n++
	}
	require.NoError(t, rows.Err())
	return b.String(), n
}
