package kiln_test

import (
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// rules is the layering of the module: for each of its packages (by path
// in the module, "" for the root), the module's packages it may depend on,
// directly or not. Every package of `go list ./...` has a rule: a new
// package fails TestDeps until it gets one, so its place in the layers is
// a decision written here.
var rules = map[string]rule{
	// The documentation package holds no code.
	"": {},

	// The domain: the standard library only.
	"ci": {stdOnly: true},

	// Adapters of the master's side import ci and not each other.
	"ci/janitor":      {allowed: []string{"ci"}},
	"ci/metrics":      {allowed: []string{"ci"}},
	"ci/report":       {allowed: []string{"ci"}},
	"ci/secret":       {allowed: []string{"ci"}},
	"ci/sqlite":       {allowed: []string{"ci", "internal/logchunk", "internal/propjson"}},
	"ci/postgres":     {allowed: []string{"ci", "internal/logchunk", "internal/propjson"}},
	"ci/steps":        {allowed: []string{"ci"}},
	"ci/steps/debian": {allowed: []string{"ci", "ci/steps"}},
	"ci/storetest":    {allowed: []string{"ci"}},
	"hook":            {allowed: []string{"ci"}},
	"scheduler":       {allowed: []string{"ci"}},
	"webui":           {allowed: []string{"ci"}},
	"worker/remote":   {allowed: []string{"ci", "worker/protocol"}},
	// The in-process worker runs the agent's commands on the master's side.
	"worker/local": {allowed: []string{"ci", "worker/protocol", "worker/command", "internal/pty"}},
	// Tests of pipelines: a real master, its store, in-process workers.
	"ci/citest": {allowed: []string{"ci", "ci/sqlite", "internal/logchunk", "internal/propjson", "worker/local", "worker/protocol", "worker/command", "internal/pty"}},

	// The worker side never imports the master's packages: the protocol
	// is all it shares with them.
	"worker/protocol": {stdOnly: true},
	"worker/command":  {allowed: []string{"worker/protocol", "internal/pty"}},
	"worker":          {allowed: []string{"worker/protocol", "worker/command", "internal/pty"}},
	"cmd/kiln-worker": {allowed: []string{"worker", "worker/protocol", "worker/command", "internal/pty"}},
	// Copies a master's records from SQLite to PostgreSQL.
	"cmd/kiln-migrate": {allowed: []string{"ci", "ci/sqlite", "ci/postgres", "internal/logchunk", "internal/propjson"}},

	// Programs wire the packages together.
	"examples/hello":      {wiring: true},
	"examples/quickstart": {wiring: true},
	"ideascube":           {wiring: true},

	// Internal helpers and tools.
	"internal/pyvalue":           {stdOnly: true},
	"internal/secretname":        {stdOnly: true},
	"internal/pty":               {},
	"internal/logchunk":          {},
	"internal/propjson":          {allowed: []string{"ci"}},
	"internal/testenv":           {},
	"internal/crash":             {},
	"internal/interop":           {},
	"internal/multimaster":       {},
	"internal/debtest":           {allowed: []string{"internal/testenv"}},
	"internal/pgtest":            {allowed: []string{"internal/testenv"}},
	"internal/cmd/benchmaster":   {wiring: true},
	"internal/cmd/clustermaster": {wiring: true},
	"internal/cmd/storebench":    {wiring: true},
	"internal/cmd/workerbench":   {},
}

// shared are leaves any package may import: they import only the standard
// library, and hold what both sides of the protocol must agree on (Python's
// truth of a value, which variables hold secrets).
var shared = []string{"internal/pyvalue", "internal/secretname"}

// A rule says what a package may depend on.
type rule struct {
	// allowed lists the module's packages it may depend on.
	allowed []string
	// wiring allows every package of the module: a program's main imports
	// what it assembles.
	wiring bool
	// stdOnly forbids any module outside the standard library.
	stdOnly bool
}

// TestDeps enforces the layering of the packages (see rules): ci imports
// only the standard library, adapters import ci but not each other, and
// the worker side never imports ci.
func TestDeps(t *testing.T) {
	const mod = "github.com/kilnci/kiln"
	// One line per package of the module: its path, then every package it
	// depends on, directly or not.
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	rel := func(path string) (string, bool) {
		if path == mod {
			return "", true
		}
		return strings.CutPrefix(path, mod+"/")
	}
	seen := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		pkg, _ := rel(fields[0])
		seen[pkg] = true
		r, ok := rules[pkg]
		if !ok {
			t.Errorf("package %q has no rule in deps_test.go: say which of the module's packages it may import", fields[0])
			continue
		}
		for _, dep := range fields[1:] {
			name, ours := rel(dep)
			switch {
			case !ours:
				if r.stdOnly && !standard(dep) {
					t.Errorf("%s imports %s: it may import only the standard library", pkg, dep)
				}
			case r.wiring:
			case !slices.Contains(r.allowed, name) && !slices.Contains(shared, name):
				t.Errorf("%s imports %s, which its layer may not import", pkg, name)
			}
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(rules)) {
		if !seen[pkg] {
			t.Errorf("deps_test.go has a rule for %q, which is not a package any more", pkg)
		}
	}
}

// standard reports whether an import path is the standard library's: its
// first element has no dot (as "go" decides for modules).
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
