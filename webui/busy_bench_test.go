package webui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/webui"
)

// busyRate is the rate of one-step builds the busy benchmarks aim to keep
// running in the background, in builds per second.
const busyRate = 400

// busyUI starts a master on the filled store (100,000 builds of "big")
// with four in-process workers running one-step builds of builder "busy"
// in the background, submitted at up to busyRate a second (fewer when the
// master cannot keep up: at most 4*busyRate/100 wait at once), and returns
// its web application and a function that stops the background builds and
// reports their rate (bg-builds/s).
func busyUI(b *testing.B) (http.Handler, func()) {
	path := benchStore(b)
	st, err := sqlite.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	step := &steps.MakeDirectory{StepOptions: ci.StepOptions{Name: "mkdir"}, Dir: "build/out"}
	workers := []string{"w1", "w2", "w3", "w4"}
	cfg := ci.MasterConfig{
		Store: st,
		Builders: []ci.BuilderConfig{
			{Name: "big", Workers: workers[:1], Steps: []ci.Step{step}},
			{Name: "small", Workers: workers[:1], Steps: []ci.Step{step}},
			{Name: "busy", Workers: workers, Steps: []ci.Step{step}},
		},
	}
	for _, w := range workers {
		cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: w})
	}
	m := citest.Start(b, cfg)
	h, err := webui.NewHandler(m.Master, nil)
	if err != nil {
		b.Fatal(err)
	}
	sub := m.Subscribe(1 << 16)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	waiting := map[int64]bool{}
	done := 0
	var failed atomic.Value
	wg.Go(func() {
		for {
			select {
			case e, ok := <-sub.C:
				if !ok {
					return
				}
				if e.Type == ci.EventBuildsetComplete {
					mu.Lock()
					if waiting[e.BuildsetID] {
						delete(waiting, e.BuildsetID)
						done++
					}
					mu.Unlock()
				}
			case <-stop:
				return
			}
		}
	})
	const tick = 10 * time.Millisecond
	wg.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-stop:
				return
			}
			for range busyRate * int(tick) / int(time.Second) {
				mu.Lock()
				full := len(waiting) >= 4*busyRate/100
				mu.Unlock()
				if full {
					break
				}
				bs, _, err := m.Master.Submit(context.Background(), ci.Submission{Builders: []string{"busy"}, Reason: "bench"})
				if err != nil {
					failed.Store(err.Error())
					return
				}
				mu.Lock()
				waiting[bs.ID] = true
				mu.Unlock()
			}
		}
	})
	// Let the builds get going before measuring.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	done0 := done
	mu.Unlock()
	t0 := time.Now()
	return h, func() {
		mu.Lock()
		n := done - done0
		mu.Unlock()
		b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "bg-builds/s")
		close(stop)
		wg.Wait()
		sub.Close()
		if err := failed.Load(); err != nil {
			b.Fatalf("background builds: submit: %v", err)
		}
	}
}

// benchGetTimes is benchGet, reporting the median and 99th percentile of
// the answers' times (ms-p50, ms-p99).
func benchGetTimes(b *testing.B, h http.Handler, path, want string) {
	b.Helper()
	var times []time.Duration
	for b.Loop() {
		t0 := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		times = append(times, time.Since(t0))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			b.Fatalf("GET %s: %d\n%.500s", path, rec.Code, rec.Body.String())
		}
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2])/float64(time.Millisecond), "ms-p50")
	b.ReportMetric(float64(times[len(times)*99/100])/float64(time.Millisecond), "ms-p99")
}

// BenchmarkHome_Busy renders the home page while one-step builds run in
// the background at up to busyRate a second (bg-builds/s says how many
// did): the page must stay fast while the master is busy.
func BenchmarkHome_Busy(b *testing.B) {
	h, stop := busyUI(b)
	benchGetTimes(b, h, "/", "Builders")
	stop()
}

// BenchmarkBuilderPage_Busy renders the first page of the builder with
// 100,000 builds while builds run in the background, as
// BenchmarkHome_Busy.
func BenchmarkBuilderPage_Busy(b *testing.B) {
	h, stop := busyUI(b)
	benchGetTimes(b, h, "/builders/big", "page 1 of ")
	stop()
}

// BenchmarkBusyBuilderPage_Busy renders the first page of the builder
// whose builds are running, while they run.
func BenchmarkBusyBuilderPage_Busy(b *testing.B) {
	h, stop := busyUI(b)
	benchGetTimes(b, h, "/builders/busy", "page 1 of ")
	stop()
}
