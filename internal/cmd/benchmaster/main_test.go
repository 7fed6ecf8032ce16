package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/testenv"
)

func TestConfig(t *testing.T) {
	for _, n := range []int{1, 200} {
		_, err := ci.NewMaster(Config(t.TempDir(), n, 1000))
		require.NoError(t, err, "%d workers", n)
	}
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
