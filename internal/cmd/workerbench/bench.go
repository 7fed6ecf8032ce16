//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sizes say how much of each measurement runs for one kind of worker.
type Sizes struct {
	// LatencyBuilds is how many one-step builds run one at a time on one
	// worker (after a few not counted).
	LatencyBuilds int
	// TenBuilds is how many ten-step builds run one at a time (-versus
	// mode).
	TenBuilds int
	// Builds is how many one-step builds run over Workers workers.
	Builds  int
	Workers int
	// IdleWorkers is how many idle workers are started together.
	IdleWorkers int
	// LogBytes is how many bytes (without newlines) the log step writes.
	LogBytes int64
	// LogFile, if not empty, is a file holding those bytes (see
	// writeLogFile), which the log step writes with cat instead of
	// making them with yes and head.
	LogFile string
	// Outages are the lengths of the master restarts the idle workers
	// live through: the master stops, stays away that long, and starts
	// again on the same ports.
	Outages []time.Duration
}

func (s Sizes) check() error {
	var errs []error
	if s.LatencyBuilds < 1 || s.Builds < 1 || s.Workers < 1 || s.IdleWorkers < 1 {
		errs = append(errs, fmt.Errorf("the numbers of builds and workers must be positive (%+v)", s))
	}
	if s.LogBytes < 1 {
		errs = append(errs, fmt.Errorf("the log must have at least a byte (%d)", s.LogBytes))
	}
	return errors.Join(errs...)
}

// Result holds the figures measured for one kind of worker.
type Result struct {
	Kind  string
	Sizes Sizes

	// Latency holds the times from force request to completed build,
	// sorted; Median and P90 summarize them.
	Latency     []time.Duration
	Median, P90 time.Duration
	// LatencyMasterCPU and LatencyWorkerCPU are the CPU time per build of
	// the master (answering the polls included) and of the worker.
	LatencyMasterCPU, LatencyWorkerCPU time.Duration

	// BuildsTime is the time from the first force request of Builds
	// builds to the last one's completion.
	BuildsTime   time.Duration
	BuildsPerSec float64
	// PerWorker counts the builds each worker ran.
	PerWorker map[string]int
	// MasterCPUPerBuild is the master's CPU time per build.
	MasterCPUPerBuild time.Duration

	// LogTime is the time from the force request of the log build to its
	// completion, its log stored; LogMBps the rate of its standard output
	// (newlines included) into the store.
	LogTime time.Duration
	LogMBps float64
	// LogLines is the stored log's num_lines; LogMinLines the lines of
	// output the step writes (the log has a few header lines more).
	LogLines, LogMinLines int
	// LogRSSBefore is the master's resident size before the log build;
	// LogPeakRSS its peak during it (VmHWM, reset before the build unless
	// PeakNotReset).
	LogRSSBefore, LogPeakRSS int64
	PeakNotReset             bool
	// LogMasterCPU and LogWorkerCPU are the CPU time the master and the
	// worker spent on the log build.
	LogMasterCPU, LogWorkerCPU time.Duration

	// IdleBase is the master's resident size with no worker attached,
	// IdleWith with IdleWorkers attached; PerIdleWorker the difference
	// per worker.
	IdleBase, IdleWith int64
	PerIdleWorker      float64
	// Reattach holds, for each of Outages, the time from the master
	// being back (its API answering) to all the idle workers attached.
	Reattach []time.Duration
	// AttachTime is the time from starting IdleWorkers workers together
	// until the master has them all attached.
	AttachTime time.Duration
	// SpawnTime is the part of AttachTime spent starting the processes,
	// one after the other; AttachTime-SpawnTime is how long after the
	// last one started all were attached.
	SpawnTime time.Duration
	// WorkerRSS and WorkerRSSMax are the median and largest resident
	// size of the idle workers.
	WorkerRSS, WorkerRSSMax int64
}

// A bench runs the measurements of one kind of worker.
type bench struct {
	master   string // the benchmaster binary
	dir      string // where the masters and workers live
	kind     kind
	sizes    Sizes
	poll     time.Duration // how often a build's completion is polled
	progress io.Writer
	// cpuProfile is where the builds' master writes its CPU profile
	// (none if empty).
	cpuProfile string
	r          *Result
	w1         *proc // the worker of the latency and log builds
}

// Timeouts of the waits.
const (
	attachTimeout = 5 * time.Minute
	buildTimeout  = 5 * time.Minute
	logTimeout    = 15 * time.Minute
	// settle is how long the master is left alone before its resident
	// size is read.
	settle = time.Second
	// warmup is how many builds run before those whose latency counts.
	warmup = 3
)

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "%s: "+format+"\n", append([]any{b.kind.name}, args...)...)
}

func (b *bench) run(ctx context.Context) (*Result, error) {
	b.r = &Result{Kind: b.kind.name, Sizes: b.sizes}
	if err := b.idle(ctx); err != nil {
		return nil, fmt.Errorf("%s: idle workers: %w", b.kind.name, err)
	}
	if err := b.builds(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", b.kind.name, err)
	}
	return b.r, nil
}

// idle starts IdleWorkers workers together against a master of their own
// and measures how long they take to be attached and what memory they
// cost.
func (b *bench) idle(ctx context.Context) error {
	n := b.sizes.IdleWorkers
	dir := filepath.Join(b.dir, "idle")
	m, err := startMaster(ctx, b.master, filepath.Join(dir, "master"), n, b.sizes)
	if err != nil {
		return err
	}
	defer func() { m.stop() }() // the master of the last restart
	names := workerNames(1, n)
	b.logf("creating %d workers", n)
	dirs, err := createWorkers(ctx, b.kind, filepath.Join(dir, "workers"), m.workerAddr, names, runtime.NumCPU())
	if err != nil {
		return err
	}
	time.Sleep(settle)
	if b.r.IdleBase, err = status(m.pid(), "VmRSS"); err != nil {
		return err
	}
	start := time.Now()
	ps, err := startWorkers(b.kind, orderedDirs(dirs, names))
	if err != nil {
		return err
	}
	b.r.SpawnTime = time.Since(start)
	defer stopAll(ps)
	if err := waitConnected(ctx, m, ps, n, 10*time.Millisecond); err != nil {
		return err
	}
	b.r.AttachTime = time.Since(start)
	b.logf("%d workers attached in %s (their processes started in %s)", n, b.r.AttachTime.Round(time.Millisecond), b.r.SpawnTime.Round(time.Millisecond))
	time.Sleep(settle)
	if b.r.IdleWith, err = status(m.pid(), "VmRSS"); err != nil {
		return err
	}
	b.r.PerIdleWorker = float64(b.r.IdleWith-b.r.IdleBase) / float64(n)
	var rss []int64
	for _, p := range ps {
		v, err := status(p.pid(), "VmRSS")
		if err != nil {
			return err
		}
		rss = append(rss, v)
	}
	slices.Sort(rss)
	b.r.WorkerRSS, b.r.WorkerRSSMax = rss[len(rss)/2], rss[len(rss)-1]

	// Restarts: how soon the workers are back after outages of the master.
	for _, outage := range b.sizes.Outages {
		b.logf("stopping the master for %s", outage)
		m.stop()
		time.Sleep(outage)
		if m, err = startMaster(ctx, b.master, filepath.Join(dir, "master"), n, b.sizes, "-workers", m.workerAddr, "-http", strings.TrimPrefix(m.api.base, "http://")); err != nil {
			return err
		}
		back := time.Now()
		if err := waitConnected(ctx, m, ps, n, 10*time.Millisecond); err != nil {
			return err
		}
		b.r.Reattach = append(b.r.Reattach, time.Since(back))
		b.logf("%d workers back %s after the master, after a %s outage", n, time.Since(back).Round(time.Millisecond), outage)
	}
	return nil
}

func orderedDirs(dirs map[string]string, names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, dirs[n])
	}
	return out
}

// waitConnected waits until the master has n workers connected, checking
// that the worker processes are still running.
func waitConnected(ctx context.Context, m *master, ps []*proc, n int, interval time.Duration) error {
	got := 0
	err := poll(ctx, attachTimeout, interval, func() (bool, error) {
		for _, p := range ps {
			if p.exited() {
				return false, fmt.Errorf("worker %s exited (%v): %s", filepath.Base(p.out), p.err, p.tail())
			}
		}
		if m.exited() {
			return false, fmt.Errorf("the master exited (%v): %s", m.err, m.tail())
		}
		var err error
		got, err = m.api.connected(ctx)
		return got >= n, err
	})
	if err != nil {
		return fmt.Errorf("waiting for %d workers to attach (%d are): %w", n, got, err)
	}
	return nil
}

// builds measures builds against a master of their own: the latency of
// one-step builds on one worker, the log build on that worker, then the
// rate of one-step builds over Workers workers.
func (b *bench) builds(ctx context.Context) error {
	dir := filepath.Join(b.dir, "builds")
	var flags []string
	if b.cpuProfile != "" {
		flags = []string{"-cpuprofile", b.cpuProfile}
	}
	m, err := startMaster(ctx, b.master, filepath.Join(dir, "master"), b.sizes.Workers, b.sizes, flags...)
	if err != nil {
		return err
	}
	defer m.stop()
	names := workerNames(1, b.sizes.Workers)
	dirs, err := createWorkers(ctx, b.kind, filepath.Join(dir, "workers"), m.workerAddr, names, runtime.NumCPU())
	if err != nil {
		return err
	}
	first, err := startWorkers(b.kind, orderedDirs(dirs, names[:1]))
	if err != nil {
		return err
	}
	defer stopAll(first)
	if err := waitConnected(ctx, m, first, 1, 10*time.Millisecond); err != nil {
		return err
	}
	b.w1 = first[0]
	one, err := m.api.builderID(ctx, "one")
	if err != nil {
		return err
	}
	if err := b.latency(ctx, m); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if err := b.log(ctx, m); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	rest, err := startWorkers(b.kind, orderedDirs(dirs, names[1:]))
	if err != nil {
		return err
	}
	defer stopAll(rest)
	if err := waitConnected(ctx, m, slices.Concat(first, rest), b.sizes.Workers, 10*time.Millisecond); err != nil {
		return err
	}
	if err := b.throughput(ctx, m, one); err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	return nil
}

// wait polls a build request until it is complete, and checks that its
// build succeeded.
func wait(ctx context.Context, m *master, brid int64, interval, timeout time.Duration) error {
	var r *request
	err := poll(ctx, timeout, interval, func() (bool, error) {
		if m.exited() {
			return false, fmt.Errorf("the master exited (%v): %s", m.err, m.tail())
		}
		var err error
		r, err = m.api.request(ctx, brid)
		return err == nil && r.Complete, err
	})
	if err != nil {
		return fmt.Errorf("build request %d: %w", brid, err)
	}
	if r.Results == nil || *r.Results != 0 {
		return fmt.Errorf("build request %d: results %v, not SUCCESS (0)", brid, deref(r.Results))
	}
	return nil
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// latency runs one-step builds one at a time. Polls cost the master CPU
// time, which the build would otherwise have, so the first poll of a
// build waits for three quarters of the fastest build yet.
func (b *bench) latency(ctx context.Context, m *master) error {
	var times []time.Duration
	var cpu cpuMeter
	fastest := time.Duration(0)
	for i := range warmup + b.sizes.LatencyBuilds {
		if i == warmup {
			cpu.start(m.pid(), b.w1.pid())
		}
		start := time.Now()
		brid, err := m.api.force(ctx, "one")
		if err != nil {
			return err
		}
		time.Sleep(time.Until(start.Add(fastest * 3 / 4)))
		if err := wait(ctx, m, brid, b.poll, buildTimeout); err != nil {
			return err
		}
		d := time.Since(start)
		if i >= warmup {
			times = append(times, d)
		}
		if fastest == 0 || d < fastest {
			fastest = d
		}
	}
	used, err := cpu.stop()
	if err != nil {
		return err
	}
	n := time.Duration(len(times))
	b.r.LatencyMasterCPU, b.r.LatencyWorkerCPU = used[0]/n, used[1]/n
	slices.Sort(times)
	b.r.Latency = times
	b.r.Median = times[len(times)/2]
	b.r.P90 = times[(len(times)*9+9)/10-1]
	b.logf("%d one-step builds one at a time: median %s, p90 %s; CPU per build: master %s, worker %s", len(times),
		b.r.Median.Round(10*time.Microsecond), b.r.P90.Round(10*time.Microsecond), b.r.LatencyMasterCPU, b.r.LatencyWorkerCPU)
	return nil
}

// stdoutLines returns how many lines of output the log step writes for n
// bytes, and how many bytes that output has, newlines included (fold ends
// the last line without one).
func stdoutLines(n int64) (lines int, size int64) {
	l := (n + 98) / 99
	return int(l), n + l - 1
}

// writeLogFile writes to path the n bytes the log step writes: lines of
// 99 characters and a newline, the last without one.
func writeLogFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	line := []byte(strings.Repeat("a", 99) + "\n")
	lines, _ := stdoutLines(n)
	for range lines - 1 {
		w.Write(line)
	}
	w.Write(line[:n-99*int64(lines-1)])
	return errors.Join(w.Flush(), f.Close())
}

// logSource says where the log step's output comes from, for a table.
func logSource(s Sizes) string {
	if s.LogFile != "" {
		return ", cat of a file"
	}
	return ""
}

// log runs the log build and measures its rate and the master's memory.
func (b *bench) log(ctx context.Context, m *master) error {
	logID, err := m.api.builderID(ctx, "log")
	if err != nil {
		return err
	}
	time.Sleep(settle)
	if err := resetPeak(m.pid()); err != nil {
		b.r.PeakNotReset = true
		b.logf("cannot reset the master's VmHWM (%v): its peak is since it started", err)
	}
	if b.r.LogRSSBefore, err = status(m.pid(), "VmRSS"); err != nil {
		return err
	}
	var cpu cpuMeter
	cpu.start(m.pid(), b.w1.pid())
	start := time.Now()
	brid, err := m.api.force(ctx, "log")
	if err != nil {
		return err
	}
	if err := wait(ctx, m, brid, 10*time.Millisecond, logTimeout); err != nil {
		return err
	}
	b.r.LogTime = time.Since(start)
	if b.r.LogPeakRSS, err = status(m.pid(), "VmHWM"); err != nil {
		return err
	}
	used, err := cpu.stop()
	if err != nil {
		return err
	}
	b.r.LogMasterCPU, b.r.LogWorkerCPU = used[0], used[1]
	lines, size := stdoutLines(b.sizes.LogBytes)
	b.r.LogMBps = float64(size) / 1e6 / b.r.LogTime.Seconds()
	b.r.LogMinLines = lines

	builds, err := m.api.builds(ctx, logID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(builds, func(bd *build) bool { return bd.BuildRequestID == brid })
	if i < 0 {
		return fmt.Errorf("no build for build request %d", brid)
	}
	lg, err := m.api.stepLog(ctx, builds[i].ID, "log", "stdio")
	if err != nil {
		return err
	}
	b.r.LogLines = lg.NumLines
	// The output's lines, and a few header lines: the command, its
	// folder, its environment, its exit code and time.
	if !lg.Complete || lg.NumLines < lines || lg.NumLines > lines+200 {
		return fmt.Errorf("the stored log has %d lines (complete %v); the step wrote %d", lg.NumLines, lg.Complete, lines)
	}
	// The stored text, after the measurement: what the step wrote, whole.
	if err := m.api.checkOutput(ctx, lg.ID, lines, int(b.sizes.LogBytes-99*int64(lines-1))); err != nil {
		return err
	}
	b.logf("%d bytes of output in %s (%.1f MB/s), %d lines stored; master RSS %s before, peak %s; CPU: master %s, worker %s",
		size, b.r.LogTime.Round(time.Millisecond), b.r.LogMBps, lg.NumLines, mib(b.r.LogRSSBefore), mib(b.r.LogPeakRSS),
		b.r.LogMasterCPU, b.r.LogWorkerCPU)
	return nil
}

// submitters is how many force requests the throughput measurement sends
// at once.
const submitters = 4

// ratePoll is how often the rate measurement asks the master how many of
// its requests are not complete. Each question costs the master a count
// of the builder's unfinished requests, which the master CPU per build
// includes: every 10 ms, that was about one count per build (12% of the
// master's CPU profile over 2,000 builds); every 50 ms, the end of a run
// of several seconds is seen at most 50 ms late.
const ratePoll = 50 * time.Millisecond

// forceMany forces n builds of the builder, submitters requests at a
// time, and returns their build requests' IDs.
func forceMany(ctx context.Context, m *master, builder string, n int) ([]int64, error) {
	brids := make(chan int64, n)
	errs := make(chan error, submitters)
	var next sync.Mutex
	left := n
	var wg sync.WaitGroup
	for range submitters {
		wg.Go(func() {
			for {
				next.Lock()
				if left == 0 {
					next.Unlock()
					return
				}
				left--
				next.Unlock()
				brid, err := m.api.force(ctx, builder)
				if err != nil {
					errs <- err
					return
				}
				brids <- brid
			}
		})
	}
	wg.Wait()
	close(brids)
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	var ids []int64
	for id := range brids {
		ids = append(ids, id)
	}
	return ids, nil
}

// throughput runs Builds one-step builds over the workers.
func (b *bench) throughput(ctx context.Context, m *master, builderID int64) error {
	n := b.sizes.Builds
	cpu, err := cpuTime(m.pid())
	if err != nil {
		return err
	}
	start := time.Now()
	brids, err := forceMany(ctx, m, "one", n)
	if err != nil {
		return err
	}
	submitted := time.Since(start)
	err = poll(ctx, buildTimeout+time.Duration(n)*time.Second, ratePoll, func() (bool, error) {
		if m.exited() {
			return false, fmt.Errorf("the master exited (%v): %s", m.err, m.tail())
		}
		left, err := m.api.incomplete(ctx, builderID)
		return left == 0, err
	})
	if err != nil {
		return err
	}
	b.r.BuildsTime = time.Since(start)
	cpu2, err := cpuTime(m.pid())
	if err != nil {
		return err
	}
	b.r.BuildsPerSec = float64(n) / b.r.BuildsTime.Seconds()
	b.r.MasterCPUPerBuild = (cpu2 - cpu) / time.Duration(n)

	ours := map[int64]bool{}
	for _, id := range brids {
		ours[id] = true
	}
	reqs, err := m.api.requests(ctx, builderID, "true")
	if err != nil {
		return err
	}
	done := 0
	for _, r := range reqs {
		if !ours[r.ID] {
			continue
		}
		done++
		if r.Results == nil || *r.Results != 0 {
			return fmt.Errorf("build request %d: results %v, not SUCCESS (0)", r.ID, deref(r.Results))
		}
	}
	if done != n {
		return fmt.Errorf("%d of %d build requests complete", done, n)
	}
	workers, err := m.api.workerIDs(ctx)
	if err != nil {
		return err
	}
	builds, err := m.api.builds(ctx, builderID)
	if err != nil {
		return err
	}
	b.r.PerWorker = map[string]int{}
	for _, bd := range builds {
		if ours[bd.BuildRequestID] {
			b.r.PerWorker[workers[bd.WorkerID]]++
		}
	}
	b.logf("%d one-step builds over %d workers in %s (submitted in %s): %.1f builds/s; per worker %v",
		n, b.sizes.Workers, b.r.BuildsTime.Round(time.Millisecond), submitted.Round(time.Millisecond), b.r.BuildsPerSec, b.r.PerWorker)
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// removeAll removes the benchmark's folder, reporting a failure.
func removeAll(dir string, progress io.Writer) {
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(progress, "workerbench:", err)
	}
}
