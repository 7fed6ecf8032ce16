package report_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/report"
)

type pushed struct {
	header http.Header
	doc    map[string]any
}

// pushServer records the documents posted to it, answering the first fail
// of them with 503.
func pushServer(t *testing.T, fail int) (*httptest.Server, <-chan pushed) {
	got := make(chan pushed, 100)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Errorf("not JSON: %v: %s", err, b)
		}
		got <- pushed{r.Header.Clone(), doc}
		mu.Lock()
		n++
		failing := n <= fail
		mu.Unlock()
		if failing {
			http.Error(w, "busy, come back later", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestHTTPPush_Report(t *testing.T) {
	srv, got := pushServer(t, 0)
	h := &report.HTTPPush{URL: srv.URL + "/hook", Header: http.Header{"Authorization": {"Bearer sekrit"}, "X-Team": {"ideascube"}}}
	require.NoError(t, h.Validate())
	rep := testReport(ci.BuildFinished, ci.Failure, ci.SourceStamp{Repository: ideascube, Branch: "master", Revision: sha1})
	rep.Build.Properties.Set("got_revision", sha1, "Git")
	rep.Steps = []*ci.StepRecord{{ID: 4, BuildID: 7, Number: 0, Name: "compile", Complete: true, Results: ci.Failure, StateString: "failed compile"}}
	require.NoError(t, h.Report(context.Background(), rep))

	p := recv(t, got)
	assert.Equal(t, "application/json", p.header.Get("Content-Type"))
	assert.Equal(t, "Bearer sekrit", p.header.Get("Authorization"))
	assert.Equal(t, "ideascube", p.header.Get("X-Team"))
	d := p.doc
	assert.Equal(t, "finished", d["event"])
	assert.Equal(t, "Ideascube", d["title"])
	assert.Equal(t, "http://ci.example.org/builders/pkg/builds/3", d["url"])
	assert.Equal(t, "failure", d["results_text"])
	assert.Equal(t, "w1", d["worker"])
	assert.Equal(t, map[string]any{"builderid": float64(1), "name": "pkg", "description": "", "tags": nil}, d["builder"])
	build := d["build"].(map[string]any)
	assert.Equal(t, float64(7), build["buildid"])
	assert.Equal(t, float64(3), build["number"])
	assert.Equal(t, float64(2), build["results"])
	assert.Equal(t, "failed compile", build["state_string"])
	assert.Equal(t, map[string]any{"got_revision": []any{sha1, "Git"}}, d["properties"])
	steps := d["steps"].([]any)
	require.Len(t, steps, 1)
	assert.Equal(t, "compile", steps[0].(map[string]any)["name"])
	ss := d["sourcestamps"].([]any)
	require.Len(t, ss, 1)
	assert.Equal(t, ideascube, ss[0].(map[string]any)["repository"])

	assert.Error(t, (&report.HTTPPush{URL: "nope"}).Validate())
}

func TestHTTPPush_Errors(t *testing.T) {
	srv, _ := pushServer(t, 100)
	h := &report.HTTPPush{URL: srv.URL, Header: http.Header{"Authorization": {"Bearer sekrit"}}}
	err := h.Report(context.Background(), testReport(ci.BuildStarted, ci.Success))
	require.ErrorContains(t, err, "503")
	assert.ErrorContains(t, err, "busy, come back later")
	assert.NotContains(t, err.Error(), "sekrit")

	srv.Close()
	h = &report.HTTPPush{URL: "http://user:pw-sekrit@" + srv.Listener.Addr().String()}
	err = h.Report(context.Background(), testReport(ci.BuildStarted, ci.Success))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "pw-sekrit")
}

// TestReporter_Failing: a reporter whose server fails does not change the
// builds, and the master tries its reports again.
func TestReporter_Failing(t *testing.T) {
	flaky, got := pushServer(t, 1) // the first post fails
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + ln.Addr().String()
	ln.Close() // nobody listens there

	cfg := echoConfig()
	cfg.Reporters = []ci.Reporter{
		&report.HTTPPush{URL: down},
		&report.HTTPPush{URL: flaky.URL},
		&report.GitHubStatus{Token: ghToken, BaseURL: down, RepoHost: "github.com"},
		&report.Mail{Addr: ln.Addr().String(), From: "ci@example.org", To: []string{"dev@example.org"}, Mode: report.MailAll},
	}
	m := citest.Start(t, cfg)
	b := m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Repository: ideascube, Branch: "master", Revision: sha1}})
	assert.Equal(t, ci.Success, b.Results())
	b = m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "next"}})
	assert.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "next\n", b.Log("echo", "stdio"))

	// The flaky server refused the first report, and got it again.
	first, again := recv(t, got), recv(t, got)
	assert.Equal(t, "started", first.doc["event"])
	assert.Equal(t, first.doc, again.doc)
	for _, event := range []string{"finished", "started", "finished"} {
		assert.Equal(t, event, recv(t, got).doc["event"])
	}
}
