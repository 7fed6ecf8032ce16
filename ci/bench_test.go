package ci_test

import (
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// benchConfig is a builder of n `true` steps served by the given number of
// in-process workers.
func benchConfig(steps int, workers int) ci.MasterConfig {
	return benchConfigOf(steps, workers, trueStep)
}

// benchConfigOf is a builder of n steps made by step.
func benchConfigOf(steps int, workers int, step func() ci.Step) ci.MasterConfig {
	cfg := ci.MasterConfig{}
	var names []string
	for i := range workers {
		name := fmt.Sprintf("w%d", i+1)
		cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: name})
		names = append(names, name)
	}
	var ss []ci.Step
	for range steps {
		ss = append(ss, step())
	}
	cfg.Builders = []ci.BuilderConfig{{Name: "b", Workers: names, Steps: ss}}
	return cfg
}

func trueStep() ci.Step {
	return &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "true"}, Command: []string{"true"}}
}

// mkdirStep sends a remote command that starts no process, so that a
// build of them measures Kiln's own cost per step.
func mkdirStep() ci.Step {
	return &steps.MakeDirectory{StepOptions: ci.StepOptions{Name: "mkdir"}, Dir: "build/out"}
}

// BenchmarkBuild measures one build at a time with the in-process worker:
// ns/op is the whole build, from the request to the stored end of the
// build; start-ms-p50 is the median time from the request to the build's
// start, build-ms-p50 the median of the whole build, and ms/step that
// divided by the number of steps. The "true" builds run that program in
// each step; the "mkdir" builds send a remote command that starts no
// process, which leaves Kiln's own cost.
func BenchmarkBuild(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
		step func() ci.Step
	}{
		{"true/steps=1", 1, trueStep},
		{"true/steps=10", 10, trueStep},
		{"mkdir/steps=1", 1, mkdirStep},
		{"mkdir/steps=10", 10, mkdirStep},
	} {
		n := bc.n
		b.Run(bc.name, func(b *testing.B) {
			m := citest.Start(b, benchConfigOf(n, 1, bc.step))
			sub := m.Subscribe(1 << 16)
			defer sub.Close()
			starts := make([]time.Duration, 0, b.N)
			totals := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			cpu0 := cpuTime()
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
			reportCPU(b, cpu0)
			if sub.Dropped() > 0 {
				b.Fatalf("%d events dropped", sub.Dropped())
			}
			b.ReportMetric(ms(median(starts)), "start-ms-p50")
			b.ReportMetric(ms(median(totals)), "build-ms-p50")
			b.ReportMetric(ms(median(totals))/float64(n), "ms/step")
		})
	}
}

// BenchmarkThroughput submits b.N one-step builds at once to a builder with
// four in-process workers and reports builds per second: builds whose step
// runs true, and builds whose step starts no process (mkdir), Kiln's own
// cost.
func BenchmarkThroughput(b *testing.B) {
	b.Run("true", func(b *testing.B) { benchThroughput(b, trueStep) })
	b.Run("mkdir", func(b *testing.B) { benchThroughput(b, mkdirStep) })
}

// BenchmarkSpawn is the machine's floor and ceiling for the builds that
// run true (BenchmarkBuild/true, BenchmarkThroughput/true): goroutines start
// true, read its output pipe and wait for it, with nothing of Kiln around,
// one at a time (ms-p50: a process's median time) and four at once
// (processes/s).
func BenchmarkSpawn(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("parallel=%d", n), func(b *testing.B) { benchSpawn(b, n) })
	}
}

func benchSpawn(b *testing.B, parallel int) {
	jobs := make(chan struct{}, b.N)
	for range b.N {
		jobs <- struct{}{}
	}
	close(jobs)
	b.ResetTimer()
	t0 := time.Now()
	cpu0 := cpuTime()
	var mu sync.Mutex
	times := make([]time.Duration, 0, b.N)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for range jobs {
				start := time.Now()
				cmd := exec.Command("true")
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				out, err := cmd.StdoutPipe()
				if err == nil {
					err = cmd.Start()
				}
				if err == nil {
					_, err = io.Copy(io.Discard, out)
				}
				if err == nil {
					err = cmd.Wait()
				}
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				times = append(times, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "processes/s")
	b.ReportMetric(ms(median(times)), "ms-p50")
	reportCPU(b, cpu0)
}

func benchThroughput(b *testing.B, step func() ci.Step) {
	m := citest.Start(b, benchConfigOf(1, 4, step))
	// Room for every event of the run (a one-step build makes about ten),
	// and not more: a channel is allocated and zeroed whole, which a
	// buffer of a million events would make a large part of the cost
	// measured.
	sub := m.Subscribe(16*b.N + 1024)
	defer sub.Close()
	b.ResetTimer()
	t0 := time.Now()
	cpu0 := cpuTime()
	want := map[int64]bool{}
	for range b.N {
		want[m.Submit(b, citest.Request{Builder: "b"})] = true
	}
	for len(want) > 0 {
		e := <-sub.C
		if e.Type == ci.EventBuildsetComplete {
			delete(want, e.BuildsetID)
		}
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	reportCPU(b, cpu0)
	if sub.Dropped() > 0 {
		b.Fatalf("%d events dropped", sub.Dropped())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "builds/s")
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

// cpuTime returns the process's CPU time, user and system (rusage): less
// disturbed than wall time by other work running on the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time the process used since cpu0 per
// operation, as cpu-ms/op: the master's and the in-process worker's (the
// commands it starts are children, not counted).
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(ms(cpuTime()-cpu0)/float64(b.N), "cpu-ms/op")
}
