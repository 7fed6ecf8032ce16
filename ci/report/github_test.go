package report_test

import (
	"context"
	"encoding/json"
	"io"
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

const (
	sha1      = "3f786850e387550fdab836ed7e6dc881de23001b"
	sha2      = "89e6c98d92887913cadf06b2adb97f26cde4849b"
	ghToken   = "ghp_t0k3n-never-shown"
	ideascube = "https://github.com/ideascube/ideascube.git"
)

// A request GitHub's API received.
type apiRequest struct {
	Method, Path, Auth, Accept, ContentType string
	Body                                    map[string]any
}

// fakeGitHub stands in for GitHub's API, recording every request and
// answering with code.
type fakeGitHub struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []apiRequest
	code int
	got  chan apiRequest
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{code: http.StatusCreated, got: make(chan apiRequest, 100)}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := apiRequest{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"),
			Accept: r.Header.Get("Accept"), ContentType: r.Header.Get("Content-Type")}
		json.Unmarshal(b, &req.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		code := f.code
		f.mu.Unlock()
		f.got <- req
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code >= 300 {
			io.WriteString(w, `{"message": "No commit found for SHA: x", "documentation_url": "https://docs.github.com/rest"}`)
			return
		}
		io.WriteString(w, `{"id": 1, "state": "pending", "context": "kiln/pkg"}`)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGitHub) requests() []apiRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]apiRequest(nil), f.reqs...)
}

func (f *fakeGitHub) setCode(code int) {
	f.mu.Lock()
	f.code = code
	f.mu.Unlock()
}

func statusRequest(path, state, description string) apiRequest {
	return apiRequest{
		Method: "POST", Path: path, Auth: "Bearer " + ghToken,
		Accept: "application/vnd.github.v3+json", ContentType: "application/json",
		Body: map[string]any{
			"state":       state,
			"target_url":  "http://ci.example.org/builders/pkg/builds/3",
			"description": description,
			"context":     "kiln/pkg",
		},
	}
}

func testReport(event ci.ReportEvent, result ci.Result, stamps ...ci.SourceStamp) *ci.Report {
	b := &ci.Build{ID: 7, Number: 3, BuilderID: 1, Results: result, Complete: event == ci.BuildFinished, Properties: ci.Properties{}}
	if result != ci.Success {
		b.StateString = "failed compile"
	}
	return &ci.Report{
		Event: event, Build: b, Builder: &ci.Builder{ID: 1, Name: "pkg"}, Worker: "w1",
		SourceStamps: stamps, URL: "http://ci.example.org/builders/pkg/builds/3", Title: "Ideascube",
	}
}

func TestGitHubStatus_Report(t *testing.T) {
	stamp := ci.SourceStamp{Repository: ideascube, Branch: "master", Revision: sha1}
	const path1 = "/repos/ideascube/ideascube/statuses/" + sha1
	tests := []struct {
		name string
		rep  func() *ci.Report
		want []apiRequest
	}{
		{"Started", func() *ci.Report { return testReport(ci.BuildStarted, ci.Success, stamp) },
			[]apiRequest{statusRequest(path1, "pending", "Build #3 started.")}},
		{"Success", func() *ci.Report { return testReport(ci.BuildFinished, ci.Success, stamp) },
			[]apiRequest{statusRequest(path1, "success", "Build #3 completed successfully.")}},
		{"Warnings", func() *ci.Report { return testReport(ci.BuildFinished, ci.Warnings, stamp) },
			[]apiRequest{statusRequest(path1, "success", "Build #3 completed with warnings: failed compile")}},
		{"Failure", func() *ci.Report { return testReport(ci.BuildFinished, ci.Failure, stamp) },
			[]apiRequest{statusRequest(path1, "failure", "Build #3 failed: failed compile")}},
		{"Exception", func() *ci.Report { return testReport(ci.BuildFinished, ci.Exception, stamp) },
			[]apiRequest{statusRequest(path1, "error", "Build #3 stopped with exception: failed compile")}},
		{"Cancelled", func() *ci.Report { return testReport(ci.BuildFinished, ci.Cancelled, stamp) },
			[]apiRequest{statusRequest(path1, "error", "Build #3 was cancelled: failed compile")}},
		{"GotRevision", func() *ci.Report {
			r := testReport(ci.BuildFinished, ci.Success, ci.SourceStamp{Repository: ideascube, Branch: "v1.0", Revision: "v1.0"})
			r.Build.Properties.Set("got_revision", sha2, "Git")
			return r
		}, []apiRequest{statusRequest("/repos/ideascube/ideascube/statuses/"+sha2, "success", "Build #3 completed successfully.")}},
		{"GotRevisionByCodebase", func() *ci.Report {
			r := testReport(ci.BuildFinished, ci.Success,
				ci.SourceStamp{Codebase: "app", Repository: "git@github.com:ideascube/ideascube.git", Revision: "v1"},
				ci.SourceStamp{Codebase: "tools", Repository: "ssh://git@github.com/ideascube/tools", Revision: sha1})
			r.Build.Properties.Set("got_revision", map[string]any{"app": sha2, "tools": sha1}, "Git")
			return r
		}, []apiRequest{
			statusRequest("/repos/ideascube/ideascube/statuses/"+sha2, "success", "Build #3 completed successfully."),
			statusRequest("/repos/ideascube/tools/statuses/"+sha1, "success", "Build #3 completed successfully."),
		}},
		{"TagNameNotYetResolved", func() *ci.Report {
			return testReport(ci.BuildStarted, ci.Success, ci.SourceStamp{Repository: ideascube, Branch: "v1.0", Revision: "v1.0"})
		}, nil},
		{"OtherHost", func() *ci.Report {
			return testReport(ci.BuildStarted, ci.Success, ci.SourceStamp{Repository: "https://framagit.org/ideascube/ideascube.git", Revision: sha1})
		}, nil},
		{"NotARepositoryURL", func() *ci.Report {
			return testReport(ci.BuildStarted, ci.Success, ci.SourceStamp{Repository: "ideascube", Revision: sha1})
		}, nil},
		{"NoSourceStamp", func() *ci.Report { return testReport(ci.BuildStarted, ci.Success) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := newFakeGitHub(t)
			g := &report.GitHubStatus{Token: ghToken, BaseURL: gh.URL, RepoHost: "github.com"}
			require.NoError(t, g.Report(context.Background(), tt.rep()))
			assert.Equal(t, tt.want, gh.requests())
		})
	}
}

func TestGitHubStatus_Enterprise(t *testing.T) {
	gh := newFakeGitHub(t)
	g := &report.GitHubStatus{Token: ghToken, BaseURL: gh.URL + "/api/v3", RepoHost: "ghe.example.org",
		Context: func(r *ci.Report) string { return "ci/" + r.Builder.Name + "/amd64" }}
	rep := testReport(ci.BuildStarted, ci.Success, ci.SourceStamp{Repository: "https://ghe.example.org/team/app.git", Revision: sha1})
	rep.URL = ""
	require.NoError(t, g.Report(context.Background(), rep))
	reqs := gh.requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "/api/v3/repos/team/app/statuses/"+sha1, reqs[0].Path)
	assert.Equal(t, map[string]any{"state": "pending", "description": "Build #3 started.", "context": "ci/pkg/amd64"}, reqs[0].Body)
}

func TestGitHubStatus_Errors(t *testing.T) {
	gh := newFakeGitHub(t)
	gh.setCode(http.StatusUnprocessableEntity)
	g := &report.GitHubStatus{Token: ghToken, BaseURL: gh.URL, RepoHost: "github.com"}
	err := g.Report(context.Background(), testReport(ci.BuildStarted, ci.Success, ci.SourceStamp{Repository: ideascube, Revision: sha1}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "422")
	assert.NotContains(t, err.Error(), ghToken)

	gh.Close() // the server is down
	err = g.Report(context.Background(), testReport(ci.BuildStarted, ci.Success, ci.SourceStamp{Repository: ideascube, Revision: sha1}))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), ghToken)

	assert.ErrorContains(t, (&report.GitHubStatus{}).Validate(), "Token is empty")
	assert.ErrorContains(t, (&report.GitHubStatus{Token: "x", BaseURL: "ftp://x"}).Validate(), "BaseURL")
	assert.Error(t, (&report.GitHubStatus{}).Report(context.Background(), testReport(ci.BuildStarted, ci.Success)))
}

// TestGitHubStatus_Master: a real build sets pending, then success.
func TestGitHubStatus_Master(t *testing.T) {
	gh := newFakeGitHub(t)
	cfg := echoConfig()
	cfg.Reporters = []ci.Reporter{&report.GitHubStatus{Token: ghToken, BaseURL: gh.URL, RepoHost: "github.com"}}
	m := citest.Start(t, cfg)
	b := m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Repository: ideascube, Branch: "master", Revision: sha1}})
	require.Equal(t, ci.Success, b.Results())
	url := "http://ci.example.org/builders/pkg/builds/1"
	for _, want := range []apiRequest{
		statusRequest("/repos/ideascube/ideascube/statuses/"+sha1, "pending", "Build #1 started."),
		statusRequest("/repos/ideascube/ideascube/statuses/"+sha1, "success", "Build #1 completed successfully."),
	} {
		want.Body["target_url"] = url
		assert.Equal(t, want, recv(t, gh.got))
	}
}
