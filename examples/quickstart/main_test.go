package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/testenv"
)

// TestQuickstart runs the quick start as a user would, reads what it
// prints, asks its API for the build, and interrupts it.
func TestQuickstart(t *testing.T) {
	testenv.NeedTool(t, "git")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-http", "127.0.0.1:0", "-dir", t.TempDir()}, pw)
		pw.Close()
	}()
	var out strings.Builder
	var api string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if strings.HasSuffix(line, "/api/v2/builds") {
			api = strings.TrimSpace(line)
		}
		if strings.HasPrefix(line, "serving until interrupted") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	text := out.String()
	require.Contains(t, text, "build #1 of hello: success (build successful)", text)
	for _, step := range []string{"git", "list", "subject", "test", "greet"} {
		assert.Regexp(t, `step `+step+` +success`, text)
	}
	assert.Regexp(t, `output: Hello from hello #1 at [0-9a-f]{40}: Add hello.sh and its test`, text)
	require.NotEmpty(t, api, text)

	resp, err := http.Get(api)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body struct {
		Builds []struct {
			Number   int  `json:"number"`
			Results  *int `json:"results"`
			Complete bool `json:"complete"`
		} `json:"builds"`
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Len(t, body.Builds, 1)
	assert.Equal(t, 1, body.Meta.Total)
	assert.True(t, body.Builds[0].Complete)
	require.NotNil(t, body.Builds[0].Results)
	assert.Equal(t, 0, *body.Builds[0].Results)

	cancel()
	require.NoError(t, <-done)
}
