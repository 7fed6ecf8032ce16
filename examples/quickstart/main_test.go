package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/testenv"
	"github.com/kilnci/kiln/worker"
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
		done <- run(ctx, []string{"-http", "127.0.0.1:0", "-workers", "127.0.0.1:0", "-dir", t.TempDir()}, pw)
		pw.Close()
	}()
	var out strings.Builder
	var api, workerAddr string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if strings.HasSuffix(line, "/api/v2/builds") {
			api = strings.TrimSpace(line)
		}
		if a, ok := strings.CutPrefix(line, "attach a remote worker, example-worker (password pass), on "); ok {
			workerAddr = strings.TrimSuffix(a, ":")
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
			WorkerID int  `json:"workerid"`
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

	// A newcomer attaches a kiln-worker as example-worker and forces a
	// build, which runs there.
	require.NotEmpty(t, workerAddr, text)
	agent := &worker.Worker{Name: "example-worker", Password: "pass", Master: workerAddr, BaseDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Run(ctx) }()
	base := strings.TrimSuffix(api, "/api/v2/builds")
	var workers struct {
		Workers []struct {
			WorkerID    int    `json:"workerid"`
			Name        string `json:"name"`
			ConnectedTo []any  `json:"connected_to"`
		} `json:"workers"`
	}
	exampleID := 0
	for exampleID == 0 {
		getJSON(t, base+"/api/v2/workers", &workers)
		for _, w := range workers.Workers {
			if w.Name == "example-worker" && len(w.ConnectedTo) > 0 {
				exampleID = w.WorkerID
			}
		}
		if exampleID == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	force, err := http.Post(base+"/api/v2/forceschedulers/force", "application/json",
		strings.NewReader(`{"jsonrpc": "2.0", "method": "force", "params": {"builderid": 1, "reason": "from the test"}, "id": 1}`))
	require.NoError(t, err)
	forceBody, _ := io.ReadAll(force.Body)
	force.Body.Close()
	require.Equal(t, http.StatusOK, force.StatusCode, string(forceBody))
	for {
		getJSON(t, api+"?order=-buildid&limit=1", &body)
		if len(body.Builds) == 1 && body.Builds[0].Number == 2 && body.Builds[0].Complete {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NotNil(t, body.Builds[0].Results)
	assert.Equal(t, 0, *body.Builds[0].Results)
	assert.Equal(t, exampleID, body.Builds[0].WorkerID, "the forced build ran on the remote worker")

	cancel()
	require.NoError(t, <-done)
	require.NoError(t, <-agentDone)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// TestREADMEFlags: the README's table of the quick start's flags is the
// program's.
func TestREADMEFlags(t *testing.T) {
	var usage strings.Builder
	err := run(context.Background(), []string{"-h"}, &usage)
	require.ErrorIs(t, err, flag.ErrHelp)
	have := regexp.MustCompile(`(?m)^  -(\w+)`).FindAllStringSubmatch(usage.String(), -1)
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	documented := regexp.MustCompile("(?m)^\\| `-(\\w+)[ `]").FindAllStringSubmatch(string(readme), -1)
	var a, b []string
	for _, m := range have {
		a = append(a, m[1])
	}
	for _, m := range documented {
		b = append(b, m[1])
	}
	require.NotEmpty(t, a)
	assert.ElementsMatch(t, a, b, "the README documents each flag of the quick start")
}
