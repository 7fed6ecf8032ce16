package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRun runs the benchmark at a tiny size, so that it keeps working.
func TestRun(t *testing.T) {
	var out strings.Builder
	err := run(context.Background(), []string{"-dir", t.TempDir(), "-builds", "200", "-sample", "5", "-days", "4", "-per-day", "5", "-budget", "50000", "-log", "20000"}, &out)
	require.NoError(t, err)
	text := out.String()
	assert.Contains(t, text, "bytes of database per build")
	assert.Regexp(t, `history: 4 days × 5 builds .* janitor removed the logs of [1-9]\d* builds`, text)
	assert.Contains(t, text, "large store: 200 builds")
	t.Log(text)
}
