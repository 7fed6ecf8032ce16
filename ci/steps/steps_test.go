package steps_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// start starts a master with one builder "b" made of the steps, on an
// in-process worker "w".
func start(t *testing.T, ss ...ci.Step) *citest.Master {
	t.Helper()
	return citest.Start(t, ci.MasterConfig{
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: ss, Properties: map[string]any{"arch": "amd64"}}},
	})
}

// workdir is the default working folder of builder "b" on worker "w".
func workdir(m *citest.Master) string { return filepath.Join(m.Dir, "workers", "w", "b", "build") }

func opts(name string) ci.StepOptions { return ci.StepOptions{Name: name} }

func TestShellCommand(t *testing.T) {
	t.Run("ArgvAndInterpolate", func(t *testing.T) {
		m := start(t, &steps.ShellCommand{StepOptions: opts("s"), Command: []any{"printf", "%s|%s\n", ci.Interpolate("%(prop:arch)s"), ci.Prop("tag")}})
		b := m.Build(t, citest.Request{Builder: "b", Properties: map[string]any{"tag": "$(touch pwned); `id`"}})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, "amd64|$(touch pwned); `id`\n", b.Log("s", "stdio"))
		assert.Equal(t, "'printf %s|%s  amd64 $(touch pwned); `id`'", b.Step("s").StateString)
	})
	t.Run("ShellStringQuotesValues", func(t *testing.T) {
		m := start(t, &steps.ShellCommand{StepOptions: opts("s"), Command: ci.Interpolate("echo tag=%(prop:tag)s arch=%(prop:arch)s; echo second")})
		hostile := "x; touch pwned; echo $(id) `id` 'q'"
		b := m.Build(t, citest.Request{Builder: "b", Properties: map[string]any{"tag": hostile}})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, "tag="+hostile+" arch=amd64\nsecond\n", b.Log("s", "stdio"))
		assert.NoFileExists(t, filepath.Join(workdir(m), "pwned"))
	})
	t.Run("WorkdirAndEnv", func(t *testing.T) {
		t.Setenv("KILN_TEST_REMOVED", "present")
		t.Setenv("KILN_TEST_BASE", "base")
		m := start(t, &steps.ShellCommand{
			StepOptions: opts("s"),
			Command:     []string{"sh", "-c", `echo "$PWD"; echo "$FOO|$LIST|${KILN_TEST_REMOVED-unset}|$EXPANDED"`},
			Workdir:     ci.Interpolate("sub/%(prop:arch)s"),
			Env: map[string]any{
				"FOO":               ci.Interpolate("foo-%(prop:arch)s"),
				"LIST":              []any{"/a", "/b"},
				"KILN_TEST_REMOVED": nil,
				"EXPANDED":          "${KILN_TEST_BASE}/bin",
			},
		})
		b := m.Build(t, citest.Request{Builder: "b"})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("s", "stdio"))
		want := filepath.Join(m.Dir, "workers", "w", "b", "sub", "amd64") + "\nfoo-amd64|/a:/b|unset|base/bin\n"
		assert.Equal(t, want, b.Log("s", "stdio"))
	})
	t.Run("TimeoutWithoutOutput", func(t *testing.T) {
		m := start(t, &steps.ShellCommand{StepOptions: opts("s"), Command: []string{"sleep", "30"}, Timeout: 300 * time.Millisecond})
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Failure, b.Results())
		assert.Contains(t, b.Header("s", "stdio"), "command timed out: 0.3 seconds without output")
	})
	t.Run("MaxTime", func(t *testing.T) {
		m := start(t, &steps.ShellCommand{StepOptions: opts("s"), Command: []string{"sh", "-c", "while true; do echo tick; sleep 0.05; done"}, MaxTime: 400 * time.Millisecond})
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Failure, b.Results())
		assert.Contains(t, b.Header("s", "stdio"), "command timed out: 0.4 seconds elapsed")
		assert.Contains(t, b.Log("s", "stdio"), "tick\n")
	})
	t.Run("LogFilesAndStdin", func(t *testing.T) {
		m := start(t, &steps.ShellCommand{
			StepOptions:  opts("s"),
			Command:      []string{"sh", "-c", "cat > input.txt; echo one > build.log; echo two >> build.log; sleep 0.3; cat input.txt"},
			LogFiles:     map[string]string{"buildlog": "build.log"},
			InitialStdin: "from stdin\n",
		})
		b := m.Build(t, citest.Request{Builder: "b"})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, "from stdin\n", b.Log("s", "stdio"))
		assert.Equal(t, "one\ntwo\n", b.Log("s", "buildlog"))
	})
	t.Run("DecodeRC", func(t *testing.T) {
		m := start(t,
			&steps.ShellCommand{StepOptions: opts("warn"), Command: []string{"sh", "-c", "exit 1"}, DecodeRC: map[int]ci.Result{0: ci.Success, 1: ci.Warnings}},
			&steps.ShellCommand{StepOptions: opts("unknown"), Command: []string{"sh", "-c", "exit 2"}, DecodeRC: map[int]ci.Result{0: ci.Success, 1: ci.Warnings}},
			&steps.ShellCommand{StepOptions: opts("skip"), Command: []string{"sh", "-c", "exit 0"}, DecodeRC: map[int]ci.Result{0: ci.Skipped}},
		)
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, map[string]ci.Result{"warn": ci.Warnings, "unknown": ci.Failure, "skip": ci.Skipped}, b.StepResults())
		assert.Equal(t, ci.Failure, b.Results())
	})
	t.Run("Validate", func(t *testing.T) {
		cfg := ci.MasterConfig{
			Workers: []ci.WorkerConfig{{Name: "w"}},
			Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{
				&steps.ShellCommand{},
				&steps.ShellCommand{StepOptions: opts("empty"), Command: []string{}},
				&steps.ShellCommand{StepOptions: opts("bad"), Command: []any{"echo", ci.Interpolate("%(prop:x")}},
				&steps.ShellCommand{StepOptions: opts("rc"), Command: "true", DecodeRC: map[int]ci.Result{0: 42}},
				&steps.SetPropertyFromCommand{StepOptions: opts("setprop"), Command: "true"},
				&steps.Git{StepOptions: opts("git"), Mode: "weird"},
				&steps.FileUpload{StepOptions: opts("upload")},
				&steps.DirectoryUpload{StepOptions: opts("dirupload"), WorkerSrc: "a", MasterDest: "b", Compress: "xz"},
				&steps.MakeDirectory{StepOptions: opts("mkdir")},
			}}},
		}
		_, err := ci.NewMaster(cfg)
		require.Error(t, err)
		msg := err.Error()
		for _, want := range []string{
			`Steps[0] (shell): Command is not set`,
			`Steps[1] (empty): Command is empty`,
			`Steps[2] (bad): Command: [1]: interpolate "%(prop:x": unclosed`,
			`Steps[3] (rc): DecodeRC[0]: 42 is not a result`,
			`Steps[4] (setprop): exactly one of Property and Extract must be set`,
			`Steps[5] (git): RepoURL is not set`,
			`Steps[5] (git): Mode "weird" is not incremental or full`,
			`Steps[6] (upload): WorkerSrc is not set`,
			`Steps[6] (upload): MasterDest is not set`,
			`Steps[7] (dirupload): Compress "xz" is not`,
			`Steps[8] (mkdir): Dir is not set`,
		} {
			assert.Contains(t, msg, want)
		}
	})
}

func TestSetPropertyFromCommand(t *testing.T) {
	m := start(t,
		&steps.SetPropertyFromCommand{StepOptions: opts("version"), Command: []string{"echo", "  1.2.3  "}, Property: "version"},
		&steps.SetPropertyFromCommand{StepOptions: opts("extract"), Command: []string{"sh", "-c", "echo a=1; echo b=2 >&2; exit 3"},
			Extract: func(rc int, stdout, stderr string) map[string]any {
				return map[string]any{"rc": rc, "out": strings.TrimSpace(stdout), "err": strings.TrimSpace(stderr)}
			}},
		&steps.ShellCommand{StepOptions: opts("use"), Command: []any{"echo", ci.Interpolate("v%(prop:version)s rc=%(prop:rc)s out=%(prop:out)s")}},
	)
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Failure, b.Step("extract").Results)
	assert.Equal(t, "v1.2.3 rc=3 out=a=1\n", b.Log("use", "stdio"))
	assert.Equal(t, "1.2.3", b.Property("version"))
	assert.Equal(t, "version Step", b.Record.Properties["version"].Source)
	assert.Equal(t, "b=2", b.Property("err"))
	assert.Equal(t, "version: 1.2.3\n", b.Log("version", "property changes"))
}

func TestShellCommand_SigtermTime(t *testing.T) {
	m := start(t, &steps.ShellCommand{
		StepOptions: opts("s"),
		// The shell answers SIGTERM by saying so and exiting.
		Command:     []string{"sh", "-c", `trap 'echo got TERM; exit 7' TERM; echo started; while true; do sleep 0.05; done`},
		MaxTime:     500 * time.Millisecond,
		SigtermTime: 5 * time.Second,
	})
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Failure, b.Results())
	assert.Equal(t, "started\ngot TERM\n", citest.Output(b.LogLines("s", "stdio"), "o"))
	assert.Contains(t, b.Header("s", "stdio"), "command timed out: 0.5 seconds elapsed")
}

// TestShellCommand_Environ: a command's log header shows no environment
// unless the step asks, and even then no secret's value.
func TestShellCommand_Environ(t *testing.T) {
	env := map[string]any{"API_TOKEN": "t0ps3cret-value", "STAGE": "test"}
	m := start(t,
		&steps.ShellCommand{StepOptions: opts("quiet"), Command: []string{"true"}, Env: env},
		&steps.ShellCommand{StepOptions: opts("verbose"), Command: []string{"true"}, Env: env, LogEnviron: true},
	)
	b := m.Build(t, citest.Request{Builder: "b"})
	require.Equal(t, ci.Success, b.Results())
	quiet := b.Header("quiet", "stdio")
	assert.NotContains(t, quiet, "environment:")
	assert.NotContains(t, quiet, "STAGE")
	verbose := b.Header("verbose", "stdio")
	assert.Contains(t, verbose, " environment:\n")
	assert.Contains(t, verbose, "  STAGE=test\n")
	assert.Contains(t, verbose, "  API_TOKEN=***\n")
	assert.NotContains(t, verbose, "t0ps3cret-value")
}
