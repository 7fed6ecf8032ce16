package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	_ "github.com/kilnci/kiln/ci/postgres" // the store of the masters below
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/pgtest"
	"github.com/kilnci/kiln/webui"
)

// Two masters on one PostgreSQL database: the API of either lists both,
// and shows a build of the other with that master's ID.
func TestAPI_Masters_Cluster(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	start := func(name string, clock *citest.Clock, noWorkers bool) *citest.Master {
		return citest.Start(t, ci.MasterConfig{
			Name:     name,
			Database: url,
			Clock:    clock,
			Workers:  []ci.WorkerConfig{{Name: name + "-w"}},
			Builders: []ci.BuilderConfig{{Name: "pass", Workers: []string{name + "-w"},
				Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "true"}, Command: []string{"true"}}}}},
		}, citest.Options{NoWorkers: noWorkers})
	}
	// Each on its own clock, 10 s apart (within DeadAfter, so that b
	// does not take a for dead); a runs no build.
	a := start("a", citest.NewClock(t0), true)
	b := start("b", citest.NewClock(t0.Add(10*time.Second)), false)
	srv := httptest.NewServer(webui.Handler(a.Master))
	t.Cleanup(srv.Close)

	var masters struct {
		Masters []map[string]any `json:"masters"`
		Meta    struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	get(t, srv.URL+"/api/v2/masters", http.StatusOK, &masters)
	require.Equal(t, 2, masters.Meta.Total)
	require.Len(t, masters.Masters, 2)
	for i, m := range []*citest.Master{a, b} {
		assert.Equal(t, float64(m.MasterID()), masters.Masters[i]["masterid"])
		assert.Equal(t, m.Name(), masters.Masters[i]["name"])
		assert.Equal(t, true, masters.Masters[i]["active"])
		assert.Equal(t, float64(t0.Add(time.Duration(i)*10*time.Second).Unix()), masters.Masters[i]["last_active"], "the heartbeat at its start")
	}

	var one struct {
		Masters []map[string]any `json:"masters"`
	}
	get(t, fmt.Sprintf("%s/api/v2/masters/%d", srv.URL, b.MasterID()), http.StatusOK, &one)
	require.Len(t, one.Masters, 1)
	assert.Equal(t, "b", one.Masters[0]["name"])
	var errAnswer map[string]any
	get(t, srv.URL+"/api/v2/masters/999", http.StatusNotFound, &errAnswer)
	var builders struct {
		Builders []map[string]any `json:"builders"`
	}
	get(t, fmt.Sprintf("%s/api/v2/masters/%d/builders", srv.URL, b.MasterID()), http.StatusOK, &builders)
	assert.Len(t, builders.Builders, 1)

	// A build on b, read through a.
	bb := b.Build(t, citest.Request{Builder: "pass"})
	var builds buildsAnswer
	get(t, fmt.Sprintf("%s/api/v2/builds/%d", srv.URL, bb.Record.ID), http.StatusOK, &builds)
	require.Len(t, builds.Builds, 1)
	assert.Equal(t, float64(b.MasterID()), builds.Builds[0]["masterid"])
}

// A log followed live on master a streams a build running on master b,
// and a's stop of that build ends the stream.
func TestLiveLog_Cluster(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	lines := make(chan string)
	talk := ci.WithOptions(ci.StepOptions{Name: "talk"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
		l, err := s.AddLog(ctx, "stdio", ci.LogStream)
		if err != nil {
			return ci.Exception, err
		}
		defer l.Close()
		for {
			select {
			case line := <-lines:
				l.AddStdout(line + "\n")
				if err := l.Flush(); err != nil {
					return ci.Exception, err
				}
			case <-ctx.Done():
				return ci.Cancelled, nil
			}
		}
	}))
	start := func(name string, noWorkers bool) *citest.Master {
		return citest.Start(t, ci.MasterConfig{
			Name: name, Database: url,
			Workers:  []ci.WorkerConfig{{Name: name + "-w"}},
			Builders: []ci.BuilderConfig{{Name: "talk", Workers: []string{name + "-w"}, Steps: []ci.Step{talk}}},
		}, citest.Options{NoWorkers: noWorkers})
	}
	a := start("a", true)
	b := start("b", false)
	srv := httptest.NewServer(webui.Handler(a.Master))
	t.Cleanup(srv.Close)

	a.Submit(t, citest.Request{Builder: "talk"})
	id := b.WaitRunning(t, "talk")
	step := b.WaitStep(t, id, "talk")
	var logID int64
	a.WaitFor(t, "the step's log", func() bool {
		logs, err := a.Store.ListLogs(t.Context(), step.ID)
		require.NoError(t, err)
		if len(logs) > 0 {
			logID = logs[0].ID
		}
		return logID != 0
	})

	res, err := http.Get(fmt.Sprintf("%s/logs/%d/live", srv.URL, logID))
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	events := readEvents(res.Body)
	for i := 1; i <= 3; i++ {
		want := fmt.Sprintf("line %d from b", i)
		lines <- want
		var text strings.Builder
		for !strings.Contains(text.String(), want) {
			e := next(t, events)
			require.Equal(t, "lines", e.name)
			text.WriteString(e.data)
		}
	}
	l, err := a.Store.GetLog(t.Context(), logID)
	require.NoError(t, err)
	assert.False(t, l.Complete, "the lines came while the build ran")

	require.NoError(t, a.StopBuild(t.Context(), id, "enough"))
	for {
		e := next(t, events)
		if e.name == "done" {
			break
		}
		require.Equal(t, "lines", e.name)
	}
	bb := b.WaitBuild(t, id)
	assert.Equal(t, ci.Cancelled, bb.Results())
}
