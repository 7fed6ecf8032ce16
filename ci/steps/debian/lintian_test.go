package debian_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps/debian"
	"github.com/kilnci/kiln/internal/debtest"
	"github.com/kilnci/kiln/internal/testenv"
)

// built holds kiln-hello packages built once for the tests of this
// package, by variant.
var built struct {
	sync.Mutex
	dirs map[debtest.Source]string
}

// builtPackage builds a variant of kiln-hello once and copies what was
// built into dir, returning the .changes's name.
func builtPackage(t *testing.T, s debtest.Source, dir string) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if built.dirs == nil {
		built.dirs = map[debtest.Source]string{}
	}
	src, ok := built.dirs[s]
	if !ok {
		d, err := os.MkdirTemp("", "kiln-debian-test-")
		require.NoError(t, err)
		debtest.BuildOnHost(t, d, s)
		built.dirs[s] = d
		src = d
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var changes string
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644))
		if strings.HasSuffix(e.Name(), ".changes") {
			changes = e.Name()
		}
	}
	return changes
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range built.dirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func TestLintian(t *testing.T) {
	testenv.SkipIfShort(t, "builds packages and runs lintian on them")
	testenv.NeedTool(t, "lintian")
	// A package with an error (no copyright file) and two warnings.
	bad := debtest.Source{Version: "1.1", LintianError: true, LintianWarning: true}

	t.Run("Errors", func(t *testing.T) {
		m := start(t, nil, &debian.Lintian{})
		changes := builtPackage(t, bad, builderDir(m))
		b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{debian.PropChanges: changes}})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "lintian: 1 error (no-copyright-file), 2 warnings (no-debian-copyright-in-source, no-manual-page) (failure)",
			b.Step("lintian").StateString)
		assert.Equal(t, "E: kiln-hello: no-copyright-file\n", b.Log("lintian", "Lintian Errors"))
		warnings := b.Log("lintian", "Lintian Warnings")
		assert.Contains(t, warnings, "W: kiln-hello source: no-debian-copyright-in-source\n")
		assert.Contains(t, warnings, "W: kiln-hello: no-manual-page [usr/bin/kiln-hello]\n")
		assert.Contains(t, b.Log("lintian", "stdio"), "E: kiln-hello: no-copyright-file")
	})

	t.Run("Suppressed", func(t *testing.T) {
		m := start(t, nil, &debian.Lintian{SuppressTags: []any{"no-copyright-file", ci.Interpolate("%(prop:also)s")}})
		changes := builtPackage(t, bad, builderDir(m))
		b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{debian.PropChanges: changes, "also": "no-manual-page"}})
		require.Equal(t, ci.Warnings, b.Results(), "warnings make the step WARNINGS")
		assert.Equal(t, "lintian: 1 warning (no-debian-copyright-in-source) (warnings)", b.Step("lintian").StateString)
	})

	t.Run("FailOnWarnings", func(t *testing.T) {
		m := start(t, nil, &debian.Lintian{File: "dist/" + "kiln-hello_1.1_amd64.changes", SuppressTags: "no-copyright-file",
			FailOn: []string{"error", "warning"}})
		builtPackage(t, bad, filepath.Join(builderDir(m), "dist"))
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
	})

	t.Run("NothingFails", func(t *testing.T) {
		m := start(t, nil, &debian.Lintian{FailOn: []string{}, WarnOn: []string{}})
		changes := builtPackage(t, bad, builderDir(m))
		b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{debian.PropChanges: changes}})
		require.Equal(t, ci.Success, b.Results())
		assert.Contains(t, b.Step("lintian").StateString, "1 error (no-copyright-file)")
	})

	t.Run("Clean", func(t *testing.T) {
		m := start(t, nil, &debian.Lintian{Info: true})
		changes := builtPackage(t, debtest.Source{}, builderDir(m))
		b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{debian.PropChanges: changes}})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, "lintian: 1 info (hardening-no-bindnow)", b.Step("lintian").StateString)
		assert.Contains(t, b.Log("lintian", "Lintian Info"), "I: kiln-hello: hardening-no-bindnow")
	})

	// A .deb and a .dsc are checked alone: the binary package's tags,
	// or the source package's.
	t.Run("DebAndDsc", func(t *testing.T) {
		m := start(t, nil,
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "deb"}, File: ci.Interpolate("%(prop:pkg)s_%(prop:version)s_amd64.deb")},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "dsc"}, File: "dist/kiln-hello_1.1.dsc", Workdir: "."})
		builtPackage(t, bad, builderDir(m))
		builtPackage(t, bad, filepath.Join(builderDir(m), "dist"))
		b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{"pkg": "kiln-hello", "version": "1.1"}})
		deb, dsc := b.Step("deb"), b.Step("dsc")
		assert.Equal(t, ci.Failure, deb.Results)
		assert.Equal(t, "lintian: 1 error (no-copyright-file), 1 warning (no-manual-page) (failure)", deb.StateString)
		assert.Equal(t, "E: kiln-hello: no-copyright-file\n", b.Log("deb", "Lintian Errors"))
		assert.Equal(t, "W: kiln-hello: no-manual-page [usr/bin/kiln-hello]\n", b.Log("deb", "Lintian Warnings"))
		assert.Contains(t, b.Header("deb", "stdio"), "lintian kiln-hello_1.1_amd64.deb\n")
		assert.Equal(t, ci.Warnings, dsc.Results)
		assert.Equal(t, "lintian: 1 warning (no-debian-copyright-in-source) (warnings)", dsc.StateString)
		assert.Equal(t, "W: kiln-hello source: no-debian-copyright-in-source\n", b.Log("dsc", "Lintian Warnings"))
		assert.Contains(t, b.Header("dsc", "stdio"), "lintian dist/kiln-hello_1.1.dsc\n")
	})

	// Profile, Pedantic and Experimental reach lintian, rendered, and
	// the tags they show are counted and logged by severity.
	t.Run("PedanticExperimental", func(t *testing.T) {
		// Without Rules-Requires-Root (pedantic, on the source) and with
		// a file installed twice (experimental, on the binary).
		picky := debtest.Source{Version: "1.3", LintianPedantic: true, LintianExperimental: true}
		m := start(t, map[string]any{"profile": "debian", "pedantic": "yes"},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "plain"}},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "pedantic"}, Pedantic: ci.Interpolate("%(prop:pedantic)s"),
				Profile: ci.Interpolate("%(prop:profile)s")},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "experimental"}, Pedantic: true, Experimental: ci.Interpolate("%(prop:pedantic)s")},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "deb"}, File: "kiln-hello_1.3_amd64.deb", Pedantic: true, Experimental: true,
				WarnOn: []string{"experimental"}},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "dsc"}, File: "kiln-hello_1.3.dsc", Pedantic: true, Experimental: true},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "noprofile"}, Profile: ci.Interpolate("%(prop:none:-nowhere)s")})
		changes := builtPackage(t, picky, builderDir(m))
		b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{debian.PropChanges: changes}})
		header := func(step string) string { return b.Header(step, "stdio") }
		pedantic := "P: kiln-hello source: silent-on-rules-requiring-root [debian/control]\n"
		experimental := "X: kiln-hello: duplicate-files usr/share/doc/kiln-hello/NOTES usr/share/doc/kiln-hello/NOTES.copy\n"

		assert.Equal(t, "lintian: no tags", b.Step("plain").StateString, "neither shows without its option")
		assert.Contains(t, header("plain"), "lintian kiln-hello_1.3_amd64.changes\n")

		assert.Equal(t, ci.Success, b.Step("pedantic").Results)
		assert.Equal(t, "lintian: 1 pedantic (silent-on-rules-requiring-root)", b.Step("pedantic").StateString)
		assert.Equal(t, pedantic, b.Log("pedantic", "Lintian Pedantic"))
		assert.Contains(t, header("pedantic"), "lintian --pedantic --profile debian kiln-hello_1.3_amd64.changes\n")

		assert.Equal(t, "lintian: 1 pedantic (silent-on-rules-requiring-root), 1 experimental (duplicate-files)", b.Step("experimental").StateString)
		assert.Equal(t, experimental, b.Log("experimental", "Lintian Experimental"))
		assert.Contains(t, header("experimental"), "lintian --pedantic -E kiln-hello_1.3_amd64.changes\n")

		assert.Equal(t, ci.Warnings, b.Step("deb").Results, "WarnOn experimental")
		assert.Equal(t, "lintian: 1 experimental (duplicate-files) (warnings)", b.Step("deb").StateString, "the binary package's tag only")
		assert.Equal(t, experimental, b.Log("deb", "Lintian Experimental"))
		assert.Equal(t, "lintian: 1 pedantic (silent-on-rules-requiring-root)", b.Step("dsc").StateString, "the source package's tag only")
		assert.Equal(t, pedantic, b.Log("dsc", "Lintian Pedantic"))

		assert.Equal(t, ci.Failure, b.Step("noprofile").Results)
		assert.Equal(t, "lintian failed (exit code 2): Could not find a profile matching: nowhere/main (failure)", b.Step("noprofile").StateString)
		assert.Contains(t, header("noprofile"), "lintian --profile nowhere kiln-hello_1.3_amd64.changes\n")
	})

	t.Run("Missing", func(t *testing.T) {
		m := start(t, nil, &debian.Lintian{File: "nothing.changes"})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "lintian failed (exit code 2): nothing.changes is not a readable file (failure)", b.Step("lintian").StateString)
	})

	t.Run("Outside", func(t *testing.T) {
		m := start(t, nil,
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "relative"}, File: ci.Interpolate("%(prop:f)s")},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "absolute"}, File: "/etc/passwd"},
			&debian.Lintian{StepOptions: ci.StepOptions{Name: "unset"}})
		b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{"f": "../../../../etc/passwd"}})
		assert.Equal(t, `refused: "../../../../etc/passwd" is outside the build folder (failure)`, b.Step("relative").StateString)
		assert.Contains(t, b.Step("absolute").StateString, `refused: "/etc/passwd" is outside the build folder `)
		assert.Contains(t, b.Step("unset").StateString, "no file to check")
		for _, s := range b.Steps {
			assert.Equal(t, ci.Failure, s.Results)
			logs, err := m.Store.ListLogs(t.Context(), s.ID)
			require.NoError(t, err)
			assert.Empty(t, logs, "%s: lintian did not run", s.Name)
		}
	})
}

func TestParseLintianLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want debian.LintianTag
		ok   bool
	}{
		{"E: kiln-hello: no-copyright-file", debian.LintianTag{Severity: "error", Package: "kiln-hello", Tag: "no-copyright-file"}, true},
		{"W: kiln-hello source: no-debian-copyright-in-source", debian.LintianTag{Severity: "warning", Package: "kiln-hello source", Tag: "no-debian-copyright-in-source"}, true},
		{"I: kiln-hello: hardening-no-bindnow [usr/bin/kiln-hello]", debian.LintianTag{Severity: "info", Package: "kiln-hello", Tag: "hardening-no-bindnow", Context: "[usr/bin/kiln-hello]"}, true},
		{"O: kiln-hello: some-tag", debian.LintianTag{Severity: "overridden", Package: "kiln-hello", Tag: "some-tag"}, true},
		{"N:   Each binary package has to include a plain file", debian.LintianTag{}, false},
		{"running with root privileges is not recommended!", debian.LintianTag{}, false},
		{"E: kiln-hello", debian.LintianTag{}, false},
	} {
		got, ok := debian.ParseLintianLine(tc.line)
		assert.Equal(t, tc.ok, ok, tc.line)
		if ok {
			tc.want.Line = tc.line
			assert.Equal(t, tc.want, got)
		}
	}
}

func TestLintian_Validate(t *testing.T) {
	err := (&debian.Lintian{FailOn: []string{"errors"}, WarnOn: []string{"warning", "loud"}}).Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `FailOn: "errors" is not a lintian severity`)
	assert.Contains(t, err.Error(), `WarnOn: "loud" is not a lintian severity`)
}
