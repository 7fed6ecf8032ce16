package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/testenv"
)

func TestConfig(t *testing.T) {
	for _, n := range []int{1, 200} {
		_, err := ci.NewMaster(Config(t.TempDir(), n, 1000, ""))
		require.NoError(t, err, "%d workers", n)
	}
	// The log builder's step: LogCommand, or cat of the file given.
	logStep := func(cfg ci.MasterConfig) any {
		for _, b := range cfg.Builders {
			if b.Name == "log" {
				return b.Steps[0].(*steps.ShellCommand).Command
			}
		}
		t.Fatal("no log builder")
		return nil
	}
	assert.Equal(t, LogCommand(1000), logStep(Config(t.TempDir(), 1, 1000, "")))
	assert.Equal(t, []string{"cat", "/tmp/a b'c/out.txt"}, logStep(Config(t.TempDir(), 1, 1000, "/tmp/a b'c/out.txt")))
}

// TestRun starts the master, waits for its ready line and stops it.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &testenv.SyncBuffer{}
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-dir", t.TempDir(), "-n", "2", "-idle", "3"}, out, &stderr) }()
	for !strings.Contains(out.String(), "\n") {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v: %s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	line := out.String()
	require.Regexp(t, `^ready workers=127\.0\.0\.1:\d+ http=127\.0\.0\.1:\d+\n$`, line)
	_, httpAddr, _ := strings.Cut(strings.TrimSpace(line), " http=")
	resp, err := http.Get("http://" + httpAddr + "/api/v2/builders?field=name")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.JSONEq(t, `{"builders": [{"name": "one"}, {"name": "log"}, {"name": "ten"}], "meta": {"total": 3}}`, string(body))
	resp, err = http.Get("http://" + httpAddr + "/api/v2/workers?field=name")
	require.NoError(t, err)
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.JSONEq(t, `{"workers": [{"name": "w1"}, {"name": "w2"}, {"name": "i1"}, {"name": "i2"}, {"name": "i3"}], "meta": {"total": 5}}`, string(body))
	cancel()
	require.NoError(t, <-done, "%s", stderr.String())
}

func TestRun_Usage(t *testing.T) {
	var out, stderr bytes.Buffer
	err := run(context.Background(), nil, &out, &stderr)
	require.Error(t, err)
	assert.Contains(t, stderr.String(), "-dir")
}

// TestLogCommand checks that the log step's command writes what
// head -c N /dev/zero | tr '\0' a | fold -w 99 writes: lines of 99
// characters, the last one without a newline.
func TestLogCommand(t *testing.T) {
	for _, n := range []int64{1, 98, 99, 100, 198, 199, 1000, 123_457} {
		got, err := exec.Command("sh", "-c", LogCommand(n)).Output()
		require.NoError(t, err, "%d bytes", n)
		want, err := exec.Command("sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' a | fold -w 99", n)).Output()
		require.NoError(t, err, "%d bytes", n)
		assert.Equal(t, len(want), len(got), "%d bytes", n)
		assert.True(t, bytes.Equal(want, got), "%d bytes: the output differs from fold's", n)
	}
	out, err := exec.Command("sh", "-c", LogCommand(0)).Output()
	require.NoError(t, err)
	assert.Empty(t, out)
}
