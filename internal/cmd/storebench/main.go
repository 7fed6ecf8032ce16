// Command storebench measures how the store grows and how retention holds
// it: the database bytes per stored build of a typical size (10 steps, 200
// KB of log), a 30-day history kept to a log budget by the janitor, the
// janitor's throughput, and the memory of a master process whose store
// holds many builds.
//
//	go run ./internal/cmd/storebench [-builds 100000] [-days 30] [-per-day 200]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/janitor"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/webui"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "storebench:", err)
		os.Exit(1)
	}
}

// options size the run.
type options struct {
	dir     string
	builds  int // builds in the large store (memory figure)
	sample  int // builds stored to measure bytes per build
	days    int
	perDay  int
	budget  int64
	steps   int
	logSize int // bytes of log per build
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("storebench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.dir, "dir", "", "working folder (a temporary one if empty)")
	fs.IntVar(&o.builds, "builds", 100000, "builds in the large store, for the master's memory")
	fs.IntVar(&o.sample, "sample", 200, "typical builds stored to measure bytes per build")
	fs.IntVar(&o.days, "days", 30, "days of history for the retention figure")
	fs.IntVar(&o.perDay, "per-day", 100, "builds a day in that history")
	fs.Int64Var(&o.budget, "budget", 64<<20, "log budget in bytes for the retention figure")
	fs.IntVar(&o.steps, "steps", 10, "steps per build")
	fs.IntVar(&o.logSize, "log", 200<<10, "bytes of log per build")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "kiln-storebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	fmt.Fprintf(out, "machine: %d CPUs, %s\n", runtime.NumCPU(), cpuModel())

	// 1. Bytes per typical build.
	st, err := sqlite.Open(ctx, filepath.Join(o.dir, "sample.sqlite"))
	if err != nil {
		return err
	}
	b, _ := st.EnsureBuilder(ctx, "typical", "", nil)
	w, _ := st.EnsureWorker(ctx, "w")
	start := fileSize(filepath.Join(o.dir, "sample.sqlite"))
	t0 := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range o.sample {
		if err := storeBuild(ctx, st, b.ID, w.ID, time.Unix(1790000000+int64(i)*60, 0), o.steps, o.logSize, rng); err != nil {
			return err
		}
	}
	elapsed := time.Since(t0)
	if _, err := st.Compact(ctx, 1<<30); err != nil {
		return err
	}
	st.Close()
	perBuild := (fileSize(filepath.Join(o.dir, "sample.sqlite")) - start) / int64(o.sample)
	fmt.Fprintf(out, "typical build: %d steps, %d KB of log: %d bytes of database per build (log compressed %.1f×); stored at %.0f builds/s\n",
		o.steps, o.logSize>>10, perBuild, float64(o.logSize)/float64(perBuild), float64(o.sample)/elapsed.Seconds())

	// 2. A history kept to a budget by the janitor, one pass a day.
	if err := retention(ctx, o, out); err != nil {
		return err
	}

	// 3. A master on a large store.
	return largeStore(ctx, o, out)
}

// words of the synthetic logs: compiler and test output.
var words = strings.Fields(`gcc -O2 -Wall -c src/ideascube/ module.c -o build/ .o warning: unused variable
note: in expansion of macro ok PASS FAIL test_ idx buf len 0x7ffd size_t int char *p
debian/rules override_dh_auto_build make[1]: Entering directory Leaving dpkg-buildpackage -us -uc`)

// logText makes n bytes of plausible build output.
func logText(n int, rng *rand.Rand) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteByte('o')
		for range 6 + rng.IntN(8) {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(4) == 0 {
				b.WriteString(strconv.Itoa(rng.IntN(100000)))
			}
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// storeBuild stores one finished build through the store's API, as the
// master does.
func storeBuild(ctx context.Context, st *sqlite.Store, builderID, workerID int64, at time.Time, steps, logSize int, rng *rand.Rand) error {
	reqs, err := st.AddBuildset(ctx, &ci.Buildset{Reason: "bench", SubmittedAt: at, Properties: ci.Properties{},
		SourceStamps: []ci.SourceStamp{{Repository: "https://github.com/ideascube/ideascube.git", Branch: "master", Revision: fmt.Sprintf("%040x", rng.Uint64())}}},
		[]int64{builderID}, 0)
	if err != nil {
		return err
	}
	props := ci.Properties{}
	props.Set("buildername", "typical", ci.SourceBuilder)
	props.Set("arch", "amd64", ci.SourceBuilder)
	b := &ci.Build{BuilderID: builderID, WorkerID: workerID, StartedAt: at, StateString: "building", Properties: props}
	if err := st.StartBuild(ctx, b, []int64{reqs[0].ID}); err != nil {
		return err
	}
	for i := range steps {
		s := &ci.StepRecord{BuildID: b.ID, Number: i, Name: fmt.Sprintf("step%d", i), StartedAt: at}
		if err := st.AddStep(ctx, s); err != nil {
			return err
		}
		l := &ci.Log{StepID: s.ID, Name: "stdio", Type: ci.LogStream}
		if err := st.AddLog(ctx, l); err != nil {
			return err
		}
		text := logText(logSize/steps, rng)
		// Appended as a step writes it: in pieces of about 32 KB.
		for len(text) > 32<<10 {
			cut := strings.LastIndexByte(text[:32<<10], '\n') + 1
			if _, _, err := st.AppendLog(ctx, l.ID, text[:cut]); err != nil {
				return err
			}
			text = text[cut:]
		}
		if _, _, err := st.FinishLog(ctx, l.ID, text); err != nil {
			return err
		}
		s.Complete, s.CompleteAt, s.Results, s.StateString = true, at.Add(time.Minute), ci.Success, "done"
		if err := st.UpdateStep(ctx, s); err != nil {
			return err
		}
	}
	b.Complete, b.CompleteAt, b.Results, b.StateString = true, at.Add(10*time.Minute), ci.Success, "build successful"
	_, err = st.FinishBuild(ctx, b, false)
	return err
}

// retention stores days of history with a janitor pass each day, and
// reports the size held and the janitor's throughput.
func retention(ctx context.Context, o options, out io.Writer) error {
	path := filepath.Join(o.dir, "history.sqlite")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	day0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := citest.NewClock(day0)
	m, err := ci.NewMaster(ci.MasterConfig{
		Store: st, Clock: clock, Logger: slog.New(slog.DiscardHandler),
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "typical", Workers: []string{"w"}, Steps: []ci.Step{ci.StepFunc(nil)}}},
	})
	if err != nil {
		return err
	}
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	go m.Run(mctx)
	<-m.Ready()
	b, _ := st.EnsureBuilder(ctx, "typical", "", nil)
	w, _ := st.EnsureWorker(ctx, "w")
	j := &janitor.Janitor{LogBudget: o.budget}
	rng := rand.New(rand.NewPCG(3, 4))
	var deleted int
	var cleaning time.Duration
	var maxFile int64
	for d := range o.days {
		for i := range o.perDay {
			at := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Minute)
			if err := storeBuild(ctx, st, b.ID, w.ID, at, o.steps, o.logSize, rng); err != nil {
				return err
			}
		}
		clock.Set(day0.Add(time.Duration(d+1) * 24 * time.Hour))
		t0 := time.Now()
		rep, err := j.Clean(ctx, m)
		if err != nil {
			return err
		}
		cleaning += time.Since(t0)
		deleted += len(rep.LogBuilds)
		maxFile = max(maxFile, fileSize(path)+fileSize(path+"-wal"))
	}
	logs, _ := st.LogBytes(ctx)
	fmt.Fprintf(out, "history: %d days × %d builds with a %.1f MiB log budget: logs %.1f MiB, file %.1f MiB (largest %.1f MiB); janitor removed the logs of %d builds at %.0f builds/s\n",
		o.days, o.perDay, mib(o.budget), mib(logs), mib(fileSize(path)), mib(maxFile), deleted, float64(deleted)/cleaning.Seconds())

	// Whole builds beyond a horizon: throughput.
	j = &janitor.Janitor{BuildHorizon: time.Duration(o.days/2) * 24 * time.Hour}
	t0 := time.Now()
	rep, err := j.Clean(ctx, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "horizon of %d days: %d whole builds deleted at %.0f builds/s, file %.1f MiB after\n",
		o.days/2, len(rep.Builds), float64(len(rep.Builds))/time.Since(t0).Seconds(), mib(fileSize(path)))
	return nil
}

// largeStore fills a store with many small builds and reports the memory
// of a master serving it.
func largeStore(ctx context.Context, o options, out io.Writer) error {
	path := filepath.Join(o.dir, "large.sqlite")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	b, _ := st.EnsureBuilder(ctx, "typical", "", nil)
	w, _ := st.EnsureWorker(ctx, "w")
	rng := rand.New(rand.NewPCG(5, 6))
	t0 := time.Now()
	for i := range o.builds {
		if err := storeBuild(ctx, st, b.ID, w.ID, time.Unix(1790000000+int64(i)*60, 0), 2, 2<<10, rng); err != nil {
			return err
		}
	}
	fill := time.Since(t0)
	st.Close()
	runtime.GC()
	before := rss()
	m, err := ci.NewMaster(ci.MasterConfig{
		Database: path, Logger: slog.New(slog.DiscardHandler),
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "typical", Workers: []string{"w"}, Steps: []ci.Step{ci.StepFunc(nil)}}},
	})
	if err != nil {
		return err
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	<-m.Ready()
	srv := httptest.NewServer(webui.Handler(m))
	for _, p := range []string{"/", "/builders/typical", "/api/v2/builds?builderid=1&limit=50", "/api/v2/builds?order=-buildid&limit=50", "/grid"} {
		resp, err := http.Get(srv.URL + p)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	srv.Close()
	after := rss()
	stop()
	<-done
	fmt.Fprintf(out, "large store: %d builds (stored at %.0f builds/s, file %.1f MiB): process RSS %.1f MiB before the master, %.1f MiB with it running and pages served\n",
		o.builds, float64(o.builds)/fill.Seconds(), mib(fileSize(path)), mib(before), mib(after))
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// rss returns this process's resident memory.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}
