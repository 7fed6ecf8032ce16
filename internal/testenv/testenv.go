// Package testenv holds what the tests of several packages share: NeedTool
// lets tests that need an outside program (git, buildbot, chromium...)
// skip when it is missing on a developer's machine, and fail instead under
// CI (CI=true), so that CI never passes by skipping; SyncBuffer collects
// output written concurrently. (To wait for a master to reach a state,
// tests use citest.Master.WaitFor.)
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (the environment variable CI is
// "true"), where nothing may be skipped for a missing tool.
func CI() bool { return os.Getenv("CI") == "true" }

// NeedTool returns the path of the program name, or skips the test (fails
// it, under CI) when the program is not installed.
func NeedTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if CI() {
		tb.Fatalf("%s is required under CI but is not installed: %v", name, err)
	}
	tb.Skipf("%s is not installed: %v", name, err)
	return ""
}
