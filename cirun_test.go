//go:build unix

package kiln_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCIRun_NotRoot: the README's test command, run by a user other than
// root, runs itself through sudo when there is one, and otherwise says
// that it needs root. (The test runs .ci/run as the user nobody when it
// runs as root, with a sudo of its own that records how it was called.)
func TestCIRun_NotRoot(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "repo", ".ci", "run")
	bin := filepath.Join(dir, "bin")
	record := filepath.Join(dir, "sudo-args")
	for path, content := range map[string]string{
		run:                           string(script),
		filepath.Join(bin, "sudo"):    "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + record + "\n",
		filepath.Join(dir, "nobin/x"): "",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o777) // the sudo stub writes its record here
	cmd := func(path string) *exec.Cmd {
		c := exec.Command("/bin/bash", run)
		c.Env = []string{"PATH=" + path, "HOME=" + dir}
		if os.Geteuid() == 0 {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		return c
	}

	path := bin + ":/usr/bin:/bin"
	if out, err := cmd(path).CombinedOutput(); err != nil {
		t.Fatalf("with sudo: %v\n%s", err, out)
	}
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if want := "env\nPATH=" + path + "\n" + run + "\n"; string(got) != want {
		t.Errorf("sudo was given %q, want %q", got, want)
	}

	out, err := cmd(filepath.Join(dir, "nobin") + ":/nonexistent").CombinedOutput()
	if err == nil {
		t.Fatalf("without sudo, it went on:\n%s", out)
	}
	if !strings.Contains(string(out), ".ci/run: run it as root: it installs Debian packages and prepares sbuild (sudo is not installed)") {
		t.Errorf("without sudo: %s", out)
	}
}
