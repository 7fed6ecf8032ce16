package webui_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// gated is a builder whose steps the test moves on: "many" writes 300
// lines and passes; "second" writes a line, says what it does and waits
// for next1; "third" sets a property, writes a line in a log of its own,
// waits for next2 and writes another.
type gated struct {
	next1, next2 chan struct{}
}

func (g *gated) builder() ci.BuilderConfig {
	step := func(name string, fn ci.StepFunc) ci.Step { return ci.WithOptions(ci.StepOptions{Name: name}, fn) }
	write := func(ctx context.Context, s *ci.StepRun, log string, lines ...string) (*ci.LogWriter, error) {
		w, err := s.AddLog(ctx, log, "")
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			w.AddStdout(l + "\n")
		}
		return w, w.Flush()
	}
	return ci.BuilderConfig{Name: "gated", Workers: []string{"w2"}, Steps: []ci.Step{
		step("many", func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			lines := make([]string, 300)
			for i := range lines {
				lines[i] = "many " + strconv.Itoa(i+1)
			}
			if _, err := write(ctx, s, "stdio", lines...); err != nil {
				return ci.Exception, err
			}
			return ci.Success, nil
		}),
		step("second", func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			if _, err := write(ctx, s, "stdio", "second 1"); err != nil {
				return ci.Exception, err
			}
			s.SetStateString("second: working")
			select {
			case <-g.next1:
			case <-ctx.Done():
				return ci.Cancelled, nil
			}
			return ci.Success, nil
		}),
		step("third", func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			s.SetProperty("third_prop", "<i>set by third</i>", "third")
			s.SetStateString("third: waiting")
			w, err := write(ctx, s, "third log", "third 1")
			if err != nil {
				return ci.Exception, err
			}
			select {
			case <-g.next2:
			case <-ctx.Done():
				return ci.Cancelled, nil
			}
			w.AddStdout("third 2\n")
			return ci.Success, w.Flush()
		}),
	}}
}

func TestBrowser_BuildPageLive(t *testing.T) {
	g := &gated{next1: make(chan struct{}), next2: make(chan struct{})}
	u := startUI(t, uiOptions{authz: admin, changeCfg: func(cfg *ci.MasterConfig) {
		cfg.Builders = append(cfg.Builders, g.builder())
	}})
	build := waitRunning(t, u, u.m.Submit(t, citest_Request("gated", nil)))
	t.Cleanup(func() { u.m.StopBuild(context.Background(), build.ID, "the test ended") })
	waitLog(t, u, build.ID, "second")
	ctx := context.Background()
	steps, err := u.m.Store.ListSteps(ctx, build.ID)
	require.NoError(t, err)
	logs, err := u.m.Store.ListLogs(ctx, steps[0].ID)
	require.NoError(t, err)
	many := "#log-" + itoa(logs[0].ID)

	tab := newTab(t)
	require.NoError(t, chromedp.Do(tab, login(alice, alicePW), chromedp.Navigate(u.url+"builders/gated/builds/1"),
		chromedp.WaitVisible(chromedp.CSS("ol.steps"))))
	// What would not survive a reload.
	_, err = chromedp.Run(tab, chromedp.Evaluate[bool](`window.kilnMarker = true`))
	require.NoError(t, err)
	poll(t, tab, "the second step's state", `document.querySelector("#build-state").textContent === "second: working"`)
	assert.Equal(t, "running", text(t, tab, "#build-result"))
	assert.NotEmpty(t, text(t, tab, ".stop-form"), "a running build has a stop form")

	// The finished step's log is closed; the reader opens it and scrolls
	// it halfway.
	open, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.querySelector("`+many+`").open`))
	require.NoError(t, err)
	require.False(t, open, "a passed step's log starts closed")
	type logState struct {
		Open      bool    `json:"open"`
		Lines     int     `json:"lines"`
		First     string  `json:"first"`
		ScrollTop float64 `json:"scrollTop"`
	}
	// sameLog compares two states of the log: its scroll position within
	// a few pixels, which the browser may move by one or two as the page
	// around the log changes (it would be 0, or the end, had the log been
	// made again).
	sameLog := func(t *testing.T, want, got logState, msg string) {
		t.Helper()
		assert.InDelta(t, want.ScrollTop, got.ScrollTop, 4, msg)
		want.ScrollTop, got.ScrollTop = 0, 0
		assert.Equal(t, want, got, msg)
	}
	state := `(function () {
		var d = document.querySelector("` + many + `"), pre = d.querySelector("pre.log-lines");
		return {open: d.open, lines: pre.getElementsByClassName("ln").length, first: pre.querySelector(".ln").textContent, scrollTop: pre.scrollTop};
	})()`
	require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.CSS(many+" > summary"))))
	_, err = chromedp.Run(tab, chromedp.Evaluate[bool](`(function () {
		var pre = document.querySelector("`+many+` pre.log-lines");
		pre.scrollTop = (pre.scrollHeight - pre.clientHeight) / 2;
		return true;
	})()`))
	require.NoError(t, err)
	poll(t, tab, "the log scrolled", `document.querySelector("`+many+` pre.log-lines").scrollTop > 100`)
	before, err := chromedp.Run(tab, chromedp.Evaluate[logState](state))
	require.NoError(t, err)
	require.True(t, before.Open)
	require.Equal(t, 300, before.Lines)

	// The build's duration counts on, on the page.
	dur := text(t, tab, "#build-facts .dur")
	poll(t, tab, "the duration counting on", `document.querySelector("#build-facts .dur").textContent !== `+strconv.Quote(dur))
	// And so does the running step's.
	second := `Array.from(document.querySelectorAll("li.step")).find(li => li.querySelector(".step-name").textContent === "second").querySelector(".step-head .dur")`
	stepDur, err := chromedp.Run(tab, chromedp.Evaluate[string](second+`.textContent`))
	require.NoError(t, err)
	require.Regexp(t, `^\d+s$`, stepDur, "the running step shows its duration")
	poll(t, tab, "the running step's duration counting on", second+`.textContent !== `+strconv.Quote(stepDur))

	// The home page, open beside it, lists the build and its state.
	home := newTab(t)
	require.NoError(t, chromedp.Do(home, chromedp.Navigate(u.url), chromedp.WaitVisible(chromedp.CSS("table.builds"))))
	_, err = chromedp.Run(home, chromedp.Evaluate[bool](`window.kilnMarker = true`))
	require.NoError(t, err)
	poll(t, home, "the build's state on the home page", `/second: working/.test(document.querySelector("table.builds").textContent)`)

	// Two step changes: second passes, third starts with a log of its own.
	_, err = chromedp.Run(tab, chromedp.Evaluate[bool](`(window.kilnStopForm = document.querySelector(".stop-form")) !== null`))
	require.NoError(t, err)
	close(g.next1)
	poll(t, tab, "the third step on the page", `document.querySelector("#build-state").textContent === "third: waiting" &&
		Array.from(document.querySelectorAll("#build-steps .step-name")).map(e => e.textContent).join() === "many,second,third"`)
	same, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.querySelector(".stop-form") === window.kilnStopForm`))
	require.NoError(t, err)
	assert.True(t, same, "the stop form, unchanged, is still the one the reader may be clicking")
	poll(t, tab, "the second step passed", `Array.from(document.querySelectorAll("li.step")).some(li =>
		li.querySelector(".step-name").textContent === "second" && li.querySelector(".result").textContent === "success")`)
	// Its duration, now final, counts no more.
	poll(t, tab, "the second step's duration final", `!`+second+`.hasAttribute("data-start")`)
	poll(t, tab, "the third step's new log followed", `Array.from(document.querySelectorAll("li.step")).some(li =>
		li.querySelector(".step-name").textContent === "third" && /third 1/.test(li.querySelector("pre.log-lines").textContent))`)
	poll(t, tab, "the property the third step set", `/<i>set by third<\/i>/.test(document.querySelector("#build-props").textContent)`)
	after, err := chromedp.Run(tab, chromedp.Evaluate[logState](state))
	require.NoError(t, err)
	sameLog(t, before, after, "the log the reader opened is still open, with its lines, where it was scrolled")
	marker, err := chromedp.Run(tab, chromedp.Evaluate[bool](`window.kilnMarker === true`))
	require.NoError(t, err)
	assert.True(t, marker, "the page changed in place, without loading again")

	poll(t, home, "the new state on the home page", `/third: waiting/.test(document.querySelector("table.builds").textContent)`)
	marker, err = chromedp.Run(home, chromedp.Evaluate[bool](`window.kilnMarker === true`))
	require.NoError(t, err)
	assert.True(t, marker, "the home page changed in place, without loading again")

	// The build ends: its result, no stop form, the last line of the
	// third step's log.
	close(g.next2)
	u.m.WaitBuild(t, build.ID)
	poll(t, tab, "the build's result", `document.querySelector("#build-result").textContent === "success"`)
	poll(t, tab, "the stop form gone", `document.querySelector(".stop-form") === null && document.querySelector(".rebuild-form") !== null`)
	poll(t, tab, "the third step's last line", `/third 2/.test(document.querySelector("#build-steps li:last-child pre.log-lines").textContent)`)
	after, err = chromedp.Run(tab, chromedp.Evaluate[logState](state))
	require.NoError(t, err)
	sameLog(t, before, after, "the log the reader opened is still as it was")
	marker, err = chromedp.Run(tab, chromedp.Evaluate[bool](`window.kilnMarker === true`))
	require.NoError(t, err)
	assert.True(t, marker, "the page changed in place, without loading again")
	poll(t, home, "the build gone from the home page's running builds", `document.querySelector("table.builds") === null`)
}
