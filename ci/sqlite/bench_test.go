package sqlite_test

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/sqlite"
)

// benchLog makes the records a log needs and the log.
func benchLog(b *testing.B, s *sqlite.Store, builderID int64) *ci.Log {
	b.Helper()
	ctx := b.Context()
	_, reqs, err := addBuildset(ctx, s, builderID)
	if err != nil {
		b.Fatal(err)
	}
	build := &ci.Build{BuilderID: builderID, StartedAt: time.Now()}
	if err := s.StartBuild(ctx, build, []int64{reqs[0].ID}); err != nil {
		b.Fatal(err)
	}
	st := &ci.StepRecord{BuildID: build.ID, Name: "shell"}
	if err := s.AddStep(ctx, st); err != nil {
		b.Fatal(err)
	}
	l := &ci.Log{StepID: st.ID, Name: "stdio", Type: ci.LogStream}
	if err := s.AddLog(ctx, l); err != nil {
		b.Fatal(err)
	}
	return l
}

func benchStore(b *testing.B) (*sqlite.Store, *ci.Builder) {
	b.Helper()
	s := MustOpen(b, filepath.Join(b.TempDir(), "state.sqlite"))
	builder, err := s.EnsureBuilder(b.Context(), "b", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	return s, builder
}

// BenchmarkAppendLog appends one line at a time to a log: one durable
// transaction each.
func BenchmarkAppendLog(b *testing.B) {
	s, builder := benchStore(b)
	l := benchLog(b, s, builder.ID)
	ctx := b.Context()
	line := "ogo: downloading golang.org/x/sys v0.49.0\n"
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, _, err := s.AppendLog(ctx, l.ID, line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendLog_Parallel appends one line at a time to one log per
// goroutine, as concurrent builds do.
func BenchmarkAppendLog_Parallel(b *testing.B) {
	s, builder := benchStore(b)
	ctx := b.Context()
	line := "ogo: downloading golang.org/x/sys v0.49.0\n"
	logs := make(chan *ci.Log, 64)
	for range cap(logs) {
		logs <- benchLog(b, s, builder.ID)
	}
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		l := <-logs
		for pb.Next() {
			if _, _, err := s.AppendLog(ctx, l.ID, line); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBuildCycle runs the store's part of one build with one step:
// AddBuildset, StartBuild, AddStep, AddLog, AppendLog (20 lines) and
// FinishBuild, which closes the step and its log and completes the
// buildset.
func BenchmarkBuildCycle(b *testing.B) {
	s, builder := benchStore(b)
	worker, err := s.EnsureWorker(b.Context(), "w")
	if err != nil {
		b.Fatal(err)
	}
	cpu := startCPU(b)
	for b.Loop() {
		buildCycle(b, s, builder, worker)
	}
	cpu.report()
}

// BenchmarkBuildCycle_Parallel runs the build cycles of four builds at
// once (the builds of four workers), whose writes the store may commit
// together.
func BenchmarkBuildCycle_Parallel(b *testing.B) {
	runCycles(b, buildCycle)
}

// runCycles runs cycle for four builds at once (the builds of four
// workers), whose writes the store may commit together, and reports the
// CPU time per build.
func runCycles(b *testing.B, cycle func(*testing.B, *sqlite.Store, *ci.Builder, *ci.Worker)) {
	s, builder := benchStore(b)
	worker, err := s.EnsureWorker(b.Context(), "w")
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cycle(b, s, builder, worker)
		}
	})
	cpu.report()
}

// A cpuMeter reports the process's CPU time (user and system) per
// operation, as cpu-ms/op: less disturbed than the time per operation by
// other work running on the machine.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

func startCPU(b *testing.B) cpuMeter { return cpuMeter{b, cpuTime()} }

func (m cpuMeter) report() {
	if m.b.N > 0 {
		m.b.ReportMetric(float64(cpuTime()-m.start)/float64(time.Millisecond)/float64(m.b.N), "cpu-ms/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// buildCycle is the store's part of one build.
func buildCycle(b *testing.B, s *sqlite.Store, builder *ci.Builder, worker *ci.Worker) {
	ctx := b.Context()
	text := strings.Repeat("ocompiling github.com/kilnci/kiln/ci\n", 20)
	props := ci.Properties{}
	props.Set("branch", "main", ci.SourceScheduler)
	props.Set("buildername", "b", ci.SourceBuilder)
	{
		now := time.Now()
		bs := &ci.Buildset{
			Reason:       "benchmark",
			SubmittedAt:  now,
			SourceStamps: []ci.SourceStamp{{Repository: "https://example.org/r.git", Branch: "main", Revision: "abc"}},
			Properties:   props,
		}
		reqs, err := s.AddBuildset(ctx, bs, []int64{builder.ID}, 0)
		if err != nil {
			b.Fatal(err)
		}
		build := &ci.Build{BuilderID: builder.ID, WorkerID: worker.ID, StartedAt: now, Properties: props.Clone()}
		if err := s.StartBuild(ctx, build, []int64{reqs[0].ID}); err != nil {
			b.Fatal(err)
		}
		st := &ci.StepRecord{BuildID: build.ID, Name: "compile", StartedAt: now}
		if err := s.AddStep(ctx, st); err != nil {
			b.Fatal(err)
		}
		l := &ci.Log{StepID: st.ID, Name: "stdio", Type: ci.LogStream}
		if err := s.AddLog(ctx, l); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.AppendLog(ctx, l.ID, text); err != nil {
			b.Fatal(err)
		}
		build.Results, build.Complete, build.CompleteAt = ci.Success, true, time.Now()
		done, err := s.FinishBuild(ctx, build, false)
		if err != nil {
			b.Fatal(err)
		}
		if len(done) != 1 {
			b.Fatalf("FinishBuild completed buildsets %v", done)
		}
	}
}

// BenchmarkMasterCycle runs the store's part of a one-step shell build
// as the master writes it: four transactions, AddBuildset (a forced
// buildset with its source stamp), StartBuild, AddStepLogs (the step with
// its stdio log) and FinishStepAndBuild (the log's lines, the step, the
// build, its request and buildset), for four builds at once, as four
// workers run them.
func BenchmarkMasterCycle(b *testing.B) {
	runCycles(b, masterCycle)
}

// masterCycle is the store's part of a one-step build, in the master's
// four writes.
func masterCycle(b *testing.B, s *sqlite.Store, builder *ci.Builder, worker *ci.Worker) {
	ctx := b.Context()
	props := ci.Properties{}
	props.Set("reason", "", ci.SourceForce)
	props.Set("scheduler", "force", ci.SourceScheduler)
	now := time.Now()
	bs := &ci.Buildset{
		Reason:       "The web-page 'force' button was pressed by '<unknown>': ",
		SubmittedAt:  now,
		SourceStamps: []ci.SourceStamp{{}},
		Properties:   props,
		Scheduler:    "force",
	}
	reqs, err := s.AddBuildset(ctx, bs, []int64{builder.ID}, 0)
	if err != nil {
		b.Fatal(err)
	}
	bprops := props.Clone()
	bprops.Set("buildername", "b", ci.SourceBuilder)
	bprops.Set("workername", "w", ci.SourceWorker)
	build := &ci.Build{BuilderID: builder.ID, WorkerID: worker.ID, StartedAt: now, Properties: bprops}
	if err := s.StartBuild(ctx, build, []int64{reqs[0].ID}); err != nil {
		b.Fatal(err)
	}
	st := &ci.StepRecord{BuildID: build.ID, Name: "shell", StartedAt: now}
	l := &ci.Log{Name: "stdio", Type: ci.LogStream}
	if err := s.AddStepLogs(ctx, nil, nil, st, []*ci.Log{l}); err != nil {
		b.Fatal(err)
	}
	st.Complete, st.CompleteAt, st.StateString = true, time.Now(), "'true'"
	build.Results, build.Complete, build.CompleteAt = ci.Success, true, time.Now()
	ends := []ci.LogEnd{{LogID: l.ID, Text: "htrue\n in dir /w/b/build\n\nhprogram finished with exit code 0\nhelapsedTime=0.001\n"}}
	done, err := s.FinishStepAndBuild(ctx, st, ends, build, false)
	if err != nil {
		b.Fatal(err)
	}
	if len(done) != 1 || done[0].ID != bs.ID {
		b.Fatalf("FinishStepAndBuild completed buildsets %v, not %d", done, bs.ID)
	}
}

// BenchmarkLogLines reads the last 100 lines of a 100,000-line log stored
// in appends of 100 lines (a log writer's flush every 100ms).
func BenchmarkLogLines(b *testing.B) {
	s, builder := benchStore(b)
	l := benchLog(b, s, builder.ID)
	ctx := b.Context()
	const lines, perAppend = 100_000, 100
	var sb strings.Builder
	for i := 0; i < lines; i += perAppend {
		sb.Reset()
		for j := i; j < i+perAppend; j++ {
			fmt.Fprintf(&sb, "o=== RUN   TestFrobnicate/case_%d\n", j)
		}
		if _, _, err := s.AppendLog(ctx, l.ID, sb.String()); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	for b.Loop() {
		text, err := s.LogLines(ctx, l.ID, lines-100, lines-1)
		if err != nil {
			b.Fatal(err)
		}
		n.Add(int64(len(text)))
	}
	b.SetBytes(n.Load() / int64(max(b.N, 1)))
}

// BenchmarkAddTestResults stores a set of 1,000 pass/fail results (one
// batch of StepRun.AddTestResults) and completes it: b.N sets.
func BenchmarkAddTestResults(b *testing.B) {
	s, builder := benchStore(b)
	ctx := b.Context()
	l := benchLog(b, s, builder.ID)
	st, err := s.GetStep(ctx, l.StepID)
	if err != nil {
		b.Fatal(err)
	}
	passed, failed := 990, 10
	for b.Loop() {
		set := &ci.TestResultSet{BuildID: st.BuildID, StepID: st.ID, Category: ci.TestPassFail, ValueUnit: ci.TestUnitBoolean}
		if err := s.AddTestResultSet(ctx, set); err != nil {
			b.Fatal(err)
		}
		results := make([]*ci.TestResult, 1000)
		for i := range results {
			ns := int64(i * 1000)
			results[i] = &ci.TestResult{TestName: fmt.Sprintf("example.org/calc.TestCase%04d", i),
				TestCodePath: "calc/calc_test.go", Line: i + 1, DurationNS: &ns, Value: "1"}
		}
		if err := s.AddTestResults(ctx, set.ID, results); err != nil {
			b.Fatal(err)
		}
		if err := s.CompleteTestResultSet(ctx, set.ID, &passed, &failed); err != nil {
			b.Fatal(err)
		}
	}
}
