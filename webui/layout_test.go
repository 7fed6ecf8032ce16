package webui_test

import (
	"context"
	"fmt"
	"math"
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

// TestBrowser_DarkScheme: where the system prefers a dark scheme, the
// pages are dark (kiln.css's prefers-color-scheme rule): the page's and the
// tables' backgrounds are dark, not the light scheme's, and the text and
// links stand out on them.
func TestBrowser_DarkScheme(t *testing.T) {
	u := startUI(t, uiOptions{})
	u.m.Build(t, citest.Request{Builder: "pass"})
	tab := newTab(t)
	// colors reads the computed colours of the page, its builders table
	// and a link in it, as "rgb(r, g, b)".
	colors := func(scheme string) map[string]string {
		t.Helper()
		require.NoError(t, chromedp.Do(tab, colorScheme(scheme),
			chromedp.Navigate(u.url), chromedp.WaitVisible(chromedp.CSS("table.builders a"))))
		got, err := chromedp.Run(tab, chromedp.Evaluate[map[string]string](`(() => {
			const body = getComputedStyle(document.body), table = getComputedStyle(document.querySelector("table.builders"));
			return {bg: body.backgroundColor, fg: body.color, panel: table.backgroundColor,
				link: getComputedStyle(document.querySelector("table.builders a")).color,
				dark: String(matchMedia("(prefers-color-scheme: dark)").matches)};
		})()`))
		require.NoError(t, err)
		return got
	}
	light, dark := colors("light"), colors("dark")
	require.Equal(t, "false", light["dark"])
	require.Equal(t, "true", dark["dark"], "the emulated preference reaches the page")
	for _, k := range []string{"bg", "fg", "panel", "link"} {
		assert.NotEqual(t, light[k], dark[k], "%s is the same in both schemes", k)
	}
	assert.Greater(t, luminance(t, light["bg"]), 0.8, "light page background %s", light["bg"])
	for _, k := range []string{"bg", "panel"} {
		assert.Less(t, luminance(t, dark[k]), 0.05, "dark %s %s is not dark", k, dark[k])
	}
	for _, k := range []string{"fg", "link"} {
		for _, on := range []string{"bg", "panel"} {
			assert.GreaterOrEqual(t, contrast(t, dark[k], dark[on]), 4.5, "dark %s %s on %s %s", k, dark[k], on, dark[on])
			assert.GreaterOrEqual(t, contrast(t, light[k], light[on]), 4.5, "light %s %s on %s %s", k, light[k], on, light[on])
		}
	}
}

// luminance is the relative luminance (WCAG 2) of a CSS colour written
// "rgb(r, g, b)", from 0 (black) to 1 (white).
func luminance(t *testing.T, rgb string) float64 {
	t.Helper()
	var c [3]float64
	_, err := fmt.Sscanf(rgb, "rgb(%g, %g, %g)", &c[0], &c[1], &c[2])
	require.NoError(t, err, "colour %q", rgb)
	for i, v := range c {
		v /= 255
		if v <= 0.04045 {
			c[i] = v / 12.92
		} else {
			c[i] = math.Pow((v+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]
}

// contrast is the contrast ratio (WCAG 2) of two colours, from 1 to 21.
func contrast(t *testing.T, a, b string) float64 {
	la, lb := luminance(t, a), luminance(t, b)
	return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
}
