package debtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildOnHost writes s into dir/kiln-hello and builds it there with
// dpkg-buildpackage, without a chroot (a few seconds): source and binary
// packages, unsigned. It returns the path of the .changes, in dir. The
// Debian tools it needs (dpkg-buildpackage, debhelper, a C compiler) must
// be installed: without them the test is skipped, or fails under CI.
func BuildOnHost(tb testing.TB, dir string, s Source) string {
	tb.Helper()
	NeedTools(tb, "dpkg-buildpackage", "dh", "cc", "make", "fakeroot")
	src := filepath.Join(dir, Package)
	if err := Write(src, s); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("dpkg-buildpackage", "-us", "-uc", "-rfakeroot")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "DEB_BUILD_OPTIONS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("dpkg-buildpackage: %v\n%s", err, out)
	}
	version := s.Version
	if version == "" {
		version = "1.0"
	}
	arch, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		tb.Fatalf("dpkg --print-architecture: %v", err)
	}
	changes := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.changes", Package, version, string(arch[:len(arch)-1])))
	if _, err := os.Stat(changes); err != nil {
		tb.Fatalf("dpkg-buildpackage left no .changes: %v", err)
	}
	return changes
}

// Files returns the files a .changes lists (its Files field), by name.
func Files(tb testing.TB, changes string) []string {
	tb.Helper()
	b, err := os.ReadFile(changes)
	if err != nil {
		tb.Fatal(err)
	}
	var files []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "Files:":
			in = true
		case in && len(line) > 0 && line[0] == ' ':
			f := strings.Fields(line)
			files = append(files, f[len(f)-1])
		default:
			in = false
		}
	}
	return files
}
