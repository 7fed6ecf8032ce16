package webui_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// hostile is text from outside (a branch name, a commit message, a
// property value, a log line) that would run if it were not escaped.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

// normalize removes what changes from run to run: temporary folders and
// timings.
func normalize(s string) string {
	s = regexp.MustCompile(`/tmp/[^\s<"&']*`).ReplaceAllString(s, "TMP")
	s = regexp.MustCompile(`elapsedTime=[0-9.]+`).ReplaceAllString(s, "elapsedTime=X")
	s = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(s, "HOST")
	s = regexp.MustCompile(`<dt>(numcpus|os_name|os_release|host|version)</dt><dd>[^<]*</dd>`).ReplaceAllString(s, "<dt>$1</dt><dd>X</dd>")
	s = regexp.MustCompile(`<th>(numcpus|os_name|os_release|host|version)</th><td>[^<]*</td>`).ReplaceAllString(s, "<th>$1</th><td>X</td>")
	return s
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to write the golden file")
	assert.Equal(t, string(want), got, "page %s differs from its golden file (go test -update rewrites it)", name)
}

// hostileUI starts a master on a fixed clock, with a change, a build of it
// and a failed build, all carrying hostile text.
func hostileUI(t *testing.T) (*ui, *citest.Build) {
	clock := citest.NewClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	u := startUI(t, uiOptions{authz: admin, changeCfg: func(cfg *ci.MasterConfig) {
		cfg.Clock = clock
		cfg.Title = "Ideascube"
	}, public: func(string) string { return "https://ci.example.org/ci/" }})
	ctx := context.Background()
	c := &ci.Change{Author: "Eve <eve@example.org>", Branch: hostile, Revision: "0123456789abcdef",
		Comments: hostile + "\nsecond line", Repository: "https://github.com/ideascube/ideascube", Category: "new-tag", When: clock.Now()}
	_, err := u.m.Master.AddChange(ctx, c)
	require.NoError(t, err)
	b := u.m.Build(t, citest.Request{Builder: "pass", SourceStamp: ci.SourceStamp{ID: c.SourceStampID},
		Properties: map[string]any{"note": hostile, "dist": "jessie"}})
	require.Equal(t, ci.Success, b.Results())
	f := u.m.Build(t, citest.Request{Builder: "fail"})
	require.Equal(t, ci.Failure, f.Results())
	return u, b
}

func TestPages_Golden(t *testing.T) {
	u, b := hostileUI(t)
	for _, tt := range []struct{ name, path string }{
		{"home.html", ""},
		{"build.html", "builders/pass/builds/1"},
		{"builder.html", "builders/count"},
		{"builder-builds.html", "builders/pass"},
		{"worker.html", "workers/w1"},
		{"grid.html", "grid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := u.do(t, req{path: tt.path})
			require.Equal(t, http.StatusOK, res.code, res.body)
			golden(t, tt.name, normalize(res.body))
		})
	}
	_ = b
}

func TestPages_Escaping(t *testing.T) {
	u, b := hostileUI(t)
	for _, path := range []string{"", "builders/pass", "builders/pass/builds/1", "builders/pass/builds/1/steps/0/logs/stdio", "workers/w1",
		"changes", "grid", "workers", "api/v2/changes", "api/v2/builds/" + itoa(b.Record.ID), "api/v2/logs/1/contents"} {
		t.Run(path, func(t *testing.T) {
			res := u.do(t, req{path: path})
			require.Equal(t, http.StatusOK, res.code, res.body)
			assert.NotContains(t, res.body, "<script>", "hostile text must be escaped")
			assert.NotContains(t, res.body, "<img", "hostile text must be escaped")
			assert.Contains(t, res.header.Get("Content-Security-Policy"), "script-src 'self'")
		})
	}
	// Shown as text, in each place it comes from.
	page := u.do(t, req{path: "builders/pass/builds/1"}).body
	escaped := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;`
	assert.Contains(t, page, `<td data-label="branch">`+escaped+`</td>`, "branch of the source stamp")
	assert.Contains(t, page, `<span class="comments">`+escaped+`</span>`, "commit message")
	assert.Contains(t, page, `<td class="value">`+escaped+`</td>`, "property value")
	assert.Contains(t, page, `<span class="ab fg2">green</span> &lt;b&gt;bold&lt;/b&gt; `+escaped, "log line")
	grid := u.do(t, req{path: "grid"}).body
	assert.Contains(t, grid, `<b>`+escaped+`</b>`, "branch in the grid")
	// The raw log is text, sent as a download.
	raw := u.do(t, req{path: "api/v2/logs/1/raw"})
	assert.Equal(t, "text/plain; charset=utf-8", raw.header.Get("Content-Type"))
	assert.Equal(t, `attachment; filename="pass_build_1_step_colours_stdio.log"`, raw.header.Get("Content-Disposition"))
	assert.Contains(t, raw.body, "\x1b[1;32mgreen\x1b[0m <b>bold</b> "+hostile+"\n")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestPages_BuildURL(t *testing.T) {
	u := startUI(t, uiOptions{})
	b := u.m.Build(t, citest.Request{Builder: "pass"})
	want := u.m.BuildURL("pass", b.Record.Number)
	require.Equal(t, u.url+"builders/pass/builds/1", want)
	// The build page is at the address the master sends out, and the pages
	// link to it by the same path.
	res, err := http.Get(want)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	home := u.do(t, req{})
	assert.Contains(t, home.body, `href="`+strings.TrimPrefix(want, u.root)+`"`)
	// A proxy may also pass the path on without stripping it, or strip it.
	assert.Equal(t, http.StatusOK, u.do(t, req{path: "builders/pass/builds/1"}).code)
	res, err = http.Get(u.root + "/builders/pass/builds/1")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, http.StatusNotFound, u.do(t, req{path: "builders/pass/builds/7"}).code)
	assert.Equal(t, http.StatusNotFound, u.do(t, req{path: "builders/nope"}).code)
}

func TestPages_Pagination(t *testing.T) {
	t.Parallel()
	u := startUI(t, uiOptions{})
	for range 3 {
		u.m.Build(t, citest.Request{Builder: "fail"})
	}
	h := u.do(t, req{path: "builders/fail"})
	assert.Contains(t, h.body, "page 1 of 1")
	// A small page size, through the options.
	u2 := startUI(t, uiOptions{pageSize: 2})
	for range 5 {
		u2.m.Build(t, citest.Request{Builder: "fail"})
	}
	p1 := u2.do(t, req{path: "builders/fail"}).body
	assert.Contains(t, p1, "page 1 of 3")
	assert.Contains(t, p1, `href="/ci/builders/fail/builds/5"`)
	assert.NotContains(t, p1, `href="/ci/builders/fail/builds/3"`)
	assert.Contains(t, p1, `href="/ci/builders/fail?page=2" rel="next"`)
	p3 := u2.do(t, req{path: "builders/fail?page=3"}).body
	assert.Contains(t, p3, `href="/ci/builders/fail/builds/1"`)
	assert.Contains(t, p3, `rel="prev"`)
	assert.Equal(t, http.StatusBadRequest, u2.do(t, req{path: "builders/fail?page=0"}).code)
}

func TestPages_Workers(t *testing.T) {
	u := startUI(t, uiOptions{})
	ctx := context.Background()
	// A worker's environment may hold secrets: even if it reached the
	// store, neither the page nor the API shows it.
	ws, err := u.m.Store.ListWorkers(ctx)
	require.NoError(t, err)
	info := map[string]any{"admin": "Ops <ops@example.org>", "host": "builder-1", "environ": map[string]any{"GITHUB_TOKEN": "hunter2"}}
	require.NoError(t, u.m.Store.SetWorkerConnected(ctx, ws[0].ID, true, info, time.Now()))
	for _, path := range []string{"workers", "api/v2/workers", "api/v2/workers/" + ws[0].Name} {
		res := u.do(t, req{path: path})
		require.Equal(t, http.StatusOK, res.code)
		assert.NotContains(t, res.body, "hunter2", path)
		assert.NotContains(t, res.body, "GITHUB_TOKEN", path)
		assert.NotContains(t, res.body, "environ", path)
	}
	page := u.do(t, req{path: "workers"}).body
	assert.Contains(t, page, "<dt>admin</dt><dd>Ops &lt;ops@example.org&gt;</dd>")
	assert.Contains(t, page, "<dt>host</dt><dd>builder-1</dd>")
	assert.Contains(t, page, `<span class="worker up">connected</span>`)
}

func TestPages_LiveLog(t *testing.T) {
	// A running step's log is followed: the block says where the stream
	// is, from which line, and how many lines the page keeps; the note on
	// earlier lines is there, hidden while there are none.
	u := startUI(t, uiOptions{authz: admin})
	bsid := u.m.Submit(t, citest_Request("count", map[string]any{"lines": 600}))
	build := waitRunning(t, u, bsid)
	l := waitLog(t, u, build.ID, liveStep)
	t.Cleanup(func() { u.jsonrpc(t, "api/v2/builds/"+itoa(build.ID), "stop", map[string]any{}, true) })
	stream := regexp.QuoteMeta(`data-stream="`+subPath+`logs/`+itoa(l.ID)+`/live"`) + ` data-keep="%d" data-next="\d+">`

	res := u.do(t, req{path: "builders/count/builds/1"})
	require.Equal(t, http.StatusOK, res.code)
	assert.Regexp(t, fmt.Sprintf(stream, 1000), res.body)
	assert.Contains(t, res.body, `<p class="muted log-earlier" data-lines="0" hidden><span class="n">0</span> earlier lines`)

	res = u.do(t, req{path: "builders/count/builds/1/steps/1/logs/stdio"})
	require.Equal(t, http.StatusOK, res.code)
	assert.Regexp(t, fmt.Sprintf(stream, 20000), res.body)
	assert.Contains(t, res.body, `<p class="muted log-earlier" data-lines="0" hidden><span class="n">0</span> earlier lines are in the download.`)
}

func TestPages_LogView(t *testing.T) {
	// A command's header lines are folded above its output; the log links
	// to its raw text, which the browser shows.
	u := startUI(t, uiOptions{})
	b := u.m.Build(t, citest_Request("count", map[string]any{"lines": 2}))
	l := waitLog(t, u, b.Record.ID, liveStep)
	for _, path := range []string{"builders/count/builds/1", "builders/count/builds/1/steps/1/logs/stdio"} {
		whole := u.do(t, req{path: path}).body
		assert.Contains(t, whole, `<a href="/ci/api/v2/logs/`+itoa(l.ID)+`/raw_inline">raw</a>`)
		_, page, _ := strings.Cut(whole, `id="log-`+itoa(l.ID)+`"`) // the count step's log
		head := regexp.MustCompile(`(?s)<details class="log-head"><summary>command <code class="cmd">sh -c (.*?)</code></summary>\s*<pre class="log-head">(.*?)</pre></details>`).
			FindStringSubmatch(page)
		require.NotNil(t, head, "%s folds the command's header", path)
		assert.Contains(t, head[2], `<span class="ln h"> argv: [`)
		assert.NotContains(t, head[2], "line 1", "the output is not in the header")
		out := regexp.MustCompile(`(?s)<pre class="log-lines[^"]*" data-anchor="([^"]*)" data-head="(\d+)" data-next="(\d+)">(.*?)</pre>`).FindStringSubmatch(page)
		require.NotNil(t, out, "%s shows the output", path)
		assert.True(t, strings.HasPrefix(out[4], `<span class="chunk"><span class="ln o">line 1</span>`), "%s: the output comes first in its block: %s", path, out[4])
		assert.Equal(t, strconv.Itoa(strings.Count(head[2], `class="ln h"`)), out[2], "the block says where the output starts")
		assert.Equal(t, strconv.Itoa(l.NumLines), out[3])
	}
	raw := u.do(t, req{path: "api/v2/logs/" + itoa(l.ID) + "/raw_inline"})
	require.Equal(t, http.StatusOK, raw.code)
	assert.Equal(t, "text/plain; charset=utf-8", raw.header.Get("Content-Type"))
	assert.Equal(t, `inline; filename="count_build_1_step_count_stdio.log"`, raw.header.Get("Content-Disposition"))
	assert.Contains(t, raw.body, "line 1\nline 2\n")
}

func TestPages_BuildLists(t *testing.T) {
	// Lists of builds say where each comes from (branch or tag, short
	// revision), who asked for it or why, when it started (the exact time
	// on hover) and how long it took, under ten seconds to the tenth.
	u := startUI(t, uiOptions{authz: admin})
	res, ans := u.jsonrpc(t, "api/v2/forceschedulers/force", "force", map[string]any{
		"builderid": mustID(t, u, "pass"), "reason": "release", "branch": "0.9.1", "revision": "0123456789abcdef0123"}, true)
	require.Equal(t, http.StatusOK, res.code, res.body)
	u.m.WaitBuildset(t, int64(ans["result"].([]any)[0].(float64)))
	u.m.Build(t, citest.Request{Builder: "pass", Reason: "nightly <build>"})
	running := waitRunning(t, u, u.m.Submit(t, citest_Request("count", map[string]any{"lines": 600})))
	t.Cleanup(func() { u.m.StopBuild(context.Background(), running.ID, "the test ended") })

	row := func(page, href string) string {
		t.Helper()
		body := u.do(t, req{path: page}).body
		m := regexp.MustCompile(`(?s)<tr><td class="nowrap"><a href="` + regexp.QuoteMeta(href) + `">.*?</tr>`).FindString(body)
		require.NotEmpty(t, m, "%s lists %s", page, href)
		return m
	}
	started := `<td class="nowrap"><time datetime="[0-9TZ:-]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">just now</time></td>`
	precise := `<td class="nowrap"><span class="dur">(\d+ ms|\d\.\d s)</span></td>`
	for _, page := range []string{"builders/pass", "workers/w1"} {
		forced := row(page, subPath+"builders/pass/builds/1")
		assert.Contains(t, forced, `<b class="branch">0.9.1</b> <span class="rev" title="0123456789abcdef0123">0123456789ab</span>`, page)
		assert.Contains(t, forced, `<span class="owner" title="A build was forced by &#39;alice&#39;: release">alice</span>`, page)
		assert.Regexp(t, started, forced, page)
		assert.Regexp(t, precise, forced, page)
		nightly := row(page, subPath+"builders/pass/builds/2")
		assert.Contains(t, nightly, `<span class="muted">default</span>`, page)
		assert.Contains(t, nightly, `<span class="reason">nightly &lt;build&gt;</span>`, page)
	}
	// A running build counts on in the page, from when it started.
	home := row("", subPath+"builders/count/builds/1")
	assert.Regexp(t, `<span class="dur" data-start="`+strconv.FormatInt(running.StartedAt.UnixMilli(), 10)+`">\d+s</span>`, home)
	assert.Contains(t, home, `<span class="reason">citest</span>`)
	assert.Regexp(t, `<a href="/ci/workers/w1"><b>w1</b></a>`, u.do(t, req{path: "workers"}).body)
	assert.Equal(t, http.StatusNotFound, u.do(t, req{path: "workers/nobody"}).code)
}

func TestPages_GridForced(t *testing.T) {
	// Builds made for no change are in the grid too, as in Buildbot's
	// console: under the change of their revision, or in a row of their
	// own source.
	u := startUI(t, uiOptions{})
	ctx := context.Background()
	c := &ci.Change{Author: "dev", Branch: "main", Revision: "aaaa1111", Repository: "https://example.org/r", When: time.Now()}
	_, err := u.m.Master.AddChange(ctx, c)
	require.NoError(t, err)
	u.m.Build(t, citest.Request{Builder: "pass", SourceStamp: ci.SourceStamp{ID: c.SourceStampID}})
	u.m.Build(t, citest.Request{Builder: "fail", SourceStamp: ci.SourceStamp{Branch: "main", Revision: "aaaa1111"}})
	u.m.Build(t, citest.Request{Builder: "fail", SourceStamp: ci.SourceStamp{Branch: "feature/<x>"}, Reason: "forced by bob"})
	page := u.do(t, req{path: "grid"}).body
	rows := regexp.MustCompile(`(?s)<tr><th class="change.*?</tr>`).FindAllString(page, -1)
	require.Len(t, rows, 2, page)
	assert.Contains(t, rows[0], `<b class="branch">feature/&lt;x&gt;</b>`, "the newest row: a branch's forced build")
	assert.Contains(t, rows[0], "no change · forced by bob")
	assert.Contains(t, rows[0], `href="/ci/builders/fail/builds/2"`)
	assert.Contains(t, rows[1], `<b>main</b> <span class="rev">aaaa1111</span>`, "the change's row")
	assert.Contains(t, rows[1], `href="/ci/builders/pass/builds/1"`)
	assert.Contains(t, rows[1], `href="/ci/builders/fail/builds/1"`, "a forced build of the change's revision")
	assert.Contains(t, page, "builds made for no change")
}

// TestPages_ControlCharacters: control characters from outside (escape,
// bell, carriage return...) reach no page raw: they are shown as control
// pictures, in the change list, the grid, the workers and the build page.
func TestPages_ControlCharacters(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin})
	ctrl := "x\x1b]0;title\x07\rCR\x00NUL\x7fDEL\x1b[2Jclear"
	c := &ci.Change{Author: "Eve\x1b[31m <eve@example.org>", Branch: "main\x1b", Revision: "r1", Comments: ctrl + "\nsecond", Category: "new-tag"}
	_, err := u.m.Master.AddChange(context.Background(), c)
	require.NoError(t, err)
	u.m.Build(t, citest.Request{Builder: "pass", SourceStamp: ci.SourceStamp{ID: c.SourceStampID}, Properties: map[string]any{"note": ctrl}})
	for _, path := range []string{"", "changes", "grid", "workers", "builders/pass", "builders/pass/builds/1"} {
		body := u.do(t, req{path: path}).body
		for i := 0; i < len(body); i++ {
			if c := body[i]; c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
				t.Errorf("/%s holds the raw control character %q near %q", path, c, body[max(0, i-20):min(len(body), i+20)])
				break
			}
		}
	}
	build := u.do(t, req{path: "builders/pass/builds/1"}).body
	// html/template makes NUL U+FFFD already; the others are pictures.
	assert.Contains(t, build, `<td class="value">x␛]0;title␇␍CR�NUL␡DEL␛[2Jclear</td>`, "shown as pictures")
}
