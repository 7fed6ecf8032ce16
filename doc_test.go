package kiln_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDocMap checks that the map of doc.go ("How the packages fit") lists
// every package of the module but the internal ones, and nothing else.
func TestDocMap(t *testing.T) {
	const mod = "github.com/kilnci/kiln/"
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(src), "// # How the packages fit\n")
	if !ok {
		t.Fatal(`doc.go has no "How the packages fit" section`)
	}
	section, _, _ = strings.Cut(section, "\n// # ")
	// A map entry is an indented line whose first word is the package
	// (continuation lines start with spaces).
	mapped := map[string]bool{}
	for line := range strings.Lines(section) {
		entry, ok := strings.CutPrefix(line, "//\t")
		if ok && entry != "" && entry[0] != ' ' {
			mapped[strings.Fields(entry)[0]] = true
		}
	}

	out, err := exec.Command("go", "list", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, path := range strings.Fields(string(out)) {
		pkg, ok := strings.CutPrefix(path, mod)
		if !ok || pkg == "internal" || strings.HasPrefix(pkg, "internal/") {
			continue // the root package, the internal ones
		}
		if !mapped[pkg] {
			t.Errorf("doc.go's map does not list package %s", pkg)
		}
		delete(mapped, pkg)
	}
	for pkg := range mapped {
		t.Errorf("doc.go's map lists %s, which is not a package of the module", pkg)
	}
}
