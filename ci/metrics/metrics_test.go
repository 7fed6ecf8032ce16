package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/metrics"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/hook"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// value returns a sample's value, or -1 if the sample is missing.
func value(text, sample string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestCollector(t *testing.T) {
	col := &metrics.Collector{}
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "s"}, Command: []any{"sh", "-c", ci.Interpolate("echo hello; exit %(prop:rc:-0)s")}},
		}}},
		Services: []ci.Service{col},
	}
	m := citest.Start(t, cfg)
	srv := httptest.NewServer(col)
	defer srv.Close()
	hooks := httptest.NewServer((&hook.Base{}).Handler(m.Master))
	defer hooks.Close()

	// Before anything ran: the gauges are there, the counters empty.
	text := scrape(t, srv.URL)
	assert.Equal(t, 1.0, value(text, "kiln_workers_connected"))
	assert.Equal(t, 0.0, value(text, "kiln_pending_requests"))
	assert.Greater(t, value(text, "kiln_database_size_bytes"), 0.0)
	assert.Contains(t, text, "go_goroutines")

	assert.Equal(t, ci.Success, m.Build(t, citest.Request{Builder: "b"}).Results())
	assert.Equal(t, ci.Failure, m.Build(t, citest.Request{Builder: "b", Properties: map[string]any{"rc": "1"}}).Results())
	for _, body := range []string{"branch=main&revision=abc", "not a form %"} {
		resp, err := http.Post(hooks.URL, "application/x-www-form-urlencoded", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
	}

	// The collector follows events asynchronously: wait for the last ones.
	deadline := time.Now().Add(time.Minute)
	for {
		text = scrape(t, srv.URL)
		if value(text, `kiln_webhook_deliveries_total{code="400",dialect="base"}`) == 1 &&
			value(text, `kiln_builds_finished_total{builder="b",result="failure"}`) == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "metrics never caught up:\n%s", text)
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, 2.0, value(text, `kiln_builds_started_total{builder="b"}`))
	assert.Equal(t, 1.0, value(text, `kiln_builds_finished_total{builder="b",result="success"}`))
	assert.Equal(t, 2.0, value(text, `kiln_build_duration_seconds_count{builder="b"}`))
	assert.Equal(t, 2.0, value(text, `kiln_step_duration_seconds_count{builder="b",step="s"}`))
	assert.Equal(t, 1.0, value(text, `kiln_webhook_deliveries_total{code="200",dialect="base"}`))
	assert.Greater(t, value(text, "kiln_log_bytes_total"), 100.0)
	assert.Equal(t, 0.0, value(text, "kiln_running_builds"))
	assert.Equal(t, 0.0, value(text, "kiln_metrics_events_dropped_total"))
}

// TestCollector_Addr: with Addr, the metrics are served on an address of
// their own, /metrics only.
func TestCollector_Addr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	col := &metrics.Collector{Addr: addr}
	// Not through citest, which leaves out the services that listen.
	m, err := ci.NewMaster(ci.MasterConfig{BaseDir: t.TempDir(), Workers: []ci.WorkerConfig{{Name: "w"}}, Services: []ci.Service{col}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, body, "kiln_")
	resp, err := http.Get("http://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}
