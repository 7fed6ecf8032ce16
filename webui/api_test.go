package webui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/webui"
)

func startAPI(t *testing.T) (*citest.Master, *httptest.Server) {
	t.Helper()
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{
			{Name: "pass", Description: "always passes", Tags: []string{"deb"}, Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "true"}, Command: []string{"true"}}}},
			{Name: "fail", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "false"}, Command: []string{"false"}}}},
		},
	})
	srv := httptest.NewServer(webui.Handler(m.Master))
	t.Cleanup(srv.Close)
	return m, srv
}

func get(t *testing.T, url string, wantStatus int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, wantStatus, resp.StatusCode, string(body))
	assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	require.NoError(t, json.Unmarshal(body, v), string(body))
}

type buildsAnswer struct {
	Builds []map[string]any `json:"builds"`
	Meta   struct {
		Total int `json:"total"`
	} `json:"meta"`
}

func TestAPI_Builds(t *testing.T) {
	m, srv := startAPI(t)
	for range 3 {
		m.Build(t, citest.Request{Builder: "pass"})
	}
	failed := m.Build(t, citest.Request{Builder: "fail"})

	var all buildsAnswer
	get(t, srv.URL+"/api/v2/builds", 200, &all)
	assert.Equal(t, 4, all.Meta.Total)
	require.Len(t, all.Builds, 4)
	first := all.Builds[0]
	for _, key := range []string{"buildid", "number", "builderid", "buildrequestid", "workerid", "masterid", "results", "complete", "state_string", "started_at", "complete_at", "properties"} {
		assert.Contains(t, first, key)
	}
	assert.Equal(t, float64(1), first["number"])
	assert.Equal(t, float64(0), first["results"])
	assert.Equal(t, true, first["complete"])
	assert.Equal(t, "build successful", first["state_string"])
	assert.IsType(t, float64(0), first["started_at"])

	var page buildsAnswer
	get(t, srv.URL+"/api/v2/builds?order=-buildid&limit=2&offset=1", 200, &page)
	assert.Equal(t, 4, page.Meta.Total)
	require.Len(t, page.Builds, 2)
	assert.Equal(t, float64(3), page.Builds[0]["buildid"])
	assert.Equal(t, float64(2), page.Builds[1]["buildid"])

	var byBuilder buildsAnswer
	get(t, srv.URL+"/api/v2/builders/fail/builds", 200, &byBuilder)
	require.Len(t, byBuilder.Builds, 1)
	assert.Equal(t, float64(failed.Record.ID), byBuilder.Builds[0]["buildid"])
	assert.Equal(t, float64(ci.Failure), byBuilder.Builds[0]["results"])
	assert.Equal(t, "failed false", byBuilder.Builds[0]["state_string"])

	var filtered buildsAnswer
	get(t, srv.URL+"/api/v2/builds?builderid="+jsonNumber(failed.Record.BuilderID)+"&complete=true", 200, &filtered)
	assert.Equal(t, 1, filtered.Meta.Total)

	var one buildsAnswer
	get(t, srv.URL+"/api/v2/builds/"+jsonNumber(failed.Record.ID), 200, &one)
	require.Len(t, one.Builds, 1)
	props := one.Builds[0]["properties"].(map[string]any)
	assert.Equal(t, []any{"fail", "Builder"}, props["buildername"])

	var steps struct {
		Steps []map[string]any `json:"steps"`
	}
	get(t, srv.URL+"/api/v2/builds/"+jsonNumber(failed.Record.ID)+"/steps", 200, &steps)
	require.Len(t, steps.Steps, 1)
	assert.Equal(t, "false", steps.Steps[0]["name"])
	assert.Equal(t, float64(ci.Failure), steps.Steps[0]["results"])
}

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestAPI_Builders(t *testing.T) {
	_, srv := startAPI(t)
	var ans struct {
		Builders []map[string]any `json:"builders"`
		Meta     struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	get(t, srv.URL+"/api/v2/builders", 200, &ans)
	assert.Equal(t, 2, ans.Meta.Total)
	require.Len(t, ans.Builders, 2)
	assert.Equal(t, "pass", ans.Builders[0]["name"])
	assert.Equal(t, "always passes", ans.Builders[0]["description"])
	assert.Equal(t, []any{"deb"}, ans.Builders[0]["tags"])
	assert.Nil(t, ans.Builders[1]["description"])
	assert.Equal(t, []any{}, ans.Builders[1]["tags"])
	get(t, srv.URL+"/api/v2/builders/pass", 200, &ans)
	require.Len(t, ans.Builders, 1)
	get(t, srv.URL+"/api/v2/builders/"+jsonNumber(int64(ans.Builders[0]["builderid"].(float64))), 200, &ans)
	assert.Equal(t, "pass", ans.Builders[0]["name"])
}

func TestAPI_Errors(t *testing.T) {
	_, srv := startAPI(t)
	tests := []struct {
		path   string
		status int
		msg    string
	}{
		{"/api/v2/builds?limit=x", 400, `bad request: limit "x" is not a non-negative number`},
		{"/api/v2/builds?order=name", 400, `cannot order builds by "name"`},
		{"/api/v2/builds?complete=maybe", 400, `complete "maybe" is not true or false`},
		{"/api/v2/builds/abc", 400, `id "abc" is not a number`},
		{"/api/v2/builds/999", 404, "no build 999"},
		{"/api/v2/builds/999/steps", 404, "no build 999"},
		{"/api/v2/builders/nope", 404, `no builder "nope"`},
		{"/api/v2/builders/999", 404, "no builder 999"},
		{"/api/v2/nothing", 404, "no API endpoint GET /api/v2/nothing"},
		{"/api/v2/builds/%3Cscript%3E", 400, `id "<script>" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var ans map[string]string
			get(t, srv.URL+tt.path, tt.status, &ans)
			assert.Contains(t, ans["error"], tt.msg)
		})
	}
	// Data from the request is escaped in the JSON answer.
	resp, err := http.Get(srv.URL + "/api/v2/builds/%3Cscript%3E")
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.NotContains(t, string(raw), "<script>")
	assert.Contains(t, string(raw), `\u003cscript\u003e`)

	// Writes are not part of this API yet.
	resp, err = http.Post(srv.URL+"/api/v2/builds", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
}
