package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// repo is the Go repository the README's test builds: made by TestMain.
var repo string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hello-repo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repo = dir
	code := 0
	if err := makeRepo(dir); err != nil {
		fmt.Fprintln(os.Stderr, "make the repository:", err)
		code = 1
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// makeRepo makes a small Go module with a passing test, committed on
// branch main.
func makeRepo(dir string) error {
	files := map[string]string{
		"go.mod":        "module example.org/hello\n\ngo 1.26\n",
		"hello.go":      "package hello\n\nfunc Hello() string { return \"hello\" }\n",
		"hello_test.go": "package hello\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n\tif Hello() != \"hello\" {\n\t\tt.Fatal(Hello())\n\t}\n}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"-c", "user.name=T", "-c", "user.email=t@example.invalid", "commit", "-qm", "hello"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %v: %s", args, err, out)
		}
	}
	return nil
}

// TestREADME keeps the README's master the same as this program, and
// its test the same as TestPipeline (pipeline_test.go), which runs as
// written there.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	assert.Contains(t, string(readme), "```go\n"+string(src)+"```", "the README's master must be examples/hello/main.go")
	test, err := os.ReadFile("pipeline_test.go")
	require.NoError(t, err)
	i := strings.Index(string(test), "func TestPipeline(")
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, string(readme), "```go\n"+string(test[i:])+"```", "the README's test must be TestPipeline of pipeline_test.go")
}
