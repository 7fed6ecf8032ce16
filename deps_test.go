package kiln_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps enforces the layering of the packages: ci imports only the
// standard library, adapters import ci but not each other, and the worker
// side never imports ci.
func TestDeps(t *testing.T) {
	const mod = "github.com/kilnci/kiln"
	rules := []struct {
		pkg string
		// allowed lists the module's packages pkg may import (prefixes).
		allowed []string
		// stdOnly forbids any module outside the standard library.
		stdOnly bool
	}{
		{pkg: "ci", stdOnly: true},
		{pkg: "worker/protocol", allowed: nil},
		{pkg: "worker/command", allowed: []string{"worker/protocol", "internal/pty"}},
		{pkg: "ci/sqlite", allowed: []string{"ci"}},
		{pkg: "ci/postgres", allowed: []string{"ci"}},
		// The test helpers import nothing of the module's but the
		// helpers they build on.
		{pkg: "internal/pgtest", allowed: []string{"internal/testenv"}},
		{pkg: "cmd/kiln-migrate", allowed: []string{"ci", "ci/sqlite", "ci/postgres"}},
		{pkg: "ci/steps", allowed: []string{"ci"}},
		{pkg: "ci/steps/debian", allowed: []string{"ci", "ci/steps"}},
		{pkg: "webui", allowed: []string{"ci", "scheduler"}},
		{pkg: "scheduler", allowed: []string{"ci"}},
		{pkg: "worker/local", allowed: []string{"ci", "worker/protocol", "worker/command", "internal/pty"}},
		{pkg: "worker/remote", allowed: []string{"ci", "worker/protocol"}},
		// The worker side never imports the master's packages.
		{pkg: "worker", allowed: []string{"worker/protocol", "worker/command", "internal/pty"}},
		{pkg: "cmd/kiln-worker", allowed: []string{"worker", "worker/protocol", "worker/command", "internal/pty"}},
		{pkg: "internal/pty", allowed: nil},
		{pkg: "hook", allowed: []string{"ci"}},
		{pkg: "ci/report", allowed: []string{"ci"}},
		{pkg: "ci/metrics", allowed: []string{"ci"}},
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./"+r.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list %s: %v\n%s", r.pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				if dep == mod+"/"+r.pkg {
					continue
				}
				if !strings.HasPrefix(dep, mod+"/") {
					if r.stdOnly {
						t.Errorf("%s imports %s: it may import only the standard library", r.pkg, dep)
					}
					continue
				}
				rel := strings.TrimPrefix(dep, mod+"/")
				ok := false
				for _, a := range r.allowed {
					ok = ok || rel == a
				}
				if !ok {
					t.Errorf("%s imports %s, which its layer may not import", r.pkg, rel)
				}
			}
		})
	}
}
