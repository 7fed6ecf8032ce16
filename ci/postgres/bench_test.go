package postgres_test

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/postgres"
	"github.com/kilnci/kiln/ci/steps"
)

// benchLog makes the records a log needs and the log.
func benchLog(b *testing.B, s *postgres.Store, builderID int64) *ci.Log {
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

func benchStore(b *testing.B) (*postgres.Store, *ci.Builder) {
	b.Helper()
	s := MustOpen(b, migrated.NewDatabase(b))
	builder, err := s.EnsureBuilder(b.Context(), "b", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	return s, builder
}

// The benchmarks of ci/sqlite/bench_test.go, on PostgreSQL, to compare
// the stores: the same records, the same calls. They run on the test
// server of internal/pgtest, which is not durable (fsync off) unless
// KILN_PGTEST_DURABLE=1 is set: set it to compare with SQLite's durable
// commits.

// BenchmarkAppendLog appends one line at a time to a log: one
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
	ctx := b.Context()
	text := strings.Repeat("ocompiling github.com/kilnci/kiln/ci\n", 20)
	props := ci.Properties{}
	props.Set("branch", "main", ci.SourceScheduler)
	props.Set("buildername", "b", ci.SourceBuilder)
	for b.Loop() {
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

// BenchmarkMaster runs one master with four in-process workers on each
// store, SQLite and PostgreSQL, side by side: the same builder of one
// step running true. "throughput" submits b.N builds at once and reports
// builds/s; "latency" runs one build at a time and reports the median
// time from the request to the stored end of the build (build-ms-p50)
// and to its start (start-ms-p50). SQLite commits durably, the test
// server does not unless KILN_PGTEST_DURABLE=1 is set: set it for a fair
// comparison.
func BenchmarkMaster(b *testing.B) {
	for _, store := range []string{"sqlite", "postgres"} {
		cfg := func(b *testing.B) ci.MasterConfig {
			cfg := ci.MasterConfig{BaseDir: b.TempDir()}
			if store == "postgres" {
				cfg.Database = migrated.NewDatabase(b)
			}
			var names []string
			for i := range 4 {
				name := fmt.Sprintf("w%d", i+1)
				cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: name})
				names = append(names, name)
			}
			cfg.Builders = []ci.BuilderConfig{{Name: "b", Workers: names, Steps: []ci.Step{
				&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "true"}, Command: []string{"true"}},
			}}}
			return cfg
		}
		b.Run(store+"/throughput", func(b *testing.B) {
			m := citest.Start(b, cfg(b))
			sub := m.Subscribe(16*b.N + 1024) // about ten events a build
			defer sub.Close()
			b.ResetTimer()
			t0 := time.Now()
			want := map[int64]bool{}
			for range b.N {
				want[m.Submit(b, citest.Request{Builder: "b"})] = true
			}
			for len(want) > 0 {
				if e := <-sub.C; e.Type == ci.EventBuildsetComplete {
					delete(want, e.BuildsetID)
				}
			}
			elapsed := time.Since(t0)
			b.StopTimer()
			if sub.Dropped() > 0 {
				b.Fatalf("%d events dropped", sub.Dropped())
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "builds/s")
		})
		b.Run(store+"/latency", func(b *testing.B) {
			m := citest.Start(b, cfg(b))
			sub := m.Subscribe(1 << 16)
			defer sub.Close()
			starts := make([]time.Duration, 0, b.N)
			totals := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				bs := m.Submit(b, citest.Request{Builder: "b"})
				var started time.Duration
			wait:
				for {
					e := <-sub.C
					switch {
					case e.Type == ci.EventBuildStarted && e.BuildsetID == bs:
						started = time.Since(t0)
					case e.Type == ci.EventBuildsetComplete && e.BuildsetID == bs:
						break wait
					}
				}
				totals = append(totals, time.Since(t0))
				starts = append(starts, started)
			}
			b.StopTimer()
			if sub.Dropped() > 0 {
				b.Fatalf("%d events dropped", sub.Dropped())
			}
			b.ReportMetric(ms(median(starts)), "start-ms-p50")
			b.ReportMetric(ms(median(totals)), "build-ms-p50")
		})
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
