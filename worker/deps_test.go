package worker_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps checks the worker side's layering: the agent and its binary
// import, from this module, only the protocol, the commands and the PTY
// opener, never the master's packages.
func TestDeps(t *testing.T) {
	const mod = "github.com/kilnci/kiln/"
	allowed := map[string]bool{
		mod + "worker": true, mod + "worker/protocol": true, mod + "worker/command": true,
		mod + "cmd/kiln-worker": true, mod + "internal/pty": true, mod + "internal/pyvalue": true,
	}
	for _, pkg := range []string{"github.com/kilnci/kiln/worker", "github.com/kilnci/kiln/cmd/kiln-worker"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, mod) && !allowed[dep] {
				t.Errorf("%s imports %s: the worker side imports only worker/protocol, worker/command, internal/pty and internal/pyvalue", pkg, dep)
			}
		}
	}
}
