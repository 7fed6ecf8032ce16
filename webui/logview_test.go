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

// feed is a builder whose one step writes a command's header, then the
// lines "feed 1", "feed 2"... as many as the test sends on more, until
// more is closed.
type feed struct{ more chan int }

func (f *feed) builder() ci.BuilderConfig {
	step := ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
		w, err := s.AddLog(ctx, "stdio", "")
		if err != nil {
			return ci.Exception, err
		}
		w.AddHeader("feed --lines\n")
		w.AddHeader(" in dir /build\n")
		n := 0
		for {
			select {
			case k, ok := <-f.more:
				if !ok {
					return ci.Success, w.Flush()
				}
				for range k {
					n++
					w.AddStdout("feed " + strconv.Itoa(n) + "\n")
				}
				if err := w.Flush(); err != nil {
					return ci.Exception, err
				}
			case <-ctx.Done():
				return ci.Cancelled, nil
			}
		}
	})
	return ci.BuilderConfig{Name: "feed", Workers: []string{"w2"}, Steps: []ci.Step{ci.WithOptions(ci.StepOptions{Name: "feed"}, step)}}
}

// A rect is where an element is in the window.
type rect struct {
	Left   float64 `json:"left"`
	Top    float64 `json:"top"`
	Height float64 `json:"height"`
}

func TestBrowser_LogView(t *testing.T) {
	f := &feed{more: make(chan int)}
	u := startUI(t, uiOptions{changeCfg: func(cfg *ci.MasterConfig) {
		cfg.Builders = append(cfg.Builders, f.builder())
	}})
	build := waitRunning(t, u, u.m.Submit(t, citest_Request("feed", nil)))
	t.Cleanup(func() { u.m.StopBuild(context.Background(), build.ID, "the test ended") })
	l := waitLog(t, u, build.ID, "feed")
	f.more <- 200
	page := u.url + "builders/feed/builds/1/steps/0/logs/stdio"
	tab := newTab(t)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("pre.log-lines"))))
	poll(t, tab, "the first lines", `/feed 200$/.test(document.querySelector("pre.log-lines .chunk:last-child .ln:last-child").textContent)`)

	// The header is folded above the output, which comes first.
	assert.Equal(t, "command feed --lines", text(t, tab, "details.log-head > summary"))
	folded, err := chromedp.Run(tab, chromedp.Evaluate[bool](`!document.querySelector("details.log-head").open`))
	require.NoError(t, err)
	assert.True(t, folded)
	assert.Equal(t, "feed 1", text(t, tab, "pre.log-lines .ln"))
	// Numbered from the header on: each chunk says where it starts (set
	// from the script, which the content security policy allows).
	reset, err := chromedp.Run(tab, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("pre.log-lines .ln")).counterReset`))
	require.NoError(t, err)
	assert.Equal(t, "ln 2", reset)

	// The page follows the end while its reader is there.
	following := `document.querySelector(".log-bar input").checked`
	lastInView := `(function () {
		var lines = document.querySelectorAll("pre.log-lines .ln"), r = lines[lines.length - 1].getBoundingClientRect();
		return r.bottom <= window.innerHeight + 1 && r.top >= 0;
	})()`
	visible, err := chromedp.Run(tab, chromedp.Evaluate[bool](`!document.querySelector(".log-bar").hidden && `+following))
	require.NoError(t, err)
	assert.True(t, visible, "the follow box shows, checked")
	f.more <- 200
	poll(t, tab, "line 400 in view", `/feed 400$/.test(document.querySelector("pre.log-lines").textContent.trim()) && `+lastInView)
	// Scrolling up stops it.
	_, err = chromedp.Run(tab, chromedp.Evaluate[bool](`window.scrollTo(0, 0), true`))
	require.NoError(t, err)
	poll(t, tab, "the follow box unchecked", `!`+following)
	f.more <- 200
	poll(t, tab, "line 600", `/feed 600$/.test(document.querySelector("pre.log-lines").textContent.trim())`)
	y, err := chromedp.Run(tab, chromedp.Evaluate[float64](`window.scrollY`))
	require.NoError(t, err)
	assert.Zero(t, y, "the page stays where its reader went")
	// The box starts it again.
	require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.CSS(".log-bar input"))))
	poll(t, tab, "following again", following+` && `+lastInView)
	f.more <- 50
	poll(t, tab, "line 650 in view", `/feed 650$/.test(document.querySelector("pre.log-lines").textContent.trim()) && `+lastInView)

	// A click on a line's number links to it: line 12 is the output's
	// tenth, after the two header lines.
	lineRect := func(tab context.Context, sel string) rect {
		r, err := chromedp.Run(tab, chromedp.Evaluate[rect](`(function () {
			var el = `+sel+`; el.scrollIntoView({block: "center"});
			var r = el.getBoundingClientRect(), p = el.closest("pre").getBoundingClientRect();
			return {left: p.left, top: r.top, height: r.height};
		})()`))
		require.NoError(t, err)
		return r
	}
	r := lineRect(tab, `document.querySelectorAll("pre.log-lines .ln")[9]`)
	require.NoError(t, chromedp.Do(tab, chromedp.MouseClickXY(r.Left+8, r.Top+r.Height/2)))
	poll(t, tab, "the link to line 12", `location.hash === "#L12" && document.querySelector(".ln.hl").textContent === "feed 10"`)
	// A click on a header line's number too.
	require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.CSS("details.log-head > summary"))))
	r = lineRect(tab, `document.querySelectorAll("pre.log-head .ln")[1]`)
	require.NoError(t, chromedp.Do(tab, chromedp.MouseClickXY(r.Left+8, r.Top+r.Height/2)))
	poll(t, tab, "the link to line 2", `location.hash === "#L2" && document.querySelector(".ln.hl").textContent === " in dir /build"`)

	// A page loaded with a link to a line scrolls there and highlights it,
	// and does not follow the end.
	tab2 := newTab(t)
	require.NoError(t, chromedp.Do(tab2, chromedp.Navigate(page+"#L300"), chromedp.WaitVisible(chromedp.CSS("pre.log-lines"))))
	poll(t, tab2, "line 300 highlighted", `(function () {
		var hl = document.querySelector(".ln.hl"); if (!hl || hl.textContent !== "feed 298") return false;
		var r = hl.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight;
	})()`)
	f.more <- 50
	poll(t, tab2, "line 700", `/feed 700$/.test(document.querySelector("pre.log-lines").textContent.trim())`)
	inView, err := chromedp.Run(tab2, chromedp.Evaluate[bool](`(function () {
		var r = document.querySelector(".ln.hl").getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight;
	})() && !document.querySelector(".log-bar input").checked`))
	require.NoError(t, err)
	assert.True(t, inView, "the linked line stays in view")

	// On the build's page, a link names the log and the line.
	require.NoError(t, chromedp.Do(tab2, chromedp.Navigate(u.url+"builders/feed/builds/1"), chromedp.WaitVisible(chromedp.CSS("pre.log-lines"))))
	poll(t, tab2, "the log's lines", `document.querySelectorAll("pre.log-lines .ln").length >= 700`)
	assert.Equal(t, "raw", text(t, tab2, `details.log a[href$="/raw_inline"]`))
	r = lineRect(tab2, `document.querySelectorAll("pre.log-lines .ln")[4]`)
	require.NoError(t, chromedp.Do(tab2, chromedp.MouseClickXY(r.Left+8, r.Top+r.Height/2)))
	poll(t, tab2, "the link to log line 7", `location.hash === "#log-`+itoa(l.ID)+`-L7" && document.querySelector(".ln.hl").textContent === "feed 5"`)
	close(f.more)
	u.m.WaitBuild(t, build.ID)
}
