package webui_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/pgtest"
	"github.com/kilnci/kiln/internal/testenv"
)

// One browser serves every browser test of a run; each test opens its own
// tabs. TestMain closes it.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
}

// The test binary doubles as the programs the builds of some tests run:
// run as "TEST -- NAME ARGS..." with KILN_HELPER=1 in its environment,
// TestMain runs the helper NAME instead of the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "--" {
		if os.Getenv("KILN_HELPER") != "1" {
			// Never run the tests again from a test.
			fmt.Fprintln(os.Stderr, "helper run without KILN_HELPER=1")
			os.Exit(98)
		}
		if len(os.Args) < 3 {
			os.Exit(97)
		}
		os.Exit(runHelper(os.Args[2], os.Args[3:]))
	}
	code := pgtest.Run(m) // stops the PostgreSQL server of the cluster tests
	if browser.cancel != nil {
		browser.cancel()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// newTab opens a tab in the test browser, started on first use, and
// closes it when the test ends. Each use of the tab must end within two
// minutes of its opening.
func newTab(t testing.TB) context.Context {
	t.Helper()
	return newTabFor(t, 2*time.Minute)
}

// newTabFor is newTab for a tab used for up to d.
func newTabFor(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	testenv.SkipIfShort(t, "runs a browser")
	path := testenv.NeedTool(t, "chromium")
	browser.once.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			chromedp.ExecPath(path),
			chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.UserDataDir(dir),
			chromedp.WindowSize(1280, 900),
		)
		ctx, cancelCtx := chromedp.NewContext(alloc)
		browser.ctx = ctx
		browser.cancel = func() {
			cancelCtx()
			cancelAlloc()
			os.RemoveAll(dir)
		}
		// Start the browser now, so that tabs are opened in it.
		browser.err = chromedp.Do(ctx)
	})
	require.NoError(t, browser.err, "starting chromium")
	tab, cancel := chromedp.NewContext(browser.ctx)
	t.Cleanup(cancel)
	tab, cancelTimeout := context.WithTimeout(tab, d)
	t.Cleanup(cancelTimeout)
	return tab
}

// login makes the tab send alice's credentials with every request, as a
// browser does once its user logged in.
func login(user, password string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})
}

// screenshot saves a PNG of the whole page in dir.
func screenshot(t *testing.T, tab context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
}

// text returns the text of the first element sel selects.
func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err)
	return s
}

// poll waits until a JavaScript expression is true, evaluating it every
// tenth of a second. An evaluation that a navigation interrupts is tried
// again.
func poll(t testing.TB, tab context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(tab, 5*time.Second)
		var ok bool
		ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(function () { try { return !!(`+expr+`); } catch (e) { return false; } })()`))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	state, _ := chromedp.Run(tab, chromedp.Evaluate[string](`location.href + " live=" + (document.body.dataset.live || "") +
		" result=" + ((document.querySelector("#build-result") || {}).textContent || "")`))
	t.Fatalf("waiting for %s: last error %v (page: %s)", what, err, state)
}

// waitFinished waits for a build to finish, for at most d, and reports
// whether it did.
func waitFinished(u *ui, buildID int64, d time.Duration) bool {
	sub := u.m.Subscribe(1024)
	defer sub.Close()
	deadline := time.After(d)
	for {
		if b, err := u.m.Store.GetBuild(context.Background(), buildID); err == nil && b.Complete {
			return true
		}
		select {
		case <-sub.C:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
}

func TestBrowser(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin})
	// Two new tags, built on pass and fail: the grid's rows.
	for _, tag := range []string{"0.9.0", "0.9.1"} {
		c := &ci.Change{Author: "Ideascube Bot", Branch: tag, Revision: "v" + tag, Category: "new-tag",
			Repository: "https://github.com/ideascube/ideascube", Comments: "Release " + tag, When: time.Now()}
		_, err := u.m.Master.AddChange(context.Background(), c)
		require.NoError(t, err)
		for _, b := range []string{"pass", "fail"} {
			req := citest_Request(b, map[string]any{"note": "<b>not bold</b>"})
			req.SourceStamp = ci.SourceStamp{ID: c.SourceStampID}
			u.m.Build(t, req)
		}
	}

	t.Run("Anonymous", func(t *testing.T) {
		tab := newTab(t)
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url), chromedp.WaitVisible(chromedp.CSS("table.builders"))))
		assert.Contains(t, text(t, tab, "table.builders"), "#2 success")
		assert.Contains(t, text(t, tab, "header .who"), "Log in")
		// The force form is shown, but forcing needs a login: the form's
		// post and the API answer 401. (Sent without credentials, so that
		// the browser does not stop to ask for a password.)
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url+"builders/count"),
			chromedp.WaitVisible(chromedp.CSS(`button[name="force"]`))))
		status, err := chromedp.Run(tab, chromedp.Evaluate[int](`fetch(document.querySelector("form.force-form").action, {
			method: "POST", credentials: "omit", body: new URLSearchParams(new FormData(document.querySelector("form.force-form")))}).then(r => r.status)`,
			chromedp.EvalAwaitPromise))
		require.NoError(t, err)
		assert.Equal(t, 401, status)
		status, err = chromedp.Run(tab, chromedp.Evaluate[int](`fetch("`+u.url+`api/v2/forceschedulers/force", {method: "POST",
			credentials: "omit", headers: {"Content-Type": "application/json"},
			body: JSON.stringify({jsonrpc: "2.0", method: "force", params: {builderid: 1}, id: 1})}).then(r => r.status)`,
			chromedp.EvalAwaitPromise))
		require.NoError(t, err)
		assert.Equal(t, 401, status)
		reqs, _, err := u.m.Store.ListRequests(context.Background(), ci.RequestQuery{BuilderID: mustID(t, u, "count")})
		require.NoError(t, err)
		assert.Empty(t, reqs, "nothing was forced")
	})

	t.Run("ForceWatchStop", func(t *testing.T) {
		tab := newTab(t)
		require.NoError(t, chromedp.Do(tab, login(alice, alicePW), chromedp.Navigate(u.url),
			chromedp.WaitVisible(chromedp.CSS("table.builders"))))
		assert.Equal(t, alice, text(t, tab, "header .user"))
		shoot(t, tab, "home.png")

		// Force a build of count with properties, from the form.
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url+"builders/count"),
			chromedp.WaitVisible(chromedp.CSS(`form.force-form`)),
			chromedp.SetValue(chromedp.CSS(`select[name="dist"]`), "stretch"),
			chromedp.SetValue(chromedp.CSS(`input[name="lines"]`), "40"),
			chromedp.SetValue(chromedp.CSS(`input[name="note"]`), "forced <from> the browser"),
		))
		shoot(t, tab, "builder.png")
		// The form leads to the new build's page: watch its log grow there.
		require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.CSS(`button[name="force"]`))))
		poll(t, tab, "the forced build's page", `location.pathname.endsWith("/builders/count/builds/1")`)
		countLines := `Array.from(document.querySelectorAll("li.step")).filter(li => li.querySelector(".step-name").textContent === "count")
			.map(li => li.querySelectorAll("pre .ln.o").length).concat([0])[0]`
		poll(t, tab, "the first lines of the count step", countLines+` >= 3`)
		first, err := chromedp.Run(tab, chromedp.Evaluate[int](countLines))
		require.NoError(t, err)
		build, err := u.m.Store.FindBuild(context.Background(), mustID(t, u, "count"), 1)
		require.NoError(t, err)
		require.False(t, build.Complete, "the build runs while its log is read")
		poll(t, tab, "more lines of the count step", countLines+` > `+itoa(int64(first)))
		assert.Equal(t, "running", text(t, tab, "#build-result"))
		shoot(t, tab, "build-running.png")
		poll(t, tab, "the build's result", `document.querySelector("#build-result").textContent === "success"`)
		page, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector("main").textContent`))
		require.NoError(t, err)
		assert.Contains(t, page, "line 40")
		assert.Contains(t, page, "dist=stretch")
		assert.Contains(t, page, "forced <from> the browser", "a property value shown as text")
		shoot(t, tab, "build.png")

		// Force a long build and stop it.
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url+"builders/count"),
			chromedp.WaitVisible(chromedp.CSS(`form.force-form`)),
			chromedp.SetValue(chromedp.CSS(`input[name="lines"]`), "600"),
			chromedp.Click(chromedp.CSS(`button[name="force"]`))))
		poll(t, tab, "the long build's page", `location.pathname.endsWith("/builders/count/builds/2")`)
		poll(t, tab, "the long build's log", countLines+` >= 1`)
		long, err := u.m.Store.FindBuild(context.Background(), mustID(t, u, "count"), 2)
		require.NoError(t, err)
		// A build's page keeps its stop form while the form is the same,
		// but a click that lands as the page changes can still be lost:
		// a user clicks again.
		for try := 1; ; try++ {
			err := chromedp.Do(tab,
				chromedp.SetValue(chromedp.CSS(`form.stop-form input[name="reason"]`), "too long"),
				chromedp.Click(chromedp.CSS(`button[name="stop"]`)))
			if err == nil && waitFinished(u, long.ID, 10*time.Second) {
				break
			}
			require.Less(t, try, 3, "the build was not stopped: %v", err)
			t.Logf("stop click %d was lost (%v); clicking again", try, err)
			require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url+"builders/count/builds/2")))
		}
		poll(t, tab, "the stopped build's result", `document.querySelector("#build-result").textContent === "cancelled"`)
		b, err := u.m.Store.GetBuild(context.Background(), long.ID)
		require.NoError(t, err)
		assert.Equal(t, ci.Cancelled, b.Results)
		shoot(t, tab, "build-stopped.png")

		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url+"grid"), chromedp.WaitVisible(chromedp.CSS("main h1"))))
		shoot(t, tab, "grid.png")
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url+"workers"), chromedp.WaitVisible(chromedp.CSS("table.workers"))))
		shoot(t, tab, "workers.png")
	})
}
