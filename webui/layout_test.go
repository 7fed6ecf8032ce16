package webui_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/webui"
)

// screenshotDir is where browser tests write screenshots of the pages,
// from the environment variable WEBUI_SCREENSHOTS; "" (the default) for
// none. To look at the pages:
//
//	WEBUI_SCREENSHOTS=/tmp/shots go test ./webui/ -run 'TestBrowser(_Layout)?$'
func screenshotDir() string { return os.Getenv("WEBUI_SCREENSHOTS") }

// shoot saves a PNG of the whole page as name in the screenshot folder,
// if there is one.
func shoot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	if dir := screenshotDir(); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		screenshot(t, tab, dir, name)
	}
}

// colorScheme makes the tab's pages see the system prefer a light or a
// dark scheme.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

// TestBrowser_Layout loads the main pages in a wide and a narrow window
// and checks that none scrolls sideways: wide tables scroll in their own
// box, long words wrap. With WEBUI_SCREENSHOTS set, it saves a
// screenshot of each, and of each in the dark scheme.
func TestBrowser_Layout(t *testing.T) {
	authz := admin
	authz.Workers = webui.LoggedIn // the workers' control buttons
	u := startUI(t, uiOptions{authz: authz})
	ctx := context.Background()
	long := "release/2026-11-28-" + "averyveryverylongtagnamewithoutanyspaceinit-0123456789abcdef0123456789"
	c := &ci.Change{Author: "Ideascube Bot <bot@ideascube.org>", Branch: long, Revision: "0123456789abcdef0123456789abcdef01234567",
		Category: "new-tag", Repository: "https://github.com/ideascube/ideascube", Comments: "Release " + long, When: time.Now()}
	_, err := u.m.Master.AddChange(ctx, c)
	require.NoError(t, err)
	u.m.Build(t, citest.Request{Builder: "pass", SourceStamp: ci.SourceStamp{ID: c.SourceStampID}, Properties: map[string]any{"note": long}})
	u.m.Build(t, citest.Request{Builder: "fail", Reason: "nightly"})
	u.m.Build(t, citest.Request{Builder: "count", Properties: map[string]any{"lines": 3}, SourceStamp: ci.SourceStamp{Branch: "main"}})
	running := waitRunning(t, u, u.m.Submit(t, citest.Request{Builder: "count", Properties: map[string]any{"lines": 600},
		SourceStamp: ci.SourceStamp{Branch: long, Revision: "fedcba9876543210"}}))
	t.Cleanup(func() { u.m.StopBuild(context.Background(), running.ID, "the test ended") })
	waitLog(t, u, running.ID, liveStep)
	require.NoError(t, u.m.PauseWorker("w2", "disk full on "+long))
	build := "builders/count/builds/" + strconv.Itoa(running.Number)
	pages := []struct{ name, path, ready string }{
		{"home", "", "table.builders"},
		{"builder", "builders/count", "table.builds"},
		{"build-running", build, "pre.log-lines .ln"},
		{"log", build + "/steps/1/logs/stdio", "pre.log-lines .ln"},
		{"grid", "grid", "table.grid"},
		{"workers", "workers", "table.workers"},
		{"worker", "workers/w2", "table.facts"},
	}
	tab := newTab(t)
	require.NoError(t, chromedp.Do(tab, login(alice, alicePW)))
	for _, width := range []int64{1400, 500} {
		require.NoError(t, chromedp.Do(tab, chromedp.EmulateViewport(width, 900)))
		for _, p := range pages {
			require.NoError(t, chromedp.Do(tab, chromedp.Navigate(u.url+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready))))
			fits, err := chromedp.Run(tab, chromedp.Evaluate[[]int](`[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]`))
			require.NoError(t, err)
			assert.LessOrEqual(t, fits[0], fits[1], "%s at %d px wide scrolls sideways", p.name, width)
			if screenshotDir() == "" {
				continue
			}
			name := p.name + "-" + strconv.FormatInt(width, 10)
			shoot(t, tab, name+".png")
			require.NoError(t, chromedp.Do(tab, colorScheme("dark")))
			shoot(t, tab, name+"-dark.png")
			require.NoError(t, chromedp.Do(tab, colorScheme("light")))
		}
	}
	if dir := screenshotDir(); dir != "" {
		t.Logf("screenshots in %s", filepath.Clean(dir))
	}
}
