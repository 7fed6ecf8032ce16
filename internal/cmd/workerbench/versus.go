//go:build linux

package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// The -versus mode runs one workload on two systems, one after the other,
// each a master process and its worker processes over loopback:
//
//   - Kiln: benchmaster and kiln-workers; builds are forced through the
//     master's JSON API (the force scheduler's JSON-RPC call) and their
//     build requests polled there;
//   - Buildbot: a stock Buildbot master (buildbot create-master, and a
//     master.cfg of the same builders and steps, written by versusCfg)
//     and buildbot-workers over msgpack_experimental_v7; builds are asked
//     for by changes sent to a PBChangeSource with Buildbot's own
//     sendchange client (buildbot.clients.sendchange, what `buildbot
//     sendchange` runs), kept in one Python process so that its start is
//     not counted, and their build requests are polled in the master's
//     database (state.sqlite, read-only). Its web UI is not configured.
//
// The workload: the master's cold start until it accepts a worker, its
// memory idle and per idle attached worker, one-step builds one at a time
// (latency), ten-step builds one at a time, a step writing LogBytes bytes
// of standard output, and one-step builds over Workers workers (rate).

// A system is a master and the means to drive it.
type system interface {
	// name is the system's name in the table.
	name() string
	// prepare makes what the master needs before it starts.
	prepare(ctx context.Context) error
	// start starts the master, its worker port at the address it was
	// made for, and returns once it can be driven.
	start(ctx context.Context) error
	// pid is the master process's.
	pid() int
	// failed returns an error once the master (or what drives it) has
	// exited.
	failed() error
	// connected returns how many workers are attached.
	connected(ctx context.Context) (int, error)
	// submit asks for n builds of the builder.
	submit(ctx context.Context, builder string, n int) (ticket, error)
	// done reports whether the builds of t are complete, and an error if
	// one did not succeed.
	done(ctx context.Context, t ticket) (bool, error)
	// logLines returns the num_lines of the stdio log of the "log" step
	// of the build of t, and whether the log is complete.
	logLines(ctx context.Context, t ticket) (int, bool, error)
	// stop stops the master.
	stop()
}

// A ticket stands for builds asked for with submit.
type ticket struct {
	builder string
	n       int
	brids   []int64 // Kiln: the build requests
	afterID int64   // Buildbot: the build requests are those after this ID
}

// A versusResult holds what the -versus mode measured of one system.
type versusResult struct {
	System string
	Worker string // the kind of worker
	Sizes  Sizes

	// ColdStart runs from starting the master process to a worker's
	// WebSocket handshake answered.
	ColdStart time.Duration
	// IdleRSS is the master's resident size with no worker attached,
	// IdleWithRSS with IdleWorkers attached; PerIdleWorker the
	// difference per worker. AttachTime runs from starting the idle
	// workers to all attached.
	IdleRSS, IdleWithRSS int64
	PerIdleWorker        float64
	AttachTime           time.Duration

	// One-step builds one at a time: the sorted times from request to
	// complete build request, their median, and the master's CPU time
	// per build.
	Latency          []time.Duration
	Median           time.Duration
	LatencyMasterCPU time.Duration
	// Ten-step builds one at a time.
	Ten       []time.Duration
	TenMedian time.Duration

	// The log build: its time, rate (standard output, newlines
	// included), the master's resident size before it and peak during
	// it, and the stored log's num_lines.
	LogTime                  time.Duration
	LogMBps                  float64
	LogRSSBefore, LogPeakRSS int64
	PeakNotReset             bool
	LogLines                 int

	// Builds one-step builds over Workers workers: from the first
	// request to the last build request complete.
	BuildsTime        time.Duration
	BuildsPerSec      float64
	MasterCPUPerBuild time.Duration
	// DBSpan is the same builds' span in the master's own records, when
	// they have one (Buildbot: whole seconds from the first request's
	// submitted_at to the last build's complete_at).
	DBSpan time.Duration
}

// A spanner is a system whose database gives the span of builds.
type spanner interface {
	span(ctx context.Context, t ticket) (time.Duration, error)
}

// A versus runs the workload on one system.
type versus struct {
	sys      system
	kind     kind
	addr     string // the master's worker port
	workers  string // the workers' folders
	sizes    Sizes
	poll     time.Duration
	progress io.Writer
	r        *versusResult
}

func (v *versus) logf(format string, args ...any) {
	fmt.Fprintf(v.progress, "%s: "+format+"\n", append([]any{v.sys.name()}, args...)...)
}

// runVersus measures each system in turn and prints the table.
func runVersus(ctx context.Context, base string, masterBin string, kiln kind, kilnSizes Sizes,
	buildbot string, stock kind, stockSizes Sizes, pollEvery time.Duration, out, progress io.Writer) ([]*versusResult, error) {
	version, err := buildbotVersion(ctx, buildbot)
	if err != nil {
		return nil, err
	}
	m := machine()
	var results []*versusResult
	for _, c := range []struct {
		name  string
		kind  kind
		sizes Sizes
		make  func(dir, addr string, s Sizes) system
	}{
		{"Kiln", kiln, kilnSizes, func(dir, addr string, s Sizes) system {
			return &kilnSystem{bin: masterBin, dir: dir, addr: addr, sizes: s}
		}},
		{"Buildbot " + version, stock, stockSizes, func(dir, addr string, s Sizes) system {
			return &buildbotSystem{bin: buildbot, label: "Buildbot " + version, dir: dir, addr: addr, sizes: s}
		}},
	} {
		dir := filepath.Join(base, strings.Fields(c.name)[0])
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		v := &versus{
			sys: c.make(filepath.Join(dir, "master"), addr, c.sizes), kind: c.kind, addr: addr,
			workers: filepath.Join(dir, "workers"), sizes: c.sizes, poll: pollEvery, progress: progress,
		}
		r, err := v.run(ctx)
		if err != nil {
			return results, fmt.Errorf("%s: %w", c.name, err)
		}
		results = append(results, r)
	}
	m.loadEnd = loadAverage()
	printVersusTable(out, m, results, pollEvery)
	return results, nil
}

// buildbotVersion returns the version of Buildbot the program is.
func buildbotVersion(ctx context.Context, buildbot string) (string, error) {
	out, err := exec.CommandContext(ctx, buildbot, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", buildbot, err, strings.TrimSpace(string(out)))
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Buildbot version: "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s --version: no version in %q", buildbot, out)
}

func (v *versus) run(ctx context.Context) (r *versusResult, err error) {
	v.r = &versusResult{System: v.sys.name(), Worker: v.kind.name, Sizes: v.sizes}
	build := workerNames(1, v.sizes.Workers)
	idle := idleNames(v.sizes.IdleWorkers)
	if err := v.sys.prepare(ctx); err != nil {
		return nil, err
	}
	v.logf("creating %d %ss", len(build)+len(idle), v.kind.name)
	dirs, err := createWorkers(ctx, v.kind, v.workers, v.addr, slices.Concat(build, idle), runtime.NumCPU())
	if err != nil {
		return nil, err
	}

	if err := v.coldStart(ctx); err != nil {
		return nil, fmt.Errorf("cold start: %w", err)
	}
	defer v.sys.stop()
	if err := v.idle(ctx, orderedDirs(dirs, idle)); err != nil {
		return nil, fmt.Errorf("idle workers: %w", err)
	}

	first, err := startWorkers(v.kind, orderedDirs(dirs, build[:1]))
	if err != nil {
		return nil, err
	}
	defer stopAll(first)
	if err := v.waitConnected(ctx, first, 1); err != nil {
		return nil, err
	}
	if v.r.Latency, v.r.LatencyMasterCPU, err = v.oneAtATime(ctx, "one", warmup, v.sizes.LatencyBuilds); err != nil {
		return nil, fmt.Errorf("one-step builds: %w", err)
	}
	v.r.Median = v.r.Latency[len(v.r.Latency)/2]
	v.logf("%d one-step builds one at a time: median %s; master CPU per build %s", len(v.r.Latency), v.r.Median.Round(10*time.Microsecond), v.r.LatencyMasterCPU)
	if v.r.Ten, _, err = v.oneAtATime(ctx, "ten", 1, v.sizes.TenBuilds); err != nil {
		return nil, fmt.Errorf("ten-step builds: %w", err)
	}
	v.r.TenMedian = v.r.Ten[len(v.r.Ten)/2]
	v.logf("%d ten-step builds one at a time: median %s", len(v.r.Ten), v.r.TenMedian.Round(10*time.Microsecond))
	if err := v.log(ctx); err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}

	rest, err := startWorkers(v.kind, orderedDirs(dirs, build[1:]))
	if err != nil {
		return nil, err
	}
	defer stopAll(rest)
	if err := v.waitConnected(ctx, slices.Concat(first, rest), v.sizes.Workers); err != nil {
		return nil, err
	}
	if err := v.throughput(ctx); err != nil {
		return nil, fmt.Errorf("builds over %d workers: %w", v.sizes.Workers, err)
	}
	return v.r, nil
}

// idleNames returns the names of the idle workers, i1 ... in.
func idleNames(n int) []string {
	var names []string
	for i := 1; i <= n; i++ {
		names = append(names, fmt.Sprintf("i%d", i))
	}
	return names
}

// coldStart starts the master and measures the time until a worker's
// WebSocket handshake is answered.
func (v *versus) coldStart(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	begin := time.Now()
	probed := make(chan error, 1)
	go func() {
		err := handshake(pctx, v.addr, "i1")
		v.r.ColdStart = time.Since(begin)
		probed <- err
	}()
	if err := v.sys.start(ctx); err != nil {
		cancel()
		<-probed
		return err
	}
	for err := error(nil); ; {
		select {
		case err = <-probed:
		case <-time.After(100 * time.Millisecond):
			if err := v.sys.failed(); err != nil {
				cancel()
				<-probed
				v.sys.stop()
				return err
			}
			continue
		}
		if err != nil {
			v.sys.stop()
			return fmt.Errorf("no worker handshake answered: %w", err)
		}
		break
	}
	v.logf("accepting workers %s after the master's start", v.r.ColdStart.Round(time.Millisecond))
	return nil
}

// handshake opens WebSocket connections to a master's worker port as the
// named worker until one is accepted, and closes it.
func handshake(ctx context.Context, addr, name string) error {
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"+password))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", &websocket.DialOptions{
			HTTPClient: client, HTTPHeader: http.Header{"Authorization": {auth}},
		})
		if err == nil {
			c.CloseNow()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitConnected waits until the master has n workers attached, checking
// that the worker processes are still running.
func (v *versus) waitConnected(ctx context.Context, ps []*proc, n int) error {
	got := 0
	err := poll(ctx, attachTimeout, 10*time.Millisecond, func() (bool, error) {
		for _, p := range ps {
			if p.exited() {
				return false, fmt.Errorf("worker %s exited (%v): %s", filepath.Base(p.out), p.err, p.tail())
			}
		}
		if err := v.sys.failed(); err != nil {
			return false, err
		}
		var err error
		got, err = v.sys.connected(ctx)
		return got == n, err
	})
	if err != nil {
		return fmt.Errorf("waiting for %d workers attached (%d are): %w", n, got, err)
	}
	return nil
}

// idle measures the master's memory with no worker, then with the idle
// workers attached, and stops them.
func (v *versus) idle(ctx context.Context, dirs []string) error {
	if err := v.waitConnected(ctx, nil, 0); err != nil {
		return err
	}
	time.Sleep(settle)
	var err error
	if v.r.IdleRSS, err = status(v.sys.pid(), "VmRSS"); err != nil {
		return err
	}
	start := time.Now()
	ps, err := startWorkers(v.kind, dirs)
	if err != nil {
		return err
	}
	spawn := time.Since(start)
	defer stopAll(ps)
	if err := v.waitConnected(ctx, ps, len(dirs)); err != nil {
		return err
	}
	v.r.AttachTime = time.Since(start)
	time.Sleep(settle)
	if v.r.IdleWithRSS, err = status(v.sys.pid(), "VmRSS"); err != nil {
		return err
	}
	v.r.PerIdleWorker = float64(v.r.IdleWithRSS-v.r.IdleRSS) / float64(len(dirs))
	v.logf("master RSS %s idle, %s with %d idle workers (%.1f KiB each); attached %s after their start (%s starting them)",
		mib(v.r.IdleRSS), mib(v.r.IdleWithRSS), len(dirs), v.r.PerIdleWorker/1024, v.r.AttachTime.Round(time.Millisecond), spawn.Round(time.Millisecond))
	stopAll(ps)
	return v.waitConnected(ctx, nil, 0)
}

// wait polls the builds of t every interval until they are complete.
func (v *versus) wait(ctx context.Context, t ticket, interval, timeout time.Duration) error {
	return poll(ctx, timeout, interval, func() (bool, error) {
		if err := v.sys.failed(); err != nil {
			return false, err
		}
		return v.sys.done(ctx, t)
	})
}

// oneAtATime runs warm builds of the builder, then n more whose times
// count, one at a time, and returns those times, sorted, and the master's
// CPU time per counted build. As in bench.latency, the first poll of a
// build waits for three quarters of the fastest build yet.
func (v *versus) oneAtATime(ctx context.Context, builder string, warm, n int) ([]time.Duration, time.Duration, error) {
	var times []time.Duration
	var cpu cpuMeter
	fastest := time.Duration(0)
	for i := range warm + n {
		if i == warm {
			cpu.start(v.sys.pid())
		}
		start := time.Now()
		t, err := v.sys.submit(ctx, builder, 1)
		if err != nil {
			return nil, 0, err
		}
		time.Sleep(time.Until(start.Add(fastest * 3 / 4)))
		if err := v.wait(ctx, t, v.poll, buildTimeout); err != nil {
			return nil, 0, err
		}
		d := time.Since(start)
		if i >= warm {
			times = append(times, d)
		}
		if fastest == 0 || d < fastest {
			fastest = d
		}
	}
	used, err := cpu.stop()
	if err != nil {
		return nil, 0, err
	}
	slices.Sort(times)
	return times, used[0] / time.Duration(n), nil
}

// log runs the log build and measures its rate and the master's memory.
func (v *versus) log(ctx context.Context) error {
	time.Sleep(settle)
	pid := v.sys.pid()
	if err := resetPeak(pid); err != nil {
		v.r.PeakNotReset = true
		v.logf("cannot reset the master's VmHWM (%v): its peak is since it started", err)
	}
	var err error
	if v.r.LogRSSBefore, err = status(pid, "VmRSS"); err != nil {
		return err
	}
	start := time.Now()
	t, err := v.sys.submit(ctx, "log", 1)
	if err != nil {
		return err
	}
	if err := v.wait(ctx, t, 10*time.Millisecond, logTimeout); err != nil {
		return err
	}
	v.r.LogTime = time.Since(start)
	if v.r.LogPeakRSS, err = status(pid, "VmHWM"); err != nil {
		return err
	}
	lines, size := stdoutLines(v.sizes.LogBytes)
	v.r.LogMBps = float64(size) / 1e6 / v.r.LogTime.Seconds()
	stored, complete, err := v.sys.logLines(ctx, t)
	if err != nil {
		return err
	}
	v.r.LogLines = stored
	// The output's lines, and a few header lines.
	if !complete || stored < lines || stored > lines+200 {
		return fmt.Errorf("the stored log has %d lines (complete %v); the step wrote %d", stored, complete, lines)
	}
	v.logf("%d bytes of output in %s (%.1f MB/s), %d lines stored; master RSS %s before, peak %s",
		size, v.r.LogTime.Round(time.Millisecond), v.r.LogMBps, stored, mib(v.r.LogRSSBefore), mib(v.r.LogPeakRSS))
	return nil
}

// throughput runs Builds one-step builds over the workers.
func (v *versus) throughput(ctx context.Context) error {
	n := v.sizes.Builds
	var cpu cpuMeter
	cpu.start(v.sys.pid())
	start := time.Now()
	t, err := v.sys.submit(ctx, "one", n)
	if err != nil {
		return err
	}
	if err := v.wait(ctx, t, 10*time.Millisecond, buildTimeout+time.Duration(n)*time.Second); err != nil {
		return err
	}
	v.r.BuildsTime = time.Since(start)
	used, err := cpu.stop()
	if err != nil {
		return err
	}
	v.r.BuildsPerSec = float64(n) / v.r.BuildsTime.Seconds()
	v.r.MasterCPUPerBuild = used[0] / time.Duration(n)
	if s, ok := v.sys.(spanner); ok {
		if v.r.DBSpan, err = s.span(ctx, t); err != nil {
			return err
		}
	}
	v.logf("%d one-step builds over %d workers in %s: %.1f builds/s; master CPU per build %s",
		n, v.sizes.Workers, v.r.BuildsTime.Round(time.Millisecond), v.r.BuildsPerSec, v.r.MasterCPUPerBuild)
	return nil
}

// kilnSystem is a benchmaster driven through its JSON API.
type kilnSystem struct {
	bin, dir, addr string
	sizes          Sizes
	m              *master
	ids            map[string]int64 // builder IDs by name
}

func (k *kilnSystem) name() string { return "Kiln" }
func (k *kilnSystem) pid() int     { return k.m.pid() }

func (k *kilnSystem) prepare(context.Context) error { return os.MkdirAll(k.dir, 0o755) }

func (k *kilnSystem) start(ctx context.Context) error {
	m, err := startMaster(ctx, k.bin, k.dir, k.sizes.Workers, k.sizes,
		"-workers", k.addr, "-idle", strconv.Itoa(k.sizes.IdleWorkers))
	if err != nil {
		return err
	}
	k.m, k.ids = m, map[string]int64{}
	for _, b := range []string{"one", "ten", "log"} {
		if k.ids[b], err = m.api.builderID(ctx, b); err != nil {
			m.stop()
			return err
		}
	}
	return nil
}

func (k *kilnSystem) failed() error {
	if k.m.exited() {
		return fmt.Errorf("the master exited (%v): %s", k.m.err, k.m.tail())
	}
	return nil
}

func (k *kilnSystem) connected(ctx context.Context) (int, error) { return k.m.api.connected(ctx) }

func (k *kilnSystem) submit(ctx context.Context, builder string, n int) (ticket, error) {
	t := ticket{builder: builder, n: n}
	var err error
	if n == 1 {
		var brid int64
		brid, err = k.m.api.force(ctx, builder)
		t.brids = []int64{brid}
	} else {
		t.brids, err = forceMany(ctx, k.m, builder, n)
	}
	return t, err
}

func (k *kilnSystem) done(ctx context.Context, t ticket) (bool, error) {
	if len(t.brids) == 1 {
		r, err := k.m.api.request(ctx, t.brids[0])
		if err != nil || !r.Complete {
			return false, err
		}
		if r.Results == nil || *r.Results != 0 {
			return false, fmt.Errorf("build request %d: results %v, not SUCCESS (0)", r.ID, deref(r.Results))
		}
		return true, nil
	}
	left, err := k.m.api.incomplete(ctx, k.ids[t.builder])
	if err != nil || left > 0 {
		return false, err
	}
	reqs, err := k.m.api.requests(ctx, k.ids[t.builder], "true")
	if err != nil {
		return false, err
	}
	byID := map[int64]*request{}
	for _, r := range reqs {
		byID[r.ID] = r
	}
	for _, id := range t.brids {
		r := byID[id]
		if r == nil {
			return false, fmt.Errorf("build request %d is not complete", id)
		}
		if r.Results == nil || *r.Results != 0 {
			return false, fmt.Errorf("build request %d: results %v, not SUCCESS (0)", id, deref(r.Results))
		}
	}
	return true, nil
}

func (k *kilnSystem) logLines(ctx context.Context, t ticket) (int, bool, error) {
	builds, err := k.m.api.builds(ctx, k.ids["log"])
	if err != nil {
		return 0, false, err
	}
	i := slices.IndexFunc(builds, func(bd *build) bool { return bd.BuildRequestID == t.brids[0] })
	if i < 0 {
		return 0, false, fmt.Errorf("no build for build request %d", t.brids[0])
	}
	lg, err := k.m.api.stepLog(ctx, builds[i].ID, "log", "stdio")
	if err != nil {
		return 0, false, err
	}
	return lg.NumLines, lg.Complete, nil
}

func (k *kilnSystem) stop() {
	if k.m != nil {
		k.m.stop()
	}
}

// The table of the -versus mode.

// A versusRow is a line of the table: what, and a figure of each result
// with its unit.
type versusRow struct {
	what  string
	value func(r *versusResult) float64
	unit  string
}

func printVersusTable(out io.Writer, m machineInfo, results []*versusResult, pollEvery time.Duration) {
	if len(results) != 2 {
		return
	}
	k, b := results[0], results[1]
	fmt.Fprintf(out, "%s (%s) and %s (%s, msgpack_experimental_v7) over loopback, one after the other, on this machine: %d CPUs (%s), %s of memory; load average %s before, %s after\n\n",
		k.System, k.Worker, b.System, b.Worker, m.cpus, m.model, memTotal(), m.loadStart, m.loadEnd)
	sizes := func(what string, n func(s Sizes) int) string {
		kn, bn := n(k.Sizes), n(b.Sizes)
		if kn == bn {
			return fmt.Sprintf("%s (%d)", what, kn)
		}
		return fmt.Sprintf("%s (%d; Buildbot: %d)", what, kn, bn)
	}
	_, logSize := stdoutLines(k.Sizes.LogBytes)
	rows := []versusRow{
		{"cold start to accepting workers", func(r *versusResult) float64 { return ms64(r.ColdStart) }, "ms"},
		{"master RSS idle, no worker attached", func(r *versusResult) float64 { return mib64(r.IdleRSS) }, "MiB"},
		{sizes("master RSS per idle attached worker", func(s Sizes) int { return s.IdleWorkers }), func(r *versusResult) float64 { return r.PerIdleWorker / 1024 }, "KiB"},
		{sizes("one-step build (true), median of builds one at a time", func(s Sizes) int { return s.LatencyBuilds }), func(r *versusResult) float64 { return ms64(r.Median) }, "ms"},
		{sizes("ten-step build, median of builds one at a time", func(s Sizes) int { return s.TenBuilds }), func(r *versusResult) float64 { return ms64(r.TenMedian) }, "ms"},
		{sizes(fmt.Sprintf("one-step builds over %d workers", k.Sizes.Workers), func(s Sizes) int { return s.Builds }), func(r *versusResult) float64 { return r.BuildsPerSec }, "builds/s"},
		{"master CPU per build, in the builds over workers", func(r *versusResult) float64 { return ms64(r.MasterCPUPerBuild) }, "ms"},
		{fmt.Sprintf("%s MB of stdout (lines of 99 bytes, %s MB with newlines%s) into the store", figure(float64(k.Sizes.LogBytes)/1e6), figure(float64(logSize)/1e6), logSource(k.Sizes)),
			func(r *versusResult) float64 { return r.LogMBps }, "MB/s"},
		{"master peak RSS (VmHWM) during the stdout build", func(r *versusResult) float64 { return mib64(r.LogPeakRSS) }, "MiB"},
	}
	fmt.Fprintf(out, "| what | %s | %s | %s / %s |\n|---|---|---|---|\n", k.System, b.System, strings.Fields(b.System)[0], k.System)
	for _, rw := range rows {
		kv, bv := rw.value(k), rw.value(b)
		fmt.Fprintf(out, "| %s | %s %s | %s %s | %s |\n", rw.what, figure(kv), rw.unit, figure(bv), rw.unit, ratio(bv, kv))
	}
	fmt.Fprintf(out, "\nKiln: builds forced through the master's JSON API (the force scheduler's JSON-RPC call), 4 requests at a time for the builds over workers; build requests polled in the API.\n")
	fmt.Fprintf(out, "Buildbot: no web UI; builds asked for by changes sent to a PBChangeSource with Buildbot's sendchange client (buildbot.clients.sendchange, as `buildbot sendchange`), one Python process sending them one after the other, one SingleBranchScheduler per builder; build requests (complete, results) polled in its state.sqlite. Its master, as shipped, writes every msgpack_experimental_v7 message to twistd.log.\n")
	fmt.Fprintf(out, "state.sqlite keeps whole seconds, so the times are the driver's clock; by its timestamps (first buildrequests.submitted_at to last builds.complete_at) the %d builds over workers took %.0f s",
		b.Sizes.Builds, b.DBSpan.Seconds())
	if b.DBSpan > 0 {
		fmt.Fprintf(out, ", %.1f builds/s", float64(b.Sizes.Builds)/b.DBSpan.Seconds())
	}
	fmt.Fprintf(out, ".\n")
	fmt.Fprintf(out, "Times run from the request sent to the build request seen complete, polled every %s from 3/4 of the fastest build yet (every 10 ms for the others).\n", pollEvery)
	fmt.Fprintf(out, "Cold start: from starting the master process (Buildbot: `buildbot start --nodaemon` of a folder made by create-master, its database created; Kiln: an empty folder) to a worker's WebSocket handshake answered.\n")
	fmt.Fprintf(out, "Memory: VmRSS and VmHWM of the master process (Buildbot's twistd); per idle worker: (RSS with them attached - RSS idle) / their number.\n")
}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib64(n int64) float64        { return float64(n) / (1 << 20) }

// figure formats a value with three significant digits or more.
func figure(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// ratio formats a/b with two significant digits or more.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	r := a / b
	switch {
	case r >= 10:
		return strconv.FormatFloat(r, 'f', 0, 64) + "×"
	case r >= 1:
		return strconv.FormatFloat(r, 'f', 1, 64) + "×"
	default:
		return strconv.FormatFloat(r, 'g', 2, 64) + "×"
	}
}

// memTotal returns the machine's memory, from /proc/meminfo.
func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	return "unknown"
}
