//go:build unix

package remote

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// benchMaster starts a master with n stock workers serving one builder
// whose build runs true.
func benchMaster(b *testing.B, n int) *testMaster {
	var workers []ci.WorkerConfig
	var names []string
	for i := range n {
		name := fmt.Sprintf("stock%d", i+1)
		workers = append(workers, ci.WorkerConfig{Name: name, Password: "pw"})
		names = append(names, name)
	}
	cfg := ci.MasterConfig{
		Workers:  workers,
		Builders: []ci.BuilderConfig{shellBuilder("true", names, "true")},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	m := startMaster(b, cfg, nil)
	for _, name := range names {
		newStockWorker(b, m.addr, name, "pw").start()
	}
	for _, name := range names {
		m.waitAttached(b, name)
	}
	return m
}

// cpuTime returns the CPU time this process (the master, not the workers)
// has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStockWorker_BuildLatency measures one-step builds running true
// on a stock buildbot-worker over loopback, one at a time: submitted,
// pinged, run, recorded. It reports the median and 90th percentile.
func BenchmarkStockWorker_BuildLatency(b *testing.B) {
	m := benchMaster(b, 1)
	var times []time.Duration
	cpu := cpuTime()
	for b.Loop() {
		start := time.Now()
		if r := m.Build(b, citest.Request{Builder: "true"}).Results(); r != ci.Success {
			b.Fatal(r)
		}
		times = append(times, time.Since(start))
	}
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(len(times)), "master-cpu-ms/build")
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(times[len(times)*9/10].Microseconds())/1000, "ms-p90")
}

// BenchmarkStockWorker_Throughput4 measures how many one-step builds per
// second four stock workers complete, given batches of 16 requests.
func BenchmarkStockWorker_Throughput4(b *testing.B) {
	const batch = 16
	m := benchMaster(b, 4)
	builds := 0
	start := time.Now()
	cpu := cpuTime()
	for b.Loop() {
		ids := make([]int64, batch)
		for i := range ids {
			ids[i] = m.Submit(b, citest.Request{Builder: "true"})
		}
		for _, id := range ids {
			for _, bd := range m.WaitBuildset(b, id) {
				if bd.Results() != ci.Success {
					b.Fatal(bd.Results())
				}
			}
		}
		builds += batch
	}
	b.ReportMetric(float64(builds)/time.Since(start).Seconds(), "builds/s")
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(builds), "master-cpu-ms/build")
}
