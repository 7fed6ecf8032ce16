//go:build unix

package remote

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/worker"
)

// The environment of the idle workers' process (see TestIdleWorkersProcess).
const (
	idleAddrEnv  = "KILN_IDLE_WORKERS_ADDR"
	idleCountEnv = "KILN_IDLE_WORKERS"
)

// idleSettle is how long after the workers are attached the master's
// resident size is measured again.
const idleSettle = 5 * time.Second

// idleWorkers is how many idle workers BenchmarkIdleWorkers connects:
// -idle-workers, 1000 by default.
var idleWorkers = 1000

func init() {
	if s := os.Getenv("KILN_BENCH_IDLE_WORKERS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			idleWorkers = n
		}
	}
}

// BenchmarkIdleWorkers measures what the master holds per idle attached
// worker: a master in this process accepts idleWorkers (1000, or
// $KILN_BENCH_IDLE_WORKERS) real kiln workers, worker.Worker agents run
// together in another process (this test binary, see
// TestIdleWorkersProcess), each a real WebSocket session over loopback
// that went through the whole handshake. It reports, per worker, the
// master's live heap after a garbage collection (heap-B/worker), its
// goroutines (goroutines/worker), their stacks (stack-B/worker) and the
// growth of this process's resident size (rss-B/worker, which counts
// the runtime's spare memory too, such as what the attaching left: the
// garbage of 1,000 handshakes), and that growth again idleSettle
// later (rss-idle-B/worker), once the runtime has given back to the
// system what the heap no longer needs; and the time from the first of
// the workers' connections accepted until the listener has attached
// them all, which the master then shows connected (attach-s), and from
// the workers' process starting (start-attach-s, which adds the start of
// the process and of its 1,000 connections); and what the master
// allocated meanwhile, per worker (alloc-B/worker: most of it garbage once
// the workers are attached). With $KILN_IDLE_HEAPPROFILE
// set to a file name, it writes there a heap profile taken while the
// workers are attached (go tool pprof -sample_index=inuse_space).
func BenchmarkIdleWorkers(b *testing.B) {
	n := idleWorkers
	var workers []ci.WorkerConfig
	for i := range n {
		workers = append(workers, ci.WorkerConfig{Name: fmt.Sprintf("idle%d", i+1), Password: "pw"})
	}
	cfg := ci.MasterConfig{
		Workers: workers,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	accepts := &acceptClock{Listener: ln}
	m := startMaster(b, cfg, &Listener{Listener: accepts})
	countConnected := func() int {
		c := 0
		for _, w := range m.Workers() {
			if w.Connected {
				c++
			}
		}
		return c
	}
	for b.Loop() {
		heap0, stack0, g0 := liveHeap()
		rss0 := selfRSS(b)
		attached0 := m.l.Stats().Attached
		accepts.first.Store(0)
		alloc0 := totalAlloc()
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleWorkersProcess$")
		cmd.Env = append(os.Environ(), idleAddrEnv+"="+m.addr, idleCountEnv+"="+strconv.Itoa(n))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// The listener's count is polled rather than the master's list of
		// workers, whose copies would be most of the garbage made
		// meanwhile; the list is checked once all are attached.
		deadline := start.Add(2 * time.Minute)
		for m.l.Stats().Attached-attached0 < int64(n) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				b.Fatalf("%d of %d workers attached after 2 minutes", m.l.Stats().Attached-attached0, n)
			}
			time.Sleep(time.Millisecond)
		}
		attached := time.Now()
		alloc1 := totalAlloc()
		opened := time.Unix(0, accepts.first.Load())
		if c := countConnected(); c != n {
			b.Fatalf("the master shows %d of %d workers connected", c, n)
		}
		heap1, stack1, g1 := liveHeap()
		if name := os.Getenv("KILN_IDLE_HEAPPROFILE"); name != "" {
			writeHeapProfile(b, name)
		}
		rss1 := selfRSS(b)
		time.Sleep(idleSettle)
		rss2 := selfRSS(b)
		b.ReportMetric(float64(heap1-heap0)/float64(n), "heap-B/worker")
		b.ReportMetric(float64(stack1-stack0)/float64(n), "stack-B/worker")
		b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/worker")
		b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-B/worker")
		b.ReportMetric(float64(rss2-rss0)/float64(n), "rss-idle-B/worker")
		b.ReportMetric(float64(alloc1-alloc0)/float64(n), "alloc-B/worker")
		b.ReportMetric(attached.Sub(opened).Seconds(), "attach-s")
		b.ReportMetric(attached.Sub(start).Seconds(), "start-attach-s")
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		for countConnected() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// acceptClock is a net.Listener that notes when it accepted a connection
// first since first was last set to zero.
type acceptClock struct {
	net.Listener
	first atomic.Int64 // UnixNano
}

func (l *acceptClock) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.first.CompareAndSwap(0, time.Now().UnixNano())
	}
	return c, err
}

// writeHeapProfile writes the heap profile to the file called name.
func writeHeapProfile(tb testing.TB, name string) {
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// totalAlloc returns the bytes allocated on the heap so far.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// liveHeap returns the bytes of live heap after a collection, the bytes
// of goroutine stacks, and the number of goroutines.
func liveHeap() (heap, stacks uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
}

// selfRSS returns this process's resident size (VmRSS).
func selfRSS(tb testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestIdleWorkersProcess is the idle workers' process of
// BenchmarkIdleWorkers: it runs $KILN_IDLE_WORKERS worker.Worker agents
// idle1, idle2... against the master at $KILN_IDLE_WORKERS_ADDR until
// SIGTERM. Without that environment it is skipped.
func TestIdleWorkersProcess(t *testing.T) {
	addr := os.Getenv(idleAddrEnv)
	if addr == "" {
		t.Skip("the idle workers' process of BenchmarkIdleWorkers")
	}
	n, err := strconv.Atoi(os.Getenv(idleCountEnv))
	if err != nil {
		t.Fatalf("%s: %v", idleCountEnv, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range n {
		w := &worker.Worker{
			Name: fmt.Sprintf("idle%d", i+1), Password: "pw",
			Master:  addr,
			BaseDir: filepath.Join(dir, strconv.Itoa(i+1)),
			Admin:   "bench", Host: "bench",
			Env:    map[string]string{"PATH": os.Getenv("PATH")},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		wg.Go(func() {
			if err := w.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("worker %s: %v", w.Name, err)
			}
		})
	}
	wg.Wait()
}
