// Package metrics exposes a master's figures in Prometheus' text format:
// builds started and finished (by builder and result), build and step
// durations, pending requests, connected workers, change hook deliveries
// (by dialect and HTTP status), the database's size and the bytes of log
// stored. Of masters sharing a database, each counts its own builds,
// deliveries and log lines, so that their figures add up.
//
// A Collector is a ci.Service (it follows the master's events) and an
// http.Handler (it answers scrapes). Serve it on an address of its own,
// which only Prometheus reaches (the metrics tell of builders, workers
// and hooks, and the web server is public):
//
//	cfg.Services = append(cfg.Services, &metrics.Collector{Addr: "127.0.0.1:9101"})
//
// or mount it on the web server, where whoever reaches the web UI reads
// it:
//
//	col := &metrics.Collector{}
//	cfg.Services = append(cfg.Services, col, &webui.Server{Mounts: map[string]http.Handler{"/metrics": col}})
//
// Counters count from the master's start, as Prometheus expects of
// counters; rate() and increase() handle restarts.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kilnci/kiln/ci"
)

// Collector gathers a master's metrics. The zero value is ready to use; it
// must run as a service of exactly one master.
type Collector struct {
	// Registry, when set, receives the metrics (with those already in it);
	// otherwise the Collector has a registry of its own, with Go's and the
	// process's standard metrics.
	Registry *prometheus.Registry
	// Addr, when set, is where the Collector serves /metrics itself, on a
	// listener of its own (say 127.0.0.1:9101), apart from the web server.
	Addr string

	once    sync.Once
	reg     *prometheus.Registry
	handler http.Handler

	mu  sync.Mutex
	m   *ci.Master
	sub *ci.Subscription // taken by Prepare, for Run

	buildsStarted  *prometheus.CounterVec
	buildsFinished *prometheus.CounterVec
	buildDuration  *prometheus.HistogramVec
	stepDuration   *prometheus.HistogramVec
	hookDeliveries *prometheus.CounterVec
	logBytes       prometheus.Counter
	dropped        prometheus.Counter
}

var (
	_ ci.Service        = (*Collector)(nil)
	_ ci.NetworkService = (*Collector)(nil)
	_ ci.Preparer       = (*Collector)(nil)
	_ http.Handler      = (*Collector)(nil)
)

// ListensOnNetwork implements ci.NetworkService: with Addr, the Collector
// listens on its own.
func (c *Collector) ListensOnNetwork() bool { return c.Addr != "" }

// serve serves /metrics on ln until ctx ends.
func (c *Collector) serve(ctx context.Context, m *ci.Master, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", c)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	m.Logger().Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Duration buckets, in seconds: from a tenth of a second to four hours.
var durationBuckets = []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400}

func (c *Collector) init() {
	c.once.Do(func() {
		c.reg = c.Registry
		if c.reg == nil {
			c.reg = prometheus.NewRegistry()
			c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		}
		c.buildsStarted = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_builds_started_total", Help: "Builds started, by builder.",
		}, []string{"builder"})
		c.buildsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_builds_finished_total", Help: "Builds finished, by builder and result.",
		}, []string{"builder", "result"})
		c.buildDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_build_duration_seconds", Help: "How long finished builds took, by builder.", Buckets: durationBuckets,
		}, []string{"builder"})
		c.stepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_step_duration_seconds", Help: "How long finished steps took, by builder and step.", Buckets: durationBuckets,
		}, []string{"builder", "step"})
		c.hookDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_webhook_deliveries_total", Help: "Requests answered by the change hooks, by dialect and HTTP status.",
		}, []string{"dialect", "code"})
		c.logBytes = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_log_bytes_total", Help: "Bytes of step logs stored.",
		})
		c.dropped = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_metrics_events_dropped_total", Help: "Master events the collector could not keep up with (counts may be low by that much).",
		})
		c.reg.MustRegister(c.buildsStarted, c.buildsFinished, c.buildDuration, c.stepDuration, c.hookDeliveries, c.logBytes, c.dropped,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kiln_pending_requests", Help: "Build requests waiting for a worker.",
			}, func() float64 { return c.gauge(func(m *ci.Master) float64 { return float64(m.PendingRequests()) }) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kiln_workers_connected", Help: "Workers attached to the master.",
			}, func() float64 {
				return c.gauge(func(m *ci.Master) float64 {
					n := 0
					for _, w := range m.Workers() {
						if w.Connected {
							n++
						}
					}
					return float64(n)
				})
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kiln_running_builds", Help: "Builds running.",
			}, func() float64 { return c.gauge(func(m *ci.Master) float64 { return float64(len(m.RunningBuilds())) }) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kiln_database_size_bytes", Help: "Size of the database file with its write-ahead log (of the database, on a PostgreSQL server).",
			}, func() float64 { return c.gauge(databaseSize) }),
		)
		c.handler = promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{})
	})
}

// gauge computes a gauge from the master, 0 before it runs.
func (c *Collector) gauge(f func(m *ci.Master) float64) float64 {
	c.mu.Lock()
	m := c.m
	c.mu.Unlock()
	if m == nil {
		return 0
	}
	return f(m)
}

// A sizer is a store that knows the space its database takes, as
// ci/postgres's does: a database on a server has no file to look at.
type sizer interface {
	DatabaseSize(ctx context.Context) (int64, error)
}

// sizeTimeout bounds asking a database server for its size during a
// scrape.
const sizeTimeout = 5 * time.Second

func databaseSize(m *ci.Master) float64 {
	path := m.Config().DatabasePath()
	if _, isURL := ci.DatabaseDriver(path); isURL || m.Config().Store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sizeTimeout)
		defer cancel()
		select {
		case <-m.Ready():
		default:
			return 0
		}
		st, err := m.Store(ctx)
		if err != nil {
			return 0
		}
		if sz, ok := st.(sizer); ok {
			if n, err := sz.DatabaseSize(ctx); err == nil {
				return float64(n)
			}
		}
		if isURL {
			return 0
		}
	}
	var size int64
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			size += fi.Size()
		}
	}
	return float64(size)
}

// ServeHTTP answers a scrape.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.init()
	c.handler.ServeHTTP(w, r)
}

// Prepare implements ci.Preparer: it subscribes to the master's events
// before the master runs its first build, so that Run counts them all.
func (c *Collector) Prepare(m *ci.Master) {
	c.init()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = m
	if c.sub == nil {
		c.sub = m.Subscribe(eventQueue)
	}
}

// eventQueue is how many events the collector's subscription holds
// before it drops some (counted in kiln_metrics_events_dropped_total).
const eventQueue = 1 << 16

// Run implements ci.Service: it follows the master's events until ctx ends.
func (c *Collector) Run(ctx context.Context, m *ci.Master) error {
	c.init()
	c.mu.Lock()
	c.m = m
	sub := c.sub
	c.sub = nil
	c.mu.Unlock()
	if sub == nil {
		sub = m.Subscribe(eventQueue)
	}
	defer sub.Close()
	if c.Addr != "" {
		ln, err := net.Listen("tcp", c.Addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		served := make(chan error, 1)
		go func() { served <- c.serve(ctx, m, ln) }()
		defer func() { <-served }()
	}
	st, err := m.Store(ctx)
	if err != nil {
		return nil
	}
	names := map[int64]string{}
	builder := func(id int64) string {
		if n, ok := names[id]; ok {
			return n
		}
		b, err := st.GetBuilder(ctx, id)
		if err != nil {
			return strconv.FormatInt(id, 10)
		}
		names[id] = b.Name
		return b.Name
	}
	var lastDropped int64
	for {
		var e ci.Event
		select {
		case <-ctx.Done():
			return nil
		case e = <-sub.C:
		}
		if d := sub.Dropped(); d > lastDropped {
			c.dropped.Add(float64(d - lastDropped))
			lastDropped = d
		}
		if e.MasterID != m.MasterID() {
			// Another master's, on a shared database: that master
			// counts it, so that the masters' figures add up.
			continue
		}
		switch e.Type {
		case ci.EventBuildStarted:
			c.buildsStarted.WithLabelValues(builder(e.BuilderID)).Inc()
		case ci.EventBuildFinished:
			name := builder(e.BuilderID)
			// The duration first: a scrape that sees the build
			// counted finished sees its duration too.
			if b, err := st.GetBuild(ctx, e.BuildID); err == nil && !b.CompleteAt.IsZero() {
				c.buildDuration.WithLabelValues(name).Observe(seconds(b.CompleteAt.Sub(b.StartedAt)))
			}
			c.buildsFinished.WithLabelValues(name, e.Results.String()).Inc()
		case ci.EventStepFinished:
			if s, err := st.GetStep(ctx, e.StepID); err == nil && !s.CompleteAt.IsZero() {
				c.stepDuration.WithLabelValues(builder(e.BuilderID), s.Name).Observe(seconds(s.CompleteAt.Sub(s.StartedAt)))
			}
		case ci.EventLogLines:
			c.logBytes.Add(float64(e.Bytes))
		case ci.EventHookDelivery:
			c.hookDeliveries.WithLabelValues(e.Dialect, strconv.Itoa(e.Status)).Inc()
		}
	}
}

func seconds(d time.Duration) float64 { return max(d.Seconds(), 0) }
