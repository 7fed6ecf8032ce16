//go:build linux

package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	_ "modernc.org/sqlite" // reads the Buildbot master's state.sqlite
)

// The Buildbot master of the -buildbot mode: one worker, w1, one builder
// of one step (true), and a scheduler that asks for {{count}} builds of
// it when the master starts. The requests are not collapsed, so each is
// a build.
const buildbotMasterCfg = `# -*- python -*-
from buildbot.plugins import steps, util, worker
from buildbot.schedulers.base import BaseScheduler
from twisted.internet import defer


class Burst(BaseScheduler):
    """Asks for count builds once, when the master starts."""

    def __init__(self, name, builderNames, count):
        super().__init__(name, builderNames)
        self.count = count

    @defer.inlineCallbacks
    def activate(self):
        yield super().activate()
        if not self.enabled:
            return
        for _ in range(self.count):
            yield self.addBuildsetForSourceStampsWithDefaults(reason='workerbench', sourcestamps=[{'codebase': ''}])


c = BuildmasterConfig = {}
c['title'] = 'workerbench'
c['buildbotURL'] = 'http://localhost/'
c['buildbotNetUsageData'] = None
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['logCompressionMethod'] = 'raw'
c['collapseRequests'] = False
c['workers'] = [worker.Worker('w1', {{password}})]
c['protocols'] = {'msgpack_experimental_v7': {'port': {{port}}, 'interface': '127.0.0.1'}}
c['schedulers'] = [Burst('burst', ['one'], {{count}})]
c['builders'] = [util.BuilderConfig(name='one', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(name='true', command=['true'])]))]
`

// A BuildbotResult is what the -buildbot mode measured of one kind of
// worker serving a stock Buildbot master.
type BuildbotResult struct {
	Kind   string
	Builds int
	// Elapsed runs from the first build seen started to the last seen
	// complete (the master's database is polled every 50 ms).
	Elapsed      time.Duration
	BuildsPerSec float64
	// Results counts the builds by Buildbot result code.
	Results map[int]int
	// The worker's resident size once the builds are done, and its peak.
	WorkerRSS, WorkerPeak int64
	// CPU time per build over Elapsed.
	MasterCPU, WorkerCPU time.Duration
}

// benchBuildbot runs builds one-step builds on a Buildbot master (the
// buildbot program) in dir with one worker of kind k, and measures them.
func benchBuildbot(ctx context.Context, buildbot string, k kind, dir string, builds int, progress io.Writer) (*BuildbotResult, error) {
	masterDir := filepath.Join(dir, "master")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := runCmd(exec.CommandContext(ctx, buildbot, "create-master", "-q", masterDir)); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := strings.NewReplacer("{{password}}", strconv.Quote(password), "{{port}}", strconv.Itoa(port),
		"{{count}}", strconv.Itoa(builds)).Replace(buildbotMasterCfg)
	if err := os.WriteFile(filepath.Join(masterDir, "master.cfg"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%s: starting a Buildbot master\n", k.name)
	master, err := startProc(exec.Command(buildbot, "start", "--nodaemon", masterDir), filepath.Join(dir, "master.out"))
	if err != nil {
		return nil, err
	}
	defer master.stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	err = poll(ctx, 2*time.Minute, 50*time.Millisecond, func() (bool, error) {
		if master.exited() {
			return false, errors.New("the master exited")
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the Buildbot master does not listen: %w: %s", err, master.tail())
	}

	workerDir := filepath.Join(dir, "w1")
	if err := k.create(ctx, workerDir, addr, "w1"); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%s: %d builds on the Buildbot master\n", k.name, builds)
	wk, err := startProc(k.command(workerDir), workerDir+".out")
	if err != nil {
		return nil, err
	}
	defer wk.stop()

	db, err := sql.Open("sqlite", "file:"+filepath.Join(masterDir, "state.sqlite")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var begin time.Time
	var cpu cpuMeter
	err = poll(ctx, time.Duration(builds)*time.Second+time.Minute, 50*time.Millisecond, func() (bool, error) {
		switch {
		case master.exited():
			return false, fmt.Errorf("the master exited: %s", master.tail())
		case wk.exited():
			return false, fmt.Errorf("the worker exited: %s", wk.tail())
		}
		var started, complete int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(complete_at) FROM builds`).Scan(&started, &complete); err != nil {
			return false, nil // the master is creating or writing it: next time
		}
		if started > 0 && begin.IsZero() {
			begin = time.Now()
			cpu.start(master.pid(), wk.pid())
		}
		return complete == builds, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s on a Buildbot master: %w", k.name, err)
	}
	r := &BuildbotResult{Kind: k.name, Builds: builds, Elapsed: time.Since(begin), Results: map[int]int{}}
	used, cpuErr := cpu.stop()
	r.BuildsPerSec = float64(builds) / r.Elapsed.Seconds()
	r.MasterCPU, r.WorkerCPU = used[0]/time.Duration(builds), used[1]/time.Duration(builds)
	rss, err1 := status(wk.pid(), "VmRSS")
	peak, err2 := status(wk.pid(), "VmHWM")
	r.WorkerRSS, r.WorkerPeak = rss, peak
	rows, err := db.QueryContext(ctx, `SELECT results, COUNT(*) FROM builds GROUP BY results`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var res, n int
		if err := rows.Scan(&res, &n); err != nil {
			return nil, err
		}
		r.Results[res] = n
	}
	return r, errors.Join(cpuErr, err1, err2, rows.Err())
}

// freePort returns a TCP port free on the loopback interface.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func printBuildbotTable(out io.Writer, m machineInfo, results []*BuildbotResult) {
	fmt.Fprintf(out, "Workers serving a stock Buildbot master over loopback: %d CPUs (%s); load average %s at the start, %s at the end\n\n",
		m.cpus, m.model, m.loadStart, m.loadEnd)
	rows := []struct {
		what  string
		value func(r *BuildbotResult) string
	}{
		{"one-step builds (true), one worker", func(r *BuildbotResult) string { return fmt.Sprintf("%.1f builds/s", r.BuildsPerSec) }},
		{"  builds, time", func(r *BuildbotResult) string { return fmt.Sprintf("%d, %.1f s", r.Builds, r.Elapsed.Seconds()) }},
		{"  successful", func(r *BuildbotResult) string { return fmt.Sprint(r.Results[0]) }},
		{"  CPU per build: master, worker", func(r *BuildbotResult) string { return ms(r.MasterCPU) + ", " + ms(r.WorkerCPU) }},
		{"worker RSS (VmRSS) after the builds", func(r *BuildbotResult) string { return mib(r.WorkerRSS) }},
		{"  peak (VmHWM)", func(r *BuildbotResult) string { return mib(r.WorkerPeak) }},
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.Kind)
	}
	fmt.Fprintln(tw)
	for _, rw := range rows {
		fmt.Fprintf(tw, "%s\t", rw.what)
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t", rw.value(r))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(out, "\nTime: from the first build seen started to the last seen complete in the master's database (polled every 50 ms).")
}
