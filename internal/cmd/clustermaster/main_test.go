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

	"github.com/kilnci/kiln/internal/testenv"
)

// TestRun starts the master on a SQLite file, waits for its ready line,
// reads its builders from the API and stops it.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &testenv.SyncBuffer{}
	var stderr testenv.SyncBuffer
	env := map[string]string{"KILN_GITHUB_SECRET": "s3cret"}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dir", t.TempDir(), "-name", "one", "-worker-names", "w1,w2", "-live-workers", "w2"},
			func(k string) string { return env[k] }, out, &stderr)
	}()
	for !strings.Contains(out.String(), "\n") {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v: %s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	line := out.String()
	require.Regexp(t, `^ready name=one workers=127\.0\.0\.1:\d+ http=127\.0\.0\.1:\d+\n$`, line)
	_, httpAddr, _ := strings.Cut(strings.TrimSpace(line), " http=")
	resp, err := http.Get("http://" + httpAddr + "/api/v2/builders?field=name")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.JSONEq(t, `{"builders": [{"name": "build"}, {"name": "periodic"}, {"name": "hold"}, {"name": "live"}], "meta": {"total": 4}}`, string(body))
	cancel()
	require.NoError(t, <-done, "%s", stderr.String())
}

func TestRun_Usage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "-worker-names"},
		{[]string{"-dir", "d", "-name", "n", "-worker-names", "w1"}, nil, "KILN_GITHUB_SECRET"},
	} {
		var out, stderr bytes.Buffer
		err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out, &stderr)
		require.Error(t, err)
		assert.Contains(t, err.Error()+stderr.String(), tc.want)
		assert.Empty(t, out.String())
	}
}
