//go:build linux

// Command workerbench measures network workers, as whole processes, against
// a Kiln master over loopback: kiln-worker and, for comparison, Buildbot's
// stock buildbot-worker. It builds nothing itself: it is given the
// benchmaster and kiln-worker binaries, starts the master and the workers
// as processes, forces builds through the master's JSON API, reads the
// processes' memory in /proc and prints a table of, for each kind of
// worker:
//
//   - the latency of a one-step build (true), from the force request to
//     the completed build, builds run one at a time on one worker: median
//     and 90th percentile (the build request is polled every -poll);
//   - the rate of one-step builds over several workers;
//   - the rate at which a step's standard output reaches the store (a step
//     writing -log-bytes bytes in lines of 99 characters, made by yes and
//     head, or with -log-file written beforehand to a file the step cats,
//     so that making them takes less from the processes measured; the
//     build is complete and its log stored), and the master's peak
//     resident size (VmHWM) during that build; the stored log is then read
//     back and its lines of output compared with what the step wrote;
//   - the master's resident memory per idle attached worker, and the time
//     from starting the idle workers together until all are attached;
//   - the resident size of an idle worker.
//
// Each kind runs against two masters of its own: one for the idle workers,
// one for the builds. The stock worker is much slower, so it runs fewer
// builds and workers by default (the -stock-* flags); the table says how
// many ran. Run it on a quiet machine: the table gives the load average.
//
//	workerbench -master BIN -kiln-worker BIN [-kinds kiln-worker,buildbot-worker] [options]
//
// With -buildbot, it measures instead the workers serving a stock Buildbot
// master (Debian's buildbot, over msgpack_experimental_v7): the rate of
// -buildbot-builds one-step builds on one worker, the CPU time per build
// of the master and the worker, and the worker's resident size after the
// builds, for each kind.
//
//	workerbench -buildbot /usr/bin/buildbot -kiln-worker BIN [-buildbot-builds 200]
//
// With -versus, it runs one workload on two systems, one after the other,
// and prints one table of both with the ratio (Buildbot / Kiln): a Kiln
// master (benchmaster) with kiln-workers, and a stock Buildbot master
// (create-master and a generated master.cfg with benchmaster's builders
// and steps) with buildbot-workers. The workload: the master's cold start
// until a worker's WebSocket handshake is answered; its resident memory
// idle and per idle attached worker (-idle-workers); the median of
// one-step and of ten-step builds run one at a time (-latency-builds,
// -ten-builds); the rate of one-step builds over -workers workers
// (-builds) and the master's CPU time per build; a step writing
// -log-bytes bytes of standard output, its rate into the store and the
// master's peak resident size (VmHWM) meanwhile. The -stock-* flags size
// Buildbot's share. Kiln's builds are forced through its JSON API;
// Buildbot's are asked for by changes sent to a PBChangeSource with
// Buildbot's own sendchange client, and their build requests read in its
// state.sqlite (see versus.go).
//
//	workerbench -versus /usr/bin/buildbot -master BIN -kiln-worker BIN [options]
//
// With -master-cpuprofile FILE, the master of the builds writes a CPU
// profile of its run to FILE.KIND (go tool pprof reads it with the
// benchmaster binary).
//
// scripts/bench-workers builds the binaries and runs it; so does
// scripts/bench-vs-buildbot, with -versus. It reads Linux's /proc.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
}

// The kinds of worker.
const (
	kindKiln     = "kiln-worker"
	kindBuildbot = "buildbot-worker"
)

// run runs the benchmark as the command line args say, prints the table to
// out and progress to progress, and returns the results.
func run(ctx context.Context, args []string, out, progress io.Writer) ([]*Result, error) {
	fs := flag.NewFlagSet("workerbench", flag.ContinueOnError)
	fs.SetOutput(progress)
	masterBin := fs.String("master", "", "the benchmaster binary (required)")
	kilnBin := fs.String("kiln-worker", "", "the kiln-worker binary (required for kind kiln-worker)")
	buildbotBin := fs.String("buildbot-worker", "buildbot-worker", "Buildbot's worker program")
	kinds := fs.String("kinds", kindKiln+","+kindBuildbot, "the kinds of worker to measure, comma-separated")
	dir := fs.String("dir", "", "folder for the masters and workers (a temporary folder, removed at the end, if empty)")
	pollEvery := fs.Duration("poll", time.Millisecond, "how often a one-step build's request is polled for completion")
	var kiln, stock Sizes
	fs.IntVar(&kiln.LatencyBuilds, "latency-builds", 200, "one-step builds run one at a time (kiln-worker)")
	fs.IntVar(&kiln.Builds, "builds", 1000, "one-step builds run over -workers workers (kiln-worker)")
	fs.IntVar(&kiln.Workers, "workers", 4, "workers sharing the -builds builds")
	fs.IntVar(&kiln.IdleWorkers, "idle-workers", 200, "idle workers started together (kiln-worker)")
	fs.Int64Var(&kiln.LogBytes, "log-bytes", 100_000_000, "bytes the log step writes, without newlines")
	logFile := fs.Bool("log-file", false, "the log step writes its bytes with cat from a file written beforehand, instead of making them with yes and head (whose CPU time is then not taken from the master and the worker)")
	outages := fs.String("outages", "2s,20s", "lengths of the master restarts the idle workers live through, comma-separated (none if empty)")
	fs.IntVar(&stock.LatencyBuilds, "stock-latency-builds", 50, "one-step builds run one at a time (buildbot-worker)")
	fs.IntVar(&stock.Builds, "stock-builds", 200, "one-step builds over -workers workers (buildbot-worker)")
	fs.IntVar(&stock.IdleWorkers, "stock-idle-workers", 50, "idle workers started together (buildbot-worker)")
	cpuProfile := fs.String("master-cpuprofile", "", "file to write a CPU profile of the builds' master (latency, log and rate runs) to (none if empty)")
	buildbot := fs.String("buildbot", "", "measure workers serving a stock Buildbot master, this buildbot program, instead of a Kiln master")
	buildbotBuilds := fs.Int("buildbot-builds", 200, "one-step builds on the Buildbot master, for each kind (-buildbot)")
	versusBuildbot := fs.String("versus", "", "run the workload on a Kiln master with kiln-workers and on a stock Buildbot master, this buildbot program, with buildbot-workers (the -stock-* sizes), and compare")
	fs.IntVar(&kiln.TenBuilds, "ten-builds", 50, "ten-step builds run one at a time (-versus)")
	fs.IntVar(&stock.TenBuilds, "stock-ten-builds", 10, "ten-step builds run one at a time on Buildbot (-versus)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	stock.Workers, stock.LogBytes = kiln.Workers, kiln.LogBytes
	for o := range strings.SplitSeq(*outages, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		d, err := time.ParseDuration(o)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("-outages: %q is not a duration", o)
		}
		kiln.Outages = append(kiln.Outages, d)
	}
	stock.Outages = kiln.Outages

	var problems []error
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if *buildbot != "" && *versusBuildbot != "" {
		problems = append(problems, errors.New("-buildbot and -versus are exclusive"))
	}
	if *versusBuildbot != "" {
		if *kilnBin == "" {
			problems = append(problems, errors.New("-kiln-worker is required"))
		}
		if kiln.TenBuilds < 1 || stock.TenBuilds < 1 {
			problems = append(problems, errors.New("-ten-builds and -stock-ten-builds must be positive"))
		}
		problems = append(problems, kiln.check(), stock.check())
	}
	if *masterBin == "" && *buildbot == "" {
		problems = append(problems, errors.New("-master is required"))
	}
	if *buildbotBuilds < 1 {
		problems = append(problems, errors.New("-buildbot-builds must be at least 1"))
	}
	if *pollEvery <= 0 {
		problems = append(problems, errors.New("-poll must be positive"))
	}
	type job struct {
		kind  kind
		sizes Sizes
	}
	var jobs []job
	// The -versus mode's kinds are fixed: kiln-worker against Kiln,
	// buildbot-worker against Buildbot.
	for name := range strings.SplitSeq(*kinds, ",") {
		if *versusBuildbot != "" {
			break
		}
		switch name = strings.TrimSpace(name); name {
		case kindKiln:
			if *kilnBin == "" {
				problems = append(problems, errors.New("-kiln-worker is required to measure kiln-worker"))
			}
			jobs = append(jobs, job{kilnWorker(*kilnBin), kiln})
			problems = append(problems, kiln.check())
		case kindBuildbot:
			bin, err := exec.LookPath(*buildbotBin)
			if err != nil {
				problems = append(problems, fmt.Errorf("buildbot-worker: %w", err))
			}
			jobs = append(jobs, job{buildbotWorker(bin), stock})
			problems = append(problems, stock.check())
		default:
			problems = append(problems, fmt.Errorf("unknown kind of worker %q (%s or %s)", name, kindKiln, kindBuildbot))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}

	base := *dir
	if base == "" {
		d, err := os.MkdirTemp("", "workerbench-")
		if err != nil {
			return nil, err
		}
		base = d
		defer removeAll(d, progress)
	}
	if *logFile {
		kiln.LogFile = filepath.Join(base, "log-output.txt")
		if err := writeLogFile(kiln.LogFile, kiln.LogBytes); err != nil {
			return nil, fmt.Errorf("the log step's file: %w", err)
		}
		stock.LogFile = kiln.LogFile
		for i := range jobs {
			jobs[i].sizes.LogFile = kiln.LogFile
		}
	}
	if *versusBuildbot != "" {
		buildbot, err1 := exec.LookPath(*versusBuildbot)
		worker, err2 := exec.LookPath(*buildbotBin)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		_, err := runVersus(ctx, base, *masterBin, kilnWorker(*kilnBin), kiln, buildbot, buildbotWorker(worker), stock, *pollEvery, out, progress)
		return nil, err
	}
	m := machine()
	if *buildbot != "" {
		var results []*BuildbotResult
		for _, j := range jobs {
			r, err := benchBuildbot(ctx, *buildbot, j.kind, base+"/"+j.kind.name, *buildbotBuilds, progress)
			if err != nil {
				return nil, err
			}
			results = append(results, r)
		}
		m.loadEnd = loadAverage()
		printBuildbotTable(out, m, results)
		return nil, nil
	}
	var results []*Result
	for _, j := range jobs {
		b := &bench{master: *masterBin, dir: base + "/" + j.kind.name, kind: j.kind, sizes: j.sizes, poll: *pollEvery, progress: progress}
		if *cpuProfile != "" {
			b.cpuProfile = *cpuProfile + "." + j.kind.name
		}
		r, err := b.run(ctx)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	m.loadEnd = loadAverage()
	printTable(out, m, results, *pollEvery)
	return results, nil
}

// machineInfo describes where the benchmark ran.
type machineInfo struct {
	cpus               int
	model              string
	loadStart, loadEnd string
}

func machine() machineInfo {
	m := machineInfo{cpus: runtime.NumCPU(), model: "unknown CPU", loadStart: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAverage returns the 1, 5 and 15-minute load averages.
func loadAverage() string {
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

// A row is a line of the table: what, a value per result, the aim.
type row struct {
	what  string
	value func(r *Result) string
	aim   string
}

func printTable(out io.Writer, m machineInfo, results []*Result, pollEvery time.Duration) {
	fmt.Fprintf(out, "Network workers against a Kiln master over loopback: %d CPUs (%s); load average %s at the start, %s at the end\n\n",
		m.cpus, m.model, m.loadStart, m.loadEnd)
	rows := []row{
		{"one-step build (true), median", func(r *Result) string { return ms(r.Median) }, "< 10 ms"},
		{"  p90", func(r *Result) string { return ms(r.P90) }, ""},
		{"  builds, one at a time, one worker", func(r *Result) string { return fmt.Sprint(len(r.Latency)) }, ""},
		{"  CPU per build: master (polls included), worker", func(r *Result) string {
			return ms(r.LatencyMasterCPU) + ", " + ms(r.LatencyWorkerCPU)
		}, ""},
		{"one-step builds over workers", func(r *Result) string { return fmt.Sprintf("%.1f builds/s", r.BuildsPerSec) }, ""},
		{"  builds, workers", func(r *Result) string { return fmt.Sprintf("%d, %d", r.Sizes.Builds, r.Sizes.Workers) }, ""},
		{"  master CPU per build", func(r *Result) string { return ms(r.MasterCPUPerBuild) }, ""},
		{"stdout into the store" + logSource(results[0].Sizes), func(r *Result) string { return fmt.Sprintf("%.1f MB/s", r.LogMBps) }, "> 100 MB/s"},
		{"  bytes written, time", func(r *Result) string {
			_, size := stdoutLines(r.Sizes.LogBytes)
			return fmt.Sprintf("%.1f MB, %.2f s", float64(size)/1e6, r.LogTime.Seconds())
		}, ""},
		{"  master peak RSS (VmHWM)", func(r *Result) string {
			s := mib(r.LogPeakRSS)
			if r.PeakNotReset {
				s += " (since start)"
			}
			return s
		}, "< 64 MiB"},
		{"  master RSS before", func(r *Result) string { return mib(r.LogRSSBefore) }, ""},
		{"  CPU: master, worker", func(r *Result) string {
			return fmt.Sprintf("%.2f s, %.2f s", r.LogMasterCPU.Seconds(), r.LogWorkerCPU.Seconds())
		}, ""},
		{"  stored lines (num_lines)", func(r *Result) string { return fmt.Sprintf("%d (%d of output)", r.LogLines, r.LogMinLines) }, ""},
		{"master RSS per idle worker", func(r *Result) string { return fmt.Sprintf("%.1f KiB", r.PerIdleWorker/1024) }, "< 32 KiB"},
		{"  master RSS, none / all attached", func(r *Result) string { return mib(r.IdleBase) + " / " + mib(r.IdleWith) }, ""},
		{"  idle workers", func(r *Result) string { return fmt.Sprint(r.Sizes.IdleWorkers) }, ""},
		{"idle workers started together, all attached", func(r *Result) string { return fmt.Sprintf("%.2f s", r.AttachTime.Seconds()) }, "200 in < 2 s"},
		{"  of which starting the processes", func(r *Result) string { return fmt.Sprintf("%.2f s", r.SpawnTime.Seconds()) }, ""},
		{"all back once the master is, after outages of " + joinDurations(results), func(r *Result) string { return joinSeconds(r.Reattach) }, "< 5 s"},
		{"idle worker RSS (VmRSS), median", func(r *Result) string { return mib(r.WorkerRSS) }, "< 10 MiB"},
		{"  largest", func(r *Result) string { return mib(r.WorkerRSSMax) }, ""},
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.Kind)
	}
	fmt.Fprint(tw, "aim (kiln-worker)\n")
	for _, rw := range rows {
		fmt.Fprintf(tw, "%s\t", rw.what)
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t", rw.value(r))
		}
		fmt.Fprintf(tw, "%s\n", rw.aim)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nLatency: from the force request (JSON-RPC) to the build request seen complete, polled every %s from 3/4 of the fastest build.\n", pollEvery)
	fmt.Fprintf(out, "MB/s: the step's standard output, newlines included, from the force request to the build complete with its log stored.\n")
}

// joinDurations lists the outages measured.
func joinDurations(results []*Result) string {
	var parts []string
	if len(results) > 0 {
		for _, d := range results[0].Sizes.Outages {
			parts = append(parts, d.String())
		}
	}
	return strings.Join(parts, " / ")
}

// joinSeconds lists durations in seconds.
func joinSeconds(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f s", d.Seconds()))
	}
	return strings.Join(parts, " / ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
