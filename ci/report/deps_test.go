package report_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps report an adapter: of the module's packages it imports
// only ci (and internal/pyvalue, a leaf ci shares with the worker).
func TestDeps(t *testing.T) {
	const mod = "github.com/kilnci/kiln/"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(dep, mod)
		if ok && rel != "ci/report" && rel != "ci" && rel != "internal/pyvalue" {
			t.Errorf("ci/report imports %s, which its layer may not import", dep)
		}
	}
}
