//go:build linux

package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/testenv"
)

// bins holds the benchmaster and kiln-worker binaries built for the tests.
var bins string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() { // the tests that need the binaries skip
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "workerbench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/kilnci/kiln/internal/cmd/benchmaster", "github.com/kilnci/kiln/cmd/kiln-worker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	bins = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tiny are the sizes of the smoke tests: 2 workers, 5 builds, 1 MB of log.
var tiny = []string{
	"-latency-builds", "5", "-builds", "5", "-workers", "2", "-idle-workers", "2", "-log-bytes", "1000000",
	"-stock-latency-builds", "5", "-stock-builds", "5", "-stock-idle-workers", "2", "-outages", "500ms",
}

// TestRun runs the whole benchmark, with tiny sizes, on each kind of
// worker, and checks that the figures are there and make sense.
func TestRun(t *testing.T) {
	testenv.SkipIfShort(t, "runs the benchmark")
	for _, kind := range []string{kindKiln, kindBuildbot} {
		t.Run(kind, func(t *testing.T) {
			if kind == kindBuildbot {
				testenv.NeedTool(t, "buildbot-worker")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var out, progress bytes.Buffer
			args := append([]string{
				"-master", filepath.Join(bins, "benchmaster"), "-kiln-worker", filepath.Join(bins, "kiln-worker"),
				"-kinds", kind, "-dir", t.TempDir(),
			}, tiny...)
			if kind == kindKiln {
				// The step cats its output from a file.
				args = append(args, "-log-file")
			}
			results, err := run(ctx, args, &out, &progress)
			require.NoError(t, err, "progress:\n%s", progress.String())
			require.Len(t, results, 1)
			r := results[0]
			assert.Equal(t, kind, r.Kind)

			assert.Len(t, r.Latency, 5)
			assert.Positive(t, r.Median)
			assert.GreaterOrEqual(t, r.P90, r.Median)

			assert.Positive(t, r.BuildsPerSec)
			total := 0
			for _, n := range r.PerWorker {
				total += n
			}
			assert.Equal(t, 5, total, "builds per worker: %v", r.PerWorker)

			assert.Equal(t, 10102, r.LogMinLines) // 1,000,000 bytes in lines of 99
			assert.GreaterOrEqual(t, r.LogLines, r.LogMinLines)
			assert.Positive(t, r.LogMBps)
			assert.GreaterOrEqual(t, r.LogPeakRSS, r.LogRSSBefore)

			assert.Positive(t, r.IdleBase)
			assert.Positive(t, r.SpawnTime)
			assert.GreaterOrEqual(t, r.AttachTime, r.SpawnTime)
			assert.Positive(t, r.WorkerRSS)
			assert.GreaterOrEqual(t, r.WorkerRSSMax, r.WorkerRSS)
			require.Len(t, r.Reattach, 1, "the workers came back after the master's restart")
			assert.Positive(t, r.Reattach[0])

			table := out.String()
			for _, want := range []string{kind, "one-step build (true), median", "stdout into the store", "master RSS per idle worker", "after outages of 500ms", "load average"} {
				assert.Contains(t, table, want)
			}
			if kind == kindKiln {
				assert.Contains(t, table, "stdout into the store, cat of a file")
			} else {
				assert.NotContains(t, table, "cat of a file")
			}
		})
	}
}

// TestBenchBuildbot runs a few builds on a stock Buildbot master with
// each kind of worker, and checks the figures and the table.
func TestBenchBuildbot(t *testing.T) {
	testenv.SkipIfShort(t, "runs the benchmark on Buildbot's master")
	buildbot := testenv.NeedTool(t, "buildbot")
	testenv.NeedTool(t, "buildbot-worker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	_, err := run(ctx, []string{"-buildbot", buildbot, "-kiln-worker", filepath.Join(bins, "kiln-worker"),
		"-buildbot-builds", "3", "-dir", t.TempDir()}, &out, &progress)
	require.NoError(t, err, "progress:\n%s", progress.String())
	table := out.String()
	for _, want := range []string{"stock Buildbot master", "kiln-worker", "buildbot-worker", "builds/s", "  builds, time", "worker RSS (VmRSS)"} {
		assert.Contains(t, table, want)
	}

	r, err := benchBuildbot(ctx, buildbot, kilnWorker(filepath.Join(bins, "kiln-worker")), t.TempDir(), 4, &progress)
	require.NoError(t, err, "progress:\n%s", progress.String())
	assert.Equal(t, kindKiln, r.Kind)
	assert.Equal(t, 4, r.Builds)
	assert.Equal(t, map[int]int{0: 4}, r.Results, "builds by result: all SUCCESS")
	assert.Positive(t, r.BuildsPerSec)
	assert.Positive(t, r.WorkerRSS)
	assert.GreaterOrEqual(t, r.WorkerPeak, r.WorkerRSS)
}

// TestRun_Usage: every problem of the command line is reported at once.
func TestRun_Usage(t *testing.T) {
	var out, progress bytes.Buffer
	_, err := run(context.Background(), []string{"-kinds", "kiln-worker,other", "-builds", "0", "-poll", "0s"}, &out, &progress)
	require.Error(t, err)
	for _, want := range []string{"-master is required", "-kiln-worker is required", `unknown kind of worker "other"`, "must be positive", "-poll"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Empty(t, out.String())
}

func TestStdoutLines(t *testing.T) {
	for _, c := range []struct {
		n     int64
		lines int
		size  int64
	}{
		{1, 1, 1},
		{99, 1, 99},
		{100, 2, 101},
		{198, 2, 199},
		{100_000_000, 1010102, 101010101},
	} {
		lines, size := stdoutLines(c.n)
		assert.Equal(t, c.lines, lines, "lines of %d bytes", c.n)
		assert.Equal(t, c.size, size, "size of %d bytes", c.n)
	}
	// What the step's command really writes.
	out, err := exec.Command("sh", "-c", logCommand(Sizes{LogBytes: 1000})).Output()
	require.NoError(t, err)
	folded, err := exec.Command("sh", "-c", "head -c 1000 /dev/zero | tr '\\0' a | fold -w 99").Output()
	require.NoError(t, err)
	assert.Equal(t, string(folded), string(out), "the log command writes what fold writes")
	lines, size := stdoutLines(1000)
	assert.Equal(t, int64(len(out)), size)
	assert.Equal(t, lines, strings.Count(string(out), "\n")+1)

	// The file of -log-file holds what the command writes, and the
	// Buildbot step's command cats it, whatever its name.
	dir := filepath.Join(t.TempDir(), "a b'c")
	require.NoError(t, os.Mkdir(dir, 0o755))
	for _, n := range []int64{1, 98, 99, 100, 198, 199, 1000, 123_457} {
		want, err := exec.Command("sh", "-c", logCommand(Sizes{LogBytes: n})).Output()
		require.NoError(t, err, "%d bytes", n)
		path := filepath.Join(dir, "out.txt")
		require.NoError(t, writeLogFile(path, n))
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), "%d bytes: the file differs from the command's output", n)
		catted, err := exec.Command("sh", "-c", logCommand(Sizes{LogBytes: n, LogFile: path})).Output()
		require.NoError(t, err, "%d bytes", n)
		assert.True(t, bytes.Equal(want, catted), "%d bytes: cat of the file", n)
	}
}

// TestVersus runs the -versus mode with a tiny workload on a Kiln master
// and on a stock Buildbot master, and checks its table: every row has a
// positive figure of each system, in the same unit, and their ratio.
func TestVersus(t *testing.T) {
	testenv.SkipIfShort(t, "runs a Kiln master and a stock Buildbot master")
	buildbot := testenv.NeedTool(t, "buildbot")
	testenv.NeedTool(t, "buildbot-worker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	_, err := run(ctx, []string{
		"-versus", buildbot, "-master", filepath.Join(bins, "benchmaster"), "-kiln-worker", filepath.Join(bins, "kiln-worker"),
		"-dir", t.TempDir(), "-log-bytes", "1000000", "-log-file", "-workers", "2",
		"-latency-builds", "4", "-ten-builds", "2", "-builds", "6", "-idle-workers", "3",
		"-stock-latency-builds", "2", "-stock-ten-builds", "1", "-stock-builds", "4", "-stock-idle-workers", "3",
	}, &out, &progress)
	require.NoError(t, err, "progress:\n%s", progress.String())
	table := out.String()
	t.Logf("table:\n%s", table)

	assert.Regexp(t, `^Kiln \(kiln-worker\) and Buildbot 3\.\S+ \(buildbot-worker, msgpack_experimental_v7\) .* load average [\d.]+ [\d.]+ [\d.]+ before, [\d.]+ [\d.]+ [\d.]+ after\n`, table)
	rows := versusRows(t, table)
	var names []string
	for _, r := range rows {
		names = append(names, r[0])
	}
	assert.Equal(t, []string{
		"cold start to accepting workers",
		"master RSS idle, no worker attached",
		"master RSS per idle attached worker (3)",
		"one-step build (true), median of builds one at a time (4; Buildbot: 2)",
		"ten-step build, median of builds one at a time (2; Buildbot: 1)",
		"one-step builds over 2 workers (6; Buildbot: 4)",
		"master CPU per build, in the builds over workers",
		"1.00 MB of stdout (lines of 99 bytes, 1.01 MB with newlines, cat of a file) into the store",
		"master peak RSS (VmHWM) during the stdout build",
	}, names)
	for _, r := range rows {
		kiln, kunit := figureOf(t, r[1])
		bb, bunit := figureOf(t, r[2])
		ratio, runit := figureOf(t, r[3])
		assert.Positive(t, kiln, "%s: Kiln", r[0])
		assert.Positive(t, bb, "%s: Buildbot", r[0])
		assert.Equal(t, kunit, bunit, "%s: units", r[0])
		assert.Equal(t, "×", runit, "%s: ratio", r[0])
		// The ratio of the rounded figures is the ratio printed, give or
		// take their rounding.
		if kiln > 0 && ratio > 0 {
			assert.InEpsilon(t, bb/kiln, ratio, 0.1, "%s: ratio %s of %s and %s", r[0], r[3], r[2], r[1])
		}
	}
	for _, want := range []string{"PBChangeSource", "state.sqlite", "JSON API", "twistd"} {
		assert.Contains(t, table, want)
	}
}

// versusRows returns the cells of the Markdown table's rows, the header
// and separator left out.
func versusRows(t *testing.T, table string) [][]string {
	var rows [][]string
	header := true
	for line := range strings.Lines(table) {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.TrimSpace(line), "|")
		require.Len(t, cells, 6, "row %q", line)
		cells = cells[1:5]
		for i, c := range cells {
			cells[i] = strings.TrimSpace(c)
		}
		if header {
			header = !strings.HasPrefix(cells[0], "---")
			continue
		}
		rows = append(rows, cells)
	}
	return rows
}

// figureOf parses a cell of the table: a number and its unit.
func figureOf(t *testing.T, cell string) (float64, string) {
	i := strings.IndexFunc(cell, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(cell)
	}
	v, err := strconv.ParseFloat(cell[:i], 64)
	require.NoError(t, err, "cell %q", cell)
	return v, strings.TrimSpace(cell[i:])
}
