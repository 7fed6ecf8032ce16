package citest_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// onTag submits a build of "pkg" for every change of category "new-tag".
type onTag struct{}

func (onTag) SchedulerName() string  { return "tags" }
func (onTag) BuilderNames() []string { return []string{"pkg"} }
func (onTag) OnChange(ctx context.Context, m *ci.Master, c *ci.Change) error {
	if c.Category != "new-tag" {
		return nil
	}
	_, _, err := m.Submit(ctx, ci.Submission{Builders: []string{"pkg"}, Reason: "tag", SourceStamps: []ci.SourceStamp{c.SourceStamp()}, Scheduler: "tags"})
	return err
}

func config() ci.MasterConfig {
	return ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{
			Name:    "pkg",
			Workers: []string{"w"},
			Steps: []ci.Step{
				&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "build"}, Command: []any{"sh", "-c", `echo "building $1"; echo warning >&2`, "sh", ci.Interpolate("%(src::branch)s")}},
			},
		}},
		Schedulers: []ci.Scheduler{onTag{}},
	}
}

func TestStart(t *testing.T) {
	m := citest.Start(t, config())
	require.NotNil(t, m.Store)
	assert.DirExists(t, m.Dir)
	assert.FileExists(t, m.Config().DatabasePath())

	t.Run("AddChange", func(t *testing.T) {
		assert.Empty(t, m.AddChange(t, ci.Change{Category: "push", Branch: "main"}))
		sets := m.AddChange(t, ci.Change{Category: "new-tag", Branch: "0.9.1", Revision: "0.9.1"})
		require.Len(t, sets, 1)
		builds := m.WaitBuildset(t, sets[0])
		require.Len(t, builds, 1)
		b := builds[0]
		assert.Equal(t, ci.Success, b.Results())
		// Standard output and error come through different pipes: their
		// relative order is not fixed, each one's is.
		assert.ElementsMatch(t, []string{"building 0.9.1", "warning"}, strings.Split(strings.TrimSuffix(b.Log("build", "stdio"), "\n"), "\n"))
		assert.Equal(t, "building 0.9.1\n", citest.Output(b.LogLines("build", "stdio"), "o"))
		assert.Equal(t, "warning\n", citest.Output(b.LogLines("build", "stdio"), "e"))
		assert.Contains(t, b.LogLines("build", "stdio"), "obuilding 0.9.1\n")
		assert.Contains(t, b.LogLines("build", "stdio"), "ewarning\n")
		assert.Contains(t, b.Header("build", "stdio"), "argv:")
		assert.Equal(t, "pkg", b.Property("buildername"))
		assert.Equal(t, map[string]ci.Result{"build": ci.Success}, b.StepResults())
	})
	t.Run("Build", func(t *testing.T) {
		b := m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "main"}})
		assert.Equal(t, "building main\n", citest.Output(b.LogLines("build", "stdio"), "o"))
		again := m.WaitBuild(t, b.Record.ID)
		assert.Equal(t, b.Record.ID, again.Record.ID)
	})
}

// loggedTB keeps what is written to the test log.
type loggedTB struct {
	testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *loggedTB) Log(args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range args {
		l.lines = append(l.lines, a.(string))
	}
}

func (l *loggedTB) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// TestStart_LogLevel: the master's log goes to the test log from Warn by
// default, from the level asked for otherwise, Info included.
func TestStart_LogLevel(t *testing.T) {
	for name, tc := range map[string]struct {
		level    slog.Leveler
		wantInfo bool
	}{
		"Default": {nil, false},
		"Info":    {slog.LevelInfo, true},
		"LevelVar": {func() slog.Leveler {
			var v slog.LevelVar
			v.Set(slog.LevelInfo)
			return &v
		}(), true},
		"Error": {slog.LevelError, false},
	} {
		t.Run(name, func(t *testing.T) {
			tb := &loggedTB{TB: t}
			m := citest.Start(tb, config(), citest.Options{LogLevel: tc.level})
			b := m.Build(tb, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "main"}})
			require.Equal(t, ci.Success, b.Results())
			if tc.wantInfo {
				assert.Contains(t, tb.text(), "level=INFO msg=\"build started\" builder=pkg")
			} else {
				assert.NotContains(t, tb.text(), "level=INFO")
			}
		})
	}
}

func TestOutput(t *testing.T) {
	stored := "hheader\nostdout\neerr\nomore\n"
	assert.Equal(t, "stdout\nmore\n", citest.Output(stored, "o"))
	assert.Equal(t, "stdout\nerr\nmore\n", citest.Output(stored, "oe"))
	assert.Equal(t, "header\n", citest.Output(stored, "h"))
}

// In a test of your own master's configuration.
func ExampleStart() {
	// func TestPackages(t *testing.T) {
	var t *testing.T // the test's *testing.T
	m := citest.Start(t, config())
	b := m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "0.9.1"}})
	if b.Results() != ci.Success {
		t.Fatalf("build failed:\n%s", b.LogLines("build", "stdio"))
	}
	if got := citest.Output(b.LogLines("build", "stdio"), "o"); got != "building 0.9.1\n" {
		t.Errorf("output = %q", got)
	}
	// }
}
