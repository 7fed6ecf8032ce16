//go:build linux

package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The Buildbot master of the -versus mode: the builders and steps of
// benchmaster (one, ten and log), build workers w1 ... w{{workers}} and idle
// workers i1 ... i{{idle}}, a PBChangeSource and, for each builder, a
// scheduler building the changes of the branch of its name. Requests are
// not collapsed: each change is a build. No web UI.
const versusCfg = `# -*- python -*-
from buildbot.plugins import changes, schedulers, steps, util, worker

c = BuildmasterConfig = {}
c['title'] = 'workerbench'
c['buildbotURL'] = 'http://localhost/'
c['buildbotNetUsageData'] = None
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['logCompressionMethod'] = 'raw'
c['collapseRequests'] = False
build = ['w%d' % i for i in range(1, {{workers}} + 1)]
idle = ['i%d' % i for i in range(1, {{idle}} + 1)]
c['workers'] = [worker.Worker(name, {{password}}) for name in build + idle]
c['protocols'] = {'msgpack_experimental_v7': {'port': {{port}}, 'interface': '127.0.0.1'}}
c['change_source'] = [changes.PBChangeSource(port='tcp:{{changePort}}:interface=127.0.0.1', user='change', passwd={{password}})]
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name=b, change_filter=util.ChangeFilter(branch=b), treeStableTimer=None, builderNames=[b])
    for b in ('one', 'ten', 'log')]
c['builders'] = [
    util.BuilderConfig(name='one', workernames=build,
        factory=util.BuildFactory([steps.ShellCommand(name='true', command=['true'])])),
    util.BuilderConfig(name='ten', workernames=build,
        factory=util.BuildFactory([steps.ShellCommand(name='step%d' % i, command=['true']) for i in range(1, {{ten}} + 1)])),
    util.BuilderConfig(name='log', workernames=build[:1],
        factory=util.BuildFactory([steps.ShellCommand(name='log', command={{logCommand}})])),
]
`

// sendChanges is the Python program that sends the changes: for each line
// of its standard input, a branch, a change on that branch to the
// PBChangeSource at argv[1] (user argv[2], password argv[3]), with
// Buildbot's own client, one after the other; it prints a line once each
// is sent.
const sendChanges = `import sys
import threading

from twisted.internet import reactor, threads
from buildbot.clients.sendchange import Sender

sender = Sender(sys.argv[1], auth=(sys.argv[2], sys.argv[3]))
failed = []


def send():
    try:
        for line in sys.stdin:
            branch = line.strip()
            threads.blockingCallFromThread(reactor, sender.send, branch, None, 'workerbench', [], who='workerbench')
            print('sent', branch, flush=True)
    except BaseException as e:
        failed.append(e)
        raise
    finally:
        reactor.callFromThread(reactor.stop)


reactor.callWhenRunning(lambda: threading.Thread(target=send, daemon=True).start())
reactor.run()
sys.exit(1 if failed else 0)
`

// buildbotSystem is a stock Buildbot master driven by changes, its
// build requests read in its database.
type buildbotSystem struct {
	bin   string // the buildbot program
	label string
	dir   string // the master's folder
	addr  string // its worker port
	sizes Sizes

	changeAddr string // its PBChangeSource's port
	master     *proc
	db         *sql.DB
	sender     *proc
	send       io.WriteCloser   // the sender's standard input
	ids        map[string]int64 // builder IDs by name
}

func (b *buildbotSystem) name() string { return b.label }
func (b *buildbotSystem) pid() int     { return b.master.pid() }

// logCommand is the shell command of the "log" builder's step, as
// benchmaster's: s.LogBytes bytes in lines of 99 characters, the last
// without a newline, made by yes and head (as LogCommand), or the content
// of s.LogFile.
func logCommand(s Sizes) string {
	if s.LogFile != "" {
		return "cat '" + strings.ReplaceAll(s.LogFile, "'", `'\''`) + "'"
	}
	n := s.LogBytes
	if n <= 0 {
		return "true"
	}
	lines := (n + 98) / 99
	return fmt.Sprintf(`l=$(printf %%099d 0 | tr 0 a); yes "$l" | head -n %d; printf %%.%ds "$l"`, lines-1, n-99*(lines-1))
}

// tenSteps is how many steps the "ten" builder has, as benchmaster's.
const tenSteps = 10

// prepare makes the master's folder: create-master (which creates its
// database) and master.cfg. A master.cfg the master refuses makes it
// exit, which start reports.
func (b *buildbotSystem) prepare(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(b.dir), 0o755); err != nil {
		return err
	}
	if err := runCmd(exec.CommandContext(ctx, b.bin, "create-master", "-q", b.dir)); err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(b.addr)
	if err != nil {
		return err
	}
	changePort, err := freePort()
	if err != nil {
		return err
	}
	b.changeAddr = "127.0.0.1:" + strconv.Itoa(changePort)
	cfg := strings.NewReplacer(
		"{{workers}}", strconv.Itoa(b.sizes.Workers), "{{idle}}", strconv.Itoa(b.sizes.IdleWorkers),
		"{{password}}", strconv.Quote(password), "{{port}}", port, "{{changePort}}", strconv.Itoa(changePort),
		"{{ten}}", strconv.Itoa(tenSteps), "{{logCommand}}", strconv.Quote(logCommand(b.sizes)),
	).Replace(versusCfg)
	if err := os.WriteFile(filepath.Join(b.dir, "master.cfg"), []byte(cfg), 0o644); err != nil {
		return err
	}
	return os.WriteFile(b.senderScript(), []byte(sendChanges), 0o644)
}

func (b *buildbotSystem) senderScript() string {
	return filepath.Join(filepath.Dir(b.dir), "sendchanges.py")
}

// start starts the master (twistd, in the foreground) and, once it has
// its builders and its PBChangeSource listens, the change sender.
func (b *buildbotSystem) start(ctx context.Context) error {
	p, err := startProc(exec.Command(b.bin, "start", "--nodaemon", b.dir), filepath.Join(filepath.Dir(b.dir), "master.out"))
	if err != nil {
		return err
	}
	b.master = p
	if b.db, err = sql.Open("sqlite", "file:"+filepath.Join(b.dir, "state.sqlite")+"?mode=ro&_pragma=busy_timeout(5000)"); err != nil {
		return err
	}
	b.ids = map[string]int64{}
	err = poll(ctx, 2*time.Minute, 10*time.Millisecond, func() (bool, error) {
		if err := b.failed(); err != nil {
			return false, err
		}
		rows, err := b.db.QueryContext(ctx, `SELECT id, name FROM builders`)
		if err != nil {
			return false, nil // the master is writing it: next time
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				return false, err
			}
			b.ids[name] = id
		}
		if rows.Err() != nil {
			return false, nil
		}
		c, err := net.Dial("tcp", b.changeAddr)
		if err == nil {
			c.Close()
		}
		return len(b.ids) == 3 && err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the Buildbot master has no builders or PBChangeSource yet: %w", err)
	}

	cmd := exec.Command(python(b.bin), b.senderScript(), b.changeAddr, "change", password)
	if b.send, err = cmd.StdinPipe(); err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if b.sender, err = startProc(cmd, filepath.Join(filepath.Dir(b.dir), "sendchanges.out")); err != nil {
		return err
	}
	go io.Copy(io.Discard, stdout)
	return nil
}

// python returns the Python interpreter of the buildbot program, from its
// first line.
func python(buildbot string) string {
	f, err := os.Open(buildbot)
	if err == nil {
		defer f.Close()
		line, _ := bufio.NewReader(f).ReadString('\n')
		if fields := strings.Fields(strings.TrimPrefix(line, "#!")); strings.HasPrefix(line, "#!") && len(fields) > 0 {
			if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
				return fields[1]
			}
			return fields[0]
		}
	}
	return "python3"
}

func (b *buildbotSystem) failed() error {
	if b.master.exited() {
		return fmt.Errorf("the Buildbot master exited (%v): %s", b.master.err, b.master.tail())
	}
	if b.sender != nil && b.sender.exited() {
		return fmt.Errorf("the change sender exited (%v): %s", b.sender.err, b.sender.tail())
	}
	return nil
}

func (b *buildbotSystem) connected(ctx context.Context) (int, error) {
	var n int
	err := b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM connected_workers`).Scan(&n)
	return n, err
}

// submit sends n changes on the builder's branch.
func (b *buildbotSystem) submit(ctx context.Context, builder string, n int) (ticket, error) {
	t := ticket{builder: builder, n: n}
	if err := b.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM buildrequests`).Scan(&t.afterID); err != nil {
		return t, err
	}
	_, err := io.WriteString(b.send, strings.Repeat(builder+"\n", n))
	return t, err
}

func (b *buildbotSystem) done(ctx context.Context, t ticket) (bool, error) {
	var complete, failed int
	err := b.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(results <> 0), 0) FROM buildrequests
		WHERE builderid = ? AND id > ? AND complete = 1`, b.ids[t.builder], t.afterID).Scan(&complete, &failed)
	if err != nil {
		return false, err
	}
	if failed > 0 {
		return false, fmt.Errorf("%d of the %d builds of %s did not succeed", failed, complete, t.builder)
	}
	return complete >= t.n, nil
}

func (b *buildbotSystem) logLines(ctx context.Context, t ticket) (int, bool, error) {
	var lines, complete int
	err := b.db.QueryRowContext(ctx, `SELECT l.num_lines, l.complete FROM logs l
		JOIN steps s ON s.id = l.stepid JOIN builds bd ON bd.id = s.buildid
		WHERE bd.builderid = ? AND bd.buildrequestid > ? AND s.name = 'log' AND l.slug = 'stdio'`,
		b.ids["log"], t.afterID).Scan(&lines, &complete)
	if err != nil {
		return 0, false, fmt.Errorf("the log build's stdio log: %w", err)
	}
	return lines, complete == 1, nil
}

// span returns the time from the first build request of t submitted to
// its last build complete, by the master's records (whole seconds).
func (b *buildbotSystem) span(ctx context.Context, t ticket) (time.Duration, error) {
	var first, last int64
	err := b.db.QueryRowContext(ctx, `SELECT MIN(br.submitted_at), MAX(bd.complete_at) FROM buildrequests br
		JOIN builds bd ON bd.buildrequestid = br.id WHERE br.builderid = ? AND br.id > ?`,
		b.ids[t.builder], t.afterID).Scan(&first, &last)
	if err != nil {
		return 0, fmt.Errorf("the builds' span in state.sqlite: %w", err)
	}
	return time.Duration(last-first) * time.Second, nil
}

func (b *buildbotSystem) stop() {
	if b.send != nil {
		b.send.Close()
	}
	if b.sender != nil {
		b.sender.stop()
	}
	if b.master != nil {
		b.master.stop()
	}
	if b.db != nil {
		b.db.Close()
	}
}
