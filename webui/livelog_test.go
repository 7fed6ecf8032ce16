package webui_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// A long build log followed live in Chromium: a build writes an
// sbuild-like log in bursts, as fast as a build's output comes, while the
// build page (or the log's own page) is open with the log; the test records
// how far behind the page is, and checks that it ends up showing exactly
// the stored lines.
//
// TestBrowser_LiveLog runs it with 20,000 lines in the normal suite, on
// both pages, cutting the connections halfway on the build page;
// BenchmarkBrowser_LiveLog with 100,000:
//
//	go test ./webui/ -run '^$' -bench Browser_LiveLog -benchtime 1x -v
//
// Both log their figures; neither asserts a duration.

// runHelper runs the helper program name (see TestMain) and returns its
// exit code.
func runHelper(name string, args []string) int {
	switch name {
	case "sbuildlog": // sbuildlog LINES START RELEASE
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return 2
		}
		if err := writeSbuildLog(n, args[1], args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "no helper %q\n", name)
	return 99
}

// waitFile waits until a file exists.
func waitFile(path string) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear", path)
}

// writeSbuildLog writes n lines like an sbuild log's on standard output,
// once the file start exists, then waits for the file release to exist, so
// that the log stays open while the test looks at the page. The lines come
// in bursts of 1 to 3,000 lines, each written as fast as the pipe takes it
// (through a 4 KiB buffer, as C's stdio writes into a pipe), with pauses of
// up to 200 ms between them: apt unpacking packages, a compiler's lines,
// a test suite.
func writeSbuildLog(n int, start, release string) error {
	if err := waitFile(start); err != nil {
		return err
	}
	w := bufio.NewWriterSize(os.Stdout, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; {
		burst := 1 + r.IntN(3000)
		for ; burst > 0 && i < n; burst-- {
			raw, _ := sbuildLine(i)
			w.WriteString(raw)
			w.WriteByte('\n')
			i++
		}
		if err := w.Flush(); err != nil {
			return err
		}
		time.Sleep(time.Duration(r.IntN(200)) * time.Millisecond)
	}
	return waitFile(release)
}

var sbuildPackages = []string{"libc6-dev", "libstdc++-12-dev", "python3-minimal", "libgtk-3-0", "gcc-12",
	"debhelper", "libglib2.0-dev", "dh-python", "libssl-dev", "zlib1g-dev", "perl-modules-5.36", "libxml2"}

// ansiCSI matches the escape sequences a page does not show as text.
var ansiCSI = regexp.MustCompile("\x1b\\[[0-9;:?]*[A-Za-z]")

// sbuildLine returns line i of the generated log as written (raw) and as a
// page shows it (text). Lines of more than a few characters end with
// " #i", so that the page's last line says how far it is. They mix short
// lines, ~120-character compiler lines, long lines that wrap, empty
// lines, gcc's colours and characters HTML must escape.
func sbuildLine(i int) (raw, text string) {
	h := uint64(i)*0x9e3779b97f4a7c15 + 7
	h ^= h >> 31
	pkg := sbuildPackages[h%uint64(len(sbuildPackages))]
	tag := " #" + strconv.Itoa(i)
	switch h % 20 {
	case 0, 1, 2, 3, 4, 5:
		raw = "Unpacking " + pkg + ":amd64 (1.2." + strconv.Itoa(int(h%97)) + "-1) ..." + tag
	case 6, 7:
		raw = "Setting up " + pkg + " (3.11.2-1+b1) ..." + tag
	case 8, 9, 10, 11, 12, 13:
		raw = fmt.Sprintf("x86_64-linux-gnu-gcc -DHAVE_CONFIG_H -I. -I.. -Wdate-time -D_FORTIFY_SOURCE=2 -g -O2 "+
			"-fstack-protector-strong -Wall -c -o src/mod%d.o src/mod%d.c%s", h%500, h%500, tag)
	case 14:
		raw = fmt.Sprintf("\x1b[01m\x1b[Ksrc/mod%d.c:%d:5:\x1b[m\x1b[K \x1b[01;35m\x1b[Kwarning: \x1b[m\x1b[K"+
			"unused variable ‘tmp’ [\x1b[01;35m\x1b[K-Wunused-variable\x1b[m\x1b[K]%s", h%500, h%900, tag)
	case 15:
		raw = "checking for <sys/types.h>... yes && \"<b>not bold</b>\" &amp;" + tag
	case 16:
		raw = "" // an empty line
	case 17:
		raw = "PASS: test_" + strconv.Itoa(int(h%1000)) + tag
	case 18:
		raw = "dpkg-shlibdeps: warning: " + strings.Repeat("debian/"+pkg+"/usr/lib/x86_64-linux-gnu/lib.so.1 ", 6) + tag
	default:
		raw = "<script>alert(1)</script>" + tag
	}
	return raw, ansiCSI.ReplaceAllString(raw, "")
}

// A liveSample is what the page showed at one moment.
type liveSample struct {
	at     time.Duration // since the first line was written
	rtt    time.Duration // of the evaluation that read the page
	stored int           // lines stored before the page was read
	shown  int           // lines up to the page's last line (its index + 1); -1 if unknown
}

// liveFigures are the figures of one run.
type liveFigures struct {
	lines, stored int
	firstStored   time.Duration // the first line stored, since it was written
	lastStored    time.Duration // the last line stored
	lastShown     time.Duration // the last line shown in the page
	maxBehind     int           // lines
	// How long lines waited between being stored and being shown (as
	// sampled: every 50 ms, or as often as the page answers).
	waitP50, waitP95, waitMax time.Duration
	maxRTT, p95RTT            time.Duration
	samples                   []liveSample
	metrics                   map[string]float64 // the page's Performance metrics, over the run (durations in seconds)
	browserCPU                time.Duration      // CPU time of the browser's processes over the run
	cutAt                     time.Duration      // when the browser's connections were cut, if they were
}

// The page's Performance metrics the figures show.
var perfMetrics = []string{"JSHeapUsedSize", "Elements", "Nodes", "LayoutCount", "RecalcStyleCount", "LayoutDuration",
	"RecalcStyleDuration", "ScriptDuration", "TaskDuration"}

// cumulative metrics are shown as their growth over the run.
var cumulativeMetrics = map[string]bool{"LayoutCount": true, "RecalcStyleCount": true, "LayoutDuration": true,
	"RecalcStyleDuration": true, "ScriptDuration": true, "TaskDuration": true}

// pageMetrics returns the page's Performance metrics, after a garbage
// collection, and the number of elements in the page as "Elements".
func pageMetrics(ctx context.Context) (map[string]float64, error) {
	return chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (map[string]float64, error) {
		if _, err := cdp.Call(ctx, t, performance.Enable, performance.EnableParams{}); err != nil {
			return nil, err
		}
		if _, err := cdp.Call(ctx, t, heapprofiler.CollectGarbage, cdp.Empty{}); err != nil {
			return nil, err
		}
		elements, err := chromedp.Evaluate[float64](`document.getElementsByTagName("*").length`)(ctx, t)
		if err != nil {
			return nil, err
		}
		res, err := cdp.Call(ctx, t, performance.GetMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		m := map[string]float64{}
		for _, x := range res.Metrics {
			m[x.Name] = x.Value
		}
		m["Elements"] = elements
		return m, nil
	})
}

// lastShownJS finds the page's last log line that ends with its number
// (" #N"), looking back over a few lines, and returns that number and how
// many lines come after it, or [-1, 0].
const lastShownJS = `(function () {
	var pre = document.querySelector("pre.log-lines");
	if (!pre) return [-1, 0];
	var lines = pre.getElementsByClassName("ln");
	for (var i = lines.length - 1; i >= 0 && i >= lines.length - 20; i--) {
		var m = / #(\d+)$/.exec(lines[i].textContent);
		if (m) return [+m[1], lines.length - 1 - i];
	}
	return [-1, 0];
})()`

// pageLinesJS returns what the page shows of the log: the text of each
// line of its folded header and of its output block, the text of the
// whole output block, how many earlier output lines it leaves out (none if
// it says nothing), and any element in the blocks that is not a span (of
// a chunk, a line or a colour).
const pageLinesJS = `(function () {
	var pre = document.querySelector("pre.log-lines"), head = document.querySelector("pre.log-head");
	var text = function (el) { return el.textContent; };
	var lines = Array.prototype.map.call(pre.getElementsByClassName("ln"), text);
	var headLines = head ? Array.prototype.map.call(head.getElementsByClassName("ln"), text) : [];
	var strays = Array.prototype.filter.call(pre.querySelectorAll("*"), function (el) {
		return el.tagName !== "SPAN"; }).map(function (el) { return el.tagName; });
	if (head) strays = strays.concat(Array.prototype.filter.call(head.querySelectorAll("*"), function (el) {
		return el.tagName !== "SPAN"; }).map(function (el) { return el.tagName; }));
	var note = document.querySelector(".log-earlier");
	return {head: headLines, lines: lines, text: pre.textContent, earlier: note ? +note.dataset.lines : 0, strays: strays};
})()`

// lastInViewJS says whether the log's last line is in view: in its block,
// or in the window when the page scrolls rather than the block.
const lastInViewJS = `(function () {
	var pre = document.querySelector("pre.log-lines");
	var lines = pre.getElementsByClassName("ln");
	var r = lines[lines.length - 1].getBoundingClientRect(), p = pre.getBoundingClientRect();
	var full = getComputedStyle(pre).maxHeight === "none";
	return r.top >= (full ? 0 : p.top) - 1 && r.bottom <= (full ? window.innerHeight : p.bottom) + 1;
})()`

type pageLines struct {
	Head    []string `json:"head"`
	Lines   []string `json:"lines"`
	Text    string   `json:"text"`
	Earlier int      `json:"earlier"`
	Strays  []string `json:"strays"`
}

// A longLog says what followLongLog does.
type longLog struct {
	lines int
	// logPage follows the log on its own page rather than on the build's.
	logPage bool
	// cut cuts the browser's connections once the page shows half the
	// lines: its event streams reconnect, and go on where they were.
	cut bool
}

// followLongLog runs a build that writes o.lines lines and follows its log
// in the browser, and returns the figures. It fails the test unless the
// page ends up showing exactly the stored lines.
func followLongLog(tb testing.TB, o longLog) liveFigures {
	lines := o.lines
	exe, err := os.Executable()
	require.NoError(tb, err)
	dir := tb.TempDir()
	start, release := filepath.Join(dir, "start"), filepath.Join(dir, "release")
	u := startUI(tb, uiOptions{changeCfg: func(cfg *ci.MasterConfig) {
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: "sbuild", Workers: []string{"w2"}, Steps: []ci.Step{
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "sbuild"},
				Command: []string{exe, "--", "sbuildlog", strconv.Itoa(lines), start, release},
				Env:     map[string]any{"KILN_HELPER": "1"}},
		}})
	}})
	bsid := u.m.Submit(tb, citest.Request{Builder: "sbuild"})
	build := waitRunning(tb, u, bsid)
	l := waitLog(tb, u, build.ID, "sbuild")
	ctx := context.Background()

	// The page is open, with the log, before the first line is written.
	page := u.url + "builders/sbuild/builds/1"
	if o.logPage {
		steps, err := u.m.Store.ListSteps(ctx, build.ID)
		require.NoError(tb, err)
		page += "/steps/" + strconv.Itoa(steps[0].Number) + "/logs/" + l.Slug
	}
	tab := newTabFor(tb, 15*time.Minute)
	require.NoError(tb, chromedp.Do(tab, chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS("pre.log-lines"))))
	visible, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.visibilityState`))
	require.NoError(tb, err)
	require.Equal(tb, "visible", visible)
	m0, err := pageMetrics(tab)
	require.NoError(tb, err)
	cpu0 := browserCPU()

	// When each line was stored, from the master's events.
	type stored struct {
		at   time.Time
		last int
	}
	var storedAt []stored
	sub := u.m.Subscribe(1 << 16)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			var e ci.Event
			select {
			case e = <-sub.C:
			case <-stop:
				select {
				case e = <-sub.C:
				default:
					return
				}
			}
			if e.Type == ci.EventLogLines && e.LogID == l.ID {
				storedAt = append(storedAt, stored{time.Now(), e.LastLine})
			}
		}
	}()
	stopEvents := func() {
		close(stop)
		<-stopped
		sub.Close()
		require.Zero(tb, sub.Dropped(), "the test saw every event")
	}

	t0 := time.Now()
	require.NoError(tb, os.WriteFile(start, nil, 0o644))
	var f liveFigures
	f.lines = lines
	// The index of the generated line 0 among the stored lines: the
	// command's header comes first.
	offset := -1
	lastSeq := lines - 1
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		before := time.Now()
		ectx, cancel := context.WithTimeout(tab, time.Minute)
		last, err := chromedp.Run(ectx, chromedp.Evaluate[[2]int](lastShownJS))
		cancel()
		require.NoError(tb, err, "the page answers")
		now := time.Now()
		got, err := u.m.Store.GetLog(ctx, l.ID)
		require.NoError(tb, err)
		if offset < 0 && got.NumLines > 0 {
			offset = firstGenerated(tb, u, l)
		}
		s := liveSample{at: now.Sub(t0), rtt: now.Sub(before), stored: got.NumLines, shown: -1}
		if last[0] >= 0 && offset >= 0 {
			s.shown = last[0] + last[1] + offset + 1
		}
		f.samples = append(f.samples, s)
		if len(f.samples)%100 == 0 {
			tb.Logf("%.1fs: %d lines stored, the page shows %d", s.at.Seconds(), s.stored, s.shown)
		}
		if o.cut && f.cutAt == 0 && s.shown > lines/2 {
			u.srv.CloseClientConnections()
			f.cutAt = s.at
		}
		if offset >= 0 && s.shown >= lastSeq+offset+1 {
			f.lastShown = s.at
			break
		}
		require.Less(tb, now.Sub(t0), 10*time.Minute, "the page shows the last line (it shows %d lines of %d)", s.shown, lastSeq+offset+1)
		<-tick.C
	}
	stopEvents()
	cpu1 := browserCPU()
	m1, err := pageMetrics(tab)
	require.NoError(tb, err)

	// The figures.
	last := lastSeq + offset
	if len(storedAt) > 0 {
		f.firstStored = storedAt[0].at.Sub(t0)
	}
	for _, s := range storedAt {
		if s.last >= last {
			f.lastStored = s.at.Sub(t0)
			break
		}
	}
	// when returns when line i was stored.
	when := func(i int) time.Duration {
		k, _ := slices.BinarySearchFunc(storedAt, i, func(s stored, i int) int { return s.last - i })
		if k == len(storedAt) {
			return -1
		}
		return storedAt[k].at.Sub(t0)
	}
	// How long each line waited between being stored and being shown:
	// the lines a sample shows first waited since they were stored.
	var rtts, waits []time.Duration
	prev := offset
	for _, s := range f.samples {
		rtts = append(rtts, s.rtt)
		if s.shown < 0 {
			continue
		}
		f.maxBehind = max(f.maxBehind, s.stored-s.shown)
		for j := max(prev, offset); j < s.shown && j <= last; j++ {
			if w := when(j); w >= 0 {
				waits = append(waits, max(0, s.at-w))
			}
		}
		prev = max(prev, s.shown)
	}
	slices.Sort(waits)
	if len(waits) > 0 {
		f.waitP50, f.waitP95, f.waitMax = waits[len(waits)/2], waits[len(waits)*95/100], waits[len(waits)-1]
	}
	slices.Sort(rtts)
	f.maxRTT, f.p95RTT = rtts[len(rtts)-1], rtts[len(rtts)*95/100]
	f.metrics = map[string]float64{}
	for _, k := range perfMetrics {
		f.metrics[k] = m1[k]
		if cumulativeMetrics[k] {
			f.metrics[k] -= m0[k]
		}
	}
	if cpu0 >= 0 && cpu1 >= 0 {
		f.browserCPU = cpu1 - cpu0
	}
	logFigures(tb, f)

	// The page shows the stored lines, each once, in order, single-spaced,
	// and it followed them: the last one is in view.
	checkPage(tb, tab, u, l, "while the step runs")
	inView, err := chromedp.Run(tab, chromedp.Evaluate[bool](lastInViewJS))
	require.NoError(tb, err)
	assert.True(tb, inView, "the page scrolled to the last line")

	// Once the build ends, the page reloads and still does (on the log's
	// page, once the log is complete, the script stops following it).
	require.NoError(tb, os.WriteFile(release, nil, 0o644))
	b := u.m.WaitBuild(tb, build.ID)
	require.Equal(tb, ci.Success, b.Results())
	if o.logPage {
		poll(tb, tab, "the log's end", `document.querySelector("pre.log-lines").dataset.done === "true"`)
	} else {
		poll(tb, tab, "the build's result", `document.readyState === "complete" &&
			document.querySelector("#build-result").textContent === "success" && !document.querySelector("pre[data-stream]")`)
	}
	got, err := u.m.Store.GetLog(ctx, l.ID)
	require.NoError(tb, err)
	f.stored = got.NumLines
	checkPage(tb, tab, u, l, "once the build ended")
	return f
}

// firstGenerated returns the index of the first generated line among the
// stored lines of l.
func firstGenerated(tb testing.TB, u *ui, l *ci.Log) int {
	text, err := u.m.Store.LogLines(context.Background(), l.ID, 0, 50)
	require.NoError(tb, err)
	for i, line := range strings.Split(text, "\n") {
		if strings.HasSuffix(line, " #0") {
			return i
		}
	}
	return -1
}

// checkPage checks that the page shows the header lines that start l,
// folded, then the last stored lines of l, each once and in order, as
// text, that it says how many output lines it leaves out between them,
// and that nothing from the log became an element.
func checkPage(tb testing.TB, tab context.Context, u *ui, l *ci.Log, when string) {
	tb.Helper()
	page, err := chromedp.Run(tab, chromedp.Evaluate[pageLines](pageLinesJS))
	require.NoError(tb, err, "the page answers %s", when)
	got, err := u.m.Store.GetLog(context.Background(), l.ID)
	require.NoError(tb, err)
	text, err := u.m.Store.LogLines(context.Background(), l.ID, 0, -1)
	require.NoError(tb, err)
	stored := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	require.Len(tb, stored, got.NumLines)
	shown := func(s string) string { return ansiCSI.ReplaceAllString(s[1:], "") } // without the stream letter
	// The header: the command's lines before its output.
	head := 0
	for head < len(stored) && strings.HasPrefix(stored[head], "h") && stored[head] != "h" {
		head++
	}
	require.NotZero(tb, head, "the log starts with the command's header")
	require.Len(tb, page.Head, head, "the page folds the header %s", when)
	for i := range head {
		require.Equal(tb, shown(stored[i]), page.Head[i], "header line %d %s", i, when)
	}
	require.NotEmpty(tb, page.Lines, "the page shows lines %s", when)
	require.LessOrEqual(tb, len(page.Lines), len(stored)-head, "the page shows no more lines than stored %s", when)
	first := len(stored) - len(page.Lines)
	want := make([]string, 0, len(page.Lines))
	for _, s := range stored[first:] {
		want = append(want, shown(s))
	}
	for i := range want {
		if want[i] != page.Lines[i] {
			tb.Fatalf("%s, the page's line %d of %d is %q; stored line %d is %q", when, i, len(want), page.Lines[i], first+i, want[i])
		}
	}
	if text := strings.Join(want, "\n") + "\n"; page.Text != text {
		i := 0
		for i < len(text) && i < len(page.Text) && text[i] == page.Text[i] {
			i++
		}
		from := max(0, i-80)
		tb.Fatalf("%s, the page's log text is not the lines one after another, single-spaced: from byte %d, it has %q where the lines are %q",
			when, i, page.Text[from:min(len(page.Text), i+80)], text[from:min(len(text), i+80)])
	}
	assert.Equal(tb, first-head, page.Earlier, "the page says how many earlier lines it leaves out %s", when)
	assert.Empty(tb, page.Strays, "nothing from the log became an element %s", when)
}

func logFigures(tb testing.TB, f liveFigures) {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%d lines written; stored from %.2fs to %.2fs (%.0f lines/s)\n", f.lines, f.firstStored.Seconds(), f.lastStored.Seconds(),
		float64(f.lines)/(f.lastStored-f.firstStored).Seconds())
	fmt.Fprintf(&b, "last line shown %.2fs after it was stored\n", (f.lastShown - f.lastStored).Seconds())
	fmt.Fprintf(&b, "at most %d lines behind; lines shown after they were stored: median %.2fs, p95 %.2fs, max %.2fs\n",
		f.maxBehind, f.waitP50.Seconds(), f.waitP95.Seconds(), f.waitMax.Seconds())
	fmt.Fprintf(&b, "page answered in p95 %v, max %v (%d samples)\n", f.p95RTT.Round(time.Millisecond), f.maxRTT.Round(time.Millisecond), len(f.samples))
	fmt.Fprintf(&b, "page at the end: JS heap %.1f MB, %.0f elements, %.0f DOM nodes alive\n", f.metrics["JSHeapUsedSize"]/1e6,
		f.metrics["Elements"], f.metrics["Nodes"])
	fmt.Fprintf(&b, "page over the run: %.0f layouts (%.2fs), %.0f style recalcs (%.2fs), script %.2fs, tasks %.2fs\n",
		f.metrics["LayoutCount"], f.metrics["LayoutDuration"], f.metrics["RecalcStyleCount"], f.metrics["RecalcStyleDuration"],
		f.metrics["ScriptDuration"], f.metrics["TaskDuration"])
	if f.cutAt > 0 {
		fmt.Fprintf(&b, "connections cut at %.2fs\n", f.cutAt.Seconds())
	}
	if f.browserCPU > 0 {
		fmt.Fprintf(&b, "browser CPU over the run: %.2fs in %.2fs (%.0f%% of one core)\n", f.browserCPU.Seconds(), f.lastShown.Seconds(),
			100*f.browserCPU.Seconds()/f.lastShown.Seconds())
	}
	b.WriteString("    time   stored    shown   behind\n")
	next := time.Duration(0)
	for i, s := range f.samples {
		if s.at < next && i != len(f.samples)-1 {
			continue
		}
		next = s.at + time.Second
		fmt.Fprintf(&b, "%7.2fs %8d %8d %8d\n", s.at.Seconds(), s.stored, s.shown, s.stored-s.shown)
	}
	tb.Log("live log figures:\n" + b.String())
}

// browserCPU returns the CPU time the test browser's processes used so
// far, from /proc, or -1 where it cannot be read.
func browserCPU() time.Duration {
	p := chromedp.FromContext(browser.ctx).Browser.Process()
	if p == nil {
		return -1
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	type proc struct {
		ppid int
		cpu  time.Duration
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime stime: fields 4, 14 and 15;
		// comm may hold spaces and parentheses.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		st, _ := strconv.ParseInt(fields[12], 10, 64)
		procs[pid] = proc{ppid: ppid, cpu: time.Duration(ut+st) * time.Second / 100} // USER_HZ is 100 on Linux
	}
	in := func(pid int) bool {
		for i := 0; pid > 1 && i < 64; i++ {
			if pid == p.Pid {
				return true
			}
			pid = procs[pid].ppid
		}
		return false
	}
	var total time.Duration
	for pid, pr := range procs {
		if in(pid) {
			total += pr.cpu
		}
	}
	return total
}

func TestBrowser_LiveLog(t *testing.T) {
	t.Run("BuildPage", func(t *testing.T) {
		// With the connections cut halfway: the page goes on where it was.
		followLongLog(t, longLog{lines: 20_000, cut: true})
	})
	t.Run("LogPage", func(t *testing.T) {
		followLongLog(t, longLog{lines: 20_000, logPage: true})
	})
}

// BenchmarkBrowser_LiveLog follows a 100,000-line log on the build page and
// on the log's own page; run it once (-benchtime 1x).
func BenchmarkBrowser_LiveLog(b *testing.B) {
	for _, page := range []string{"BuildPage", "LogPage"} {
		b.Run(page, func(b *testing.B) {
			for b.Loop() {
				f := followLongLog(b, longLog{lines: 100_000, logPage: page == "LogPage"})
				b.ReportMetric((f.lastShown - f.lastStored).Seconds(), "s-last-line-lag")
				b.ReportMetric(float64(f.maxBehind), "max-lines-behind")
				b.ReportMetric(f.waitP95.Seconds(), "s-p95-wait")
				b.ReportMetric(f.waitMax.Seconds(), "s-max-wait")
				b.ReportMetric(f.metrics["JSHeapUsedSize"]/1e6, "MB-heap")
				b.ReportMetric(f.metrics["Elements"], "elements")
				b.ReportMetric(f.browserCPU.Seconds(), "s-browser-cpu")
			}
		})
	}
}
