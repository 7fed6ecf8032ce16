package webui_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, id, data string }

// readEvents reads events from an event stream until it ends, sending
// them on the channel it returns.
func readEvents(body io.Reader) <-chan sseEvent {
	c := make(chan sseEvent, 100)
	go func() {
		defer close(c)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var e sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.name != "" || data != nil {
					e.data = strings.Join(data, "\n")
					c <- e
				}
				e, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event: "):
				e.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				e.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return c
}

// waitLog waits until the named step of a build has a log, and returns it.
func waitLog(t testing.TB, u *ui, buildID int64, step string) *ci.Log {
	t.Helper()
	ctx := context.Background()
	sub := u.m.Subscribe(1024)
	defer sub.Close()
	deadline := time.After(time.Minute)
	for {
		steps, err := u.m.Store.ListSteps(ctx, buildID)
		require.NoError(t, err)
		for _, s := range steps {
			if s.Name != step {
				continue
			}
			logs, err := u.m.Store.ListLogs(ctx, s.ID)
			require.NoError(t, err)
			if len(logs) > 0 {
				return logs[0]
			}
		}
		select {
		case <-sub.C:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("build %d has no log of step %q", buildID, step)
		}
	}
}

// next returns the next event, failing the test if the stream ends first.
func next(t testing.TB, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-events:
		require.True(t, ok, "the event stream ended")
		return e
	case <-time.After(time.Minute):
		t.Fatal("no event")
	}
	return sseEvent{}
}

// followLiveLog checks a live log stream read from base (the application
// directly, or through a proxy): lines arrive while the step runs, and the
// stream ends with "done" once the build is stopped.
func followLiveLog(t *testing.T, u *ui, base string) {
	bsid := u.m.Submit(t, citest_Request("count", map[string]any{"lines": 600}))
	build := waitRunning(t, u, bsid)
	l := waitLog(t, u, build.ID, liveStep)

	res, err := http.Get(base + "logs/" + itoa(l.ID) + "/live")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream; charset=utf-8", res.Header.Get("Content-Type"))
	events := readEvents(res.Body)

	// Lines come while the step runs: the log is not complete when they
	// arrive.
	var text strings.Builder
	for !strings.Contains(text.String(), ">line 3</span>") {
		e := next(t, events)
		require.Equal(t, "lines", e.name)
		text.WriteString(e.data)
	}
	got, err := u.m.Store.GetLog(context.Background(), l.ID)
	require.NoError(t, err)
	assert.False(t, got.Complete, "lines arrived before the log was complete")
	assert.Contains(t, text.String(), `<span class="ln o">line 1</span>`)

	// Stopping the build completes the log and ends the stream.
	_, ans := u.jsonrpc(t, "api/v2/builds/"+itoa(build.ID), "stop", map[string]any{}, true)
	require.Contains(t, ans, "result")
	for {
		e := next(t, events)
		if e.name == "done" {
			break
		}
		require.Equal(t, "lines", e.name)
	}
	_, ok := <-events
	assert.False(t, ok, "the stream ends after done")
}

func TestLiveLog(t *testing.T) {
	t.Parallel()
	u := startUI(t, uiOptions{authz: admin})
	followLiveLog(t, u, u.url)

	t.Run("Resume", func(t *testing.T) {
		// A finished log is sent from the line asked for, then done.
		b := u.m.Build(t, citest_Request("count", map[string]any{"lines": 5}))
		l := waitLog(t, u, b.Record.ID, liveStep)
		req, err := http.NewRequest("GET", u.url+"logs/"+itoa(l.ID)+"/live", nil)
		require.NoError(t, err)
		req.Header.Set("Last-Event-ID", itoa(int64(l.NumLines-2)))
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		events := readEvents(res.Body)
		e := next(t, events)
		assert.Equal(t, "lines", e.name)
		assert.Contains(t, e.data, ">line 5<")
		assert.NotContains(t, e.data, ">line 4<")
		assert.Equal(t, itoa(int64(l.NumLines)), e.id)
		assert.Equal(t, "done", next(t, events).name)
	})
	t.Run("ResumeOverFrom", func(t *testing.T) {
		// A browser reconnects to the URL it first opened, with the
		// line it got to as Last-Event-ID: that line wins.
		b := u.m.Build(t, citest_Request("count", map[string]any{"lines": 5}))
		l := waitLog(t, u, b.Record.ID, liveStep)
		req, err := http.NewRequest("GET", u.url+"logs/"+itoa(l.ID)+"/live?from=0&keep=1000", nil)
		require.NoError(t, err)
		req.Header.Set("Last-Event-ID", itoa(int64(l.NumLines-2)))
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		events := readEvents(res.Body)
		e := next(t, events)
		assert.Equal(t, "lines", e.name)
		assert.True(t, strings.HasPrefix(e.data, `<span class="ln o">line 5</span>`), e.data)
		assert.Equal(t, itoa(int64(l.NumLines)), e.id)
		assert.Equal(t, "done", next(t, events).name)
	})
	t.Run("Skip", func(t *testing.T) {
		// A stream further behind than the lines the page keeps skips to
		// the last of them.
		b := u.m.Build(t, citest_Request("count", map[string]any{"lines": 5}))
		l := waitLog(t, u, b.Record.ID, liveStep)
		res, err := http.Get(u.url + "logs/" + itoa(l.ID) + "/live?from=0&keep=2")
		require.NoError(t, err)
		defer res.Body.Close()
		events := readEvents(res.Body)
		e := next(t, events)
		assert.Equal(t, sseEvent{name: "skip", id: itoa(int64(l.NumLines - 2)), data: itoa(int64(l.NumLines - 2))}, e)
		e = next(t, events)
		assert.Equal(t, "lines", e.name)
		assert.True(t, strings.HasPrefix(e.data, `<span class="ln o">line 5</span>`), e.data)
		assert.Equal(t, 2, strings.Count(e.data, `<span class="ln `), "the last two lines")
		assert.Equal(t, itoa(int64(l.NumLines)), e.id)
		assert.Equal(t, "done", next(t, events).name)
	})
	t.Run("Errors", func(t *testing.T) {
		assert.Equal(t, http.StatusNotFound, u.do(t, req{path: "logs/999/live"}).code)
		assert.Equal(t, http.StatusBadRequest, u.do(t, req{path: "logs/1/live?from=x"}).code)
		assert.Equal(t, http.StatusBadRequest, u.do(t, req{path: "logs/1/live?keep=0"}).code)
		assert.Equal(t, http.StatusBadRequest, u.do(t, req{path: "logs/1/live?keep=x"}).code)
	})
}

func TestLiveEvents(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin})
	res, err := http.Get(u.url + "live")
	require.NoError(t, err)
	defer res.Body.Close()
	events := readEvents(res.Body)
	u.m.Build(t, citest_Request("pass", nil))
	e := next(t, events)
	assert.Equal(t, "change", e.name)
}

func TestLiveEvents_Stale(t *testing.T) {
	// A page made before something changed is told at once.
	u := startUI(t, uiOptions{})
	res, err := http.Get(u.url + "live?stamp=made-long-ago")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, "change", next(t, readEvents(res.Body)).name)
}

func TestLiveEvents_NewLog(t *testing.T) {
	// A running step may add a log after it started: the build's page is
	// told, so that it shows the log and follows it.
	addLog, finish := make(chan struct{}), make(chan struct{})
	u := startUI(t, uiOptions{changeCfg: func(cfg *ci.MasterConfig) {
		late := ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			<-addLog
			w, err := s.AddLog(ctx, "late", "")
			if err != nil {
				return ci.Exception, err
			}
			w.AddStdout("a line\n")
			if err := w.Flush(); err != nil {
				return ci.Exception, err
			}
			<-finish
			return ci.Success, nil
		})
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: "late", Workers: []string{"w1"},
			Steps: []ci.Step{ci.WithOptions(ci.StepOptions{Name: "late"}, late)}})
	}})
	t.Cleanup(func() { close(finish) })
	build := waitRunning(t, u, u.m.Submit(t, citest_Request("late", nil)))
	u.m.WaitStep(t, build.ID, "late")

	page := u.do(t, req{path: "builders/late/builds/1"})
	m := regexp.MustCompile(`data-live="([^"]+)"`).FindStringSubmatch(page.body)
	require.NotNil(t, m, "the page follows the build")
	live := strings.ReplaceAll(m[1], "&amp;", "&")
	res, err := http.Get(u.root + live)
	require.NoError(t, err)
	defer res.Body.Close()
	events := readEvents(res.Body)

	close(addLog)
	e := next(t, events)
	assert.Equal(t, "change", e.name)
	b, err := u.m.Store.GetBuild(context.Background(), build.ID)
	require.NoError(t, err)
	assert.False(t, b.Complete, "the change is the log, not the build's end")
	// The change may be told before the log's first line is stored: the
	// page shows the log at once, and its line when it is there.
	assert.Contains(t, u.do(t, req{path: "builders/late/builds/1"}).body, `data-stream="/ci/logs/1/live"`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		body := u.do(t, req{path: "builders/late/builds/1"}).body
		if strings.Contains(body, `<span class="ln o">a line</span>`) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the log's line is not on the build's page:\n%s", body)
	}
}

// chattyBuild starts a build whose step sets its state to each string
// sent on say, until the test ends.
func chattyBuild(t *testing.T) (*ui, *ci.Build, chan<- string) {
	say, finish := make(chan string), make(chan struct{})
	u := startUI(t, uiOptions{changeCfg: func(cfg *ci.MasterConfig) {
		chatty := ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			for {
				select {
				case state := <-say:
					s.SetStateString(state)
				case <-finish:
					return ci.Success, nil
				case <-ctx.Done():
					return ci.Cancelled, nil
				}
			}
		})
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: "chatty", Workers: []string{"w1"},
			Steps: []ci.Step{ci.WithOptions(ci.StepOptions{Name: "chatty"}, chatty)}})
	}})
	build := waitRunning(t, u, u.m.Submit(t, citest_Request("chatty", nil)))
	u.m.WaitStep(t, build.ID, "chatty")
	t.Cleanup(func() { close(finish) })
	return u, build, say
}

func TestLiveEvents_State(t *testing.T) {
	t.Parallel()
	// A running build's state follows its steps': its page is told, at
	// most about once a second however often a step says what it does.
	u, build, say := chattyBuild(t)

	for _, tt := range []struct{ name, query string }{
		{"Build", "build=" + itoa(build.ID)},
		{"Builder", "builder=" + itoa(mustID(t, u, "chatty"))},
		{"Home", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := http.Get(u.url + "live?" + tt.query)
			require.NoError(t, err)
			defer res.Body.Close()
			events := readEvents(res.Body)
			say <- tt.name + " 1"
			e := next(t, events)
			assert.Equal(t, "change", e.name)
			assert.Contains(t, []string{"step.changed", "build.changed"}, e.data)
			b, err := u.m.Store.GetBuild(context.Background(), build.ID)
			require.NoError(t, err)
			assert.Equal(t, tt.name+" 1", b.StateString, "the page, read again, shows the new state")

			// Twenty states in two seconds: a few events, not twenty.
			start := time.Now()
			for i := range 20 {
				say <- fmt.Sprintf("%s %d", tt.name, i+2)
				time.Sleep(100 * time.Millisecond)
			}
			n := 0
			for quiet := time.After(1500 * time.Millisecond); ; {
				select {
				case e := <-events:
					require.Equal(t, "change", e.name)
					n++
					continue
				case <-quiet:
				}
				break
			}
			elapsed := time.Since(start)
			assert.LessOrEqual(t, n, int(elapsed/time.Second)+1, "at most about one event a second (%d in %v)", n, elapsed)
			assert.GreaterOrEqual(t, n, 1)
		})
	}
}

func TestLiveEvents_StateBeforeStream(t *testing.T) {
	t.Parallel()
	// A state that changed between the build's page being made and its
	// stream being opened is told at once, as a new step or log would be.
	u, build, say := chattyBuild(t)
	u.m.WaitFor(t, "the step's first state", func() bool {
		b, err := u.m.Store.GetBuild(context.Background(), build.ID)
		require.NoError(t, err)
		return b.StateString == "chatty"
	})

	page := u.do(t, req{path: "builders/chatty/builds/1"})
	m := regexp.MustCompile(`data-live="([^"]+)"`).FindStringSubmatch(page.body)
	require.NotNil(t, m, "the page follows the build")
	say <- "compiling"
	u.m.WaitFor(t, "the new state stored", func() bool {
		b, err := u.m.Store.GetBuild(context.Background(), build.ID)
		require.NoError(t, err)
		return b.StateString == "compiling"
	})
	res, err := http.Get(u.root + strings.ReplaceAll(m[1], "&amp;", "&"))
	require.NoError(t, err)
	defer res.Body.Close()
	select {
	case e := <-readEvents(res.Body):
		assert.Equal(t, "change", e.name)
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not tell the page that the state changed")
	}
}
