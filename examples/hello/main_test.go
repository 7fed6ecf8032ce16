package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/internal/testenv"
)

// TestPipeline runs the README's builder on a small Go repository, as the
// README shows.
func TestPipeline(t *testing.T) {
	testenv.NeedTool(t, "git")
	repo := t.TempDir()
	files := map[string]string{
		"go.mod":        "module example.org/hello\n\ngo 1.26\n",
		"hello.go":      "package hello\n\nfunc Hello() string { return \"hello\" }\n",
		"hello_test.go": "package hello\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n\tif Hello() != \"hello\" {\n\t\tt.Fatal(Hello())\n\t}\n}\n",
	}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644))
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"-c", "user.name=T", "-c", "user.email=t@example.invalid", "commit", "-qm", "hello"}} {
		out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}

	cfg := config(repo)
	cfg.BaseDir = ""   // citest's temporary folder
	cfg.Services = nil // citest runs its own in-process worker and no web server
	cfg.Builders[0].Properties["goflags"] = "-count=1"
	m := citest.Start(t, cfg)
	b := m.Build(t, citest.Request{Builder: "test", SourceStamp: ci.SourceStamp{Branch: "main"}})
	require.Equal(t, ci.Success, b.Results(), b.LogLines("test", "stdio"))
	assert.True(t, strings.HasPrefix(b.Log("test", "stdio"), "ok  \texample.org/hello"), b.Log("test", "stdio"))
}

// TestREADME keeps the README's master the same as this program.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	assert.Contains(t, string(readme), "```go\n"+string(src)+"```", "the README's master must be examples/hello/main.go")
}
