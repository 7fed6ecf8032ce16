package webui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

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
	t.Parallel()
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
		{"/api/v2/builds?order=name", 400, `cannot order builds by "name": no such field`},
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

func TestAPI_Collections(t *testing.T) {
	t.Parallel()
	u := startUI(t, uiOptions{authz: admin})
	ctx := t.Context()
	c := &ci.Change{Author: "alice", Branch: "0.9.1", Revision: "abc", Category: "new-tag", Files: []string{"a.go"},
		Properties: map[string]any{"event": "create"}}
	_, err := u.m.Master.AddChange(ctx, c)
	require.NoError(t, err)
	b := u.m.Build(t, citest.Request{Builder: "pass", SourceStamp: ci.SourceStamp{ID: c.SourceStampID}})
	u.m.Build(t, citest.Request{Builder: "fail"})
	type answer struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	list := func(path, name string, wantTotal int) []map[string]any {
		t.Helper()
		var ans map[string]json.RawMessage
		get(t, u.url+path, 200, &ans)
		var meta answer
		require.NoError(t, json.Unmarshal(ans["meta"], &meta.Meta))
		assert.Equal(t, wantTotal, meta.Meta.Total, path)
		var items []map[string]any
		require.NoError(t, json.Unmarshal(ans[name], &items), path)
		return items
	}
	// single answers one record: meta is {}, as Buildbot's.
	single := func(path, name string) map[string]any {
		t.Helper()
		var ans map[string]json.RawMessage
		get(t, u.url+path, 200, &ans)
		assert.JSONEq(t, `{}`, string(ans["meta"]), path)
		var items []map[string]any
		require.NoError(t, json.Unmarshal(ans[name], &items), path)
		require.Len(t, items, 1, path)
		return items[0]
	}
	bid := jsonNumber(b.Record.ID)

	logs := list("api/v2/builds/"+bid+"/steps/0/logs", "logs", 1)
	assert.Equal(t, "stdio", logs[0]["slug"])
	assert.Equal(t, "s", logs[0]["type"])
	logID := jsonNumber(int64(logs[0]["logid"].(float64)))
	single("api/v2/logs/"+logID, "logs")
	single("api/v2/builds/"+bid+"/steps/colours/logs/stdio", "logs")
	chunk := single("api/v2/logs/"+logID+"/contents?offset=5&limit=1", "logchunks")
	assert.Equal(t, float64(5), chunk["firstline"])
	assert.Equal(t, "o\x1b[1;32mgreen\x1b[0m <b>bold</b> \n", chunk["content"], "stream letters kept, as Buildbot's")
	raw := u.do(t, req{path: "api/v2/logs/" + logID + "/raw"})
	assert.Contains(t, raw.body, "\x1b[1;32mgreen\x1b[0m <b>bold</b> \n")
	assert.NotContains(t, raw.body, "o\x1b", "stream letters removed")

	workers := list("api/v2/workers", "workers", 2)
	assert.Equal(t, "w1", workers[0]["name"])
	assert.Equal(t, []any{map[string]any{"masterid": float64(1)}}, workers[0]["connected_to"])
	assert.Len(t, list("api/v2/workers?name=w2", "workers", 1), 1)

	reqs := list("api/v2/buildrequests?complete=true", "buildrequests", 2)
	assert.Equal(t, float64(0), reqs[0]["results"])
	assert.Len(t, list("api/v2/buildrequests?claimed=false&complete=false", "buildrequests", 0), 0)
	sets := list("api/v2/buildsets?order=-bsid&limit=1", "buildsets", 2)
	assert.Equal(t, "citest", sets[0]["reason"])
	ss := single("api/v2/buildsets/"+jsonNumber(int64(reqs[0]["buildsetid"].(float64))), "buildsets")["sourcestamps"].([]any)
	assert.Equal(t, "0.9.1", ss[0].(map[string]any)["branch"])

	changes := list("api/v2/changes", "changes", 1)
	assert.Equal(t, "0.9.1", changes[0]["branch"])
	assert.Equal(t, map[string]any{"event": []any{"create", "Change"}}, changes[0]["properties"])
	assert.Equal(t, []any{"a.go"}, changes[0]["files"])
	cb := list("api/v2/changes/"+jsonNumber(c.ID)+"/builds", "builds", 1)
	assert.Equal(t, float64(b.Record.ID), cb[0]["buildid"])

	fs := list("api/v2/forceschedulers", "forceschedulers", 1)
	assert.Equal(t, "force", fs[0]["name"])
	fields := fs[0]["all_fields"].([]any)[0].(map[string]any)["fields"].([]any)
	names := []string{}
	for _, f := range fields {
		names = append(names, f.(map[string]any)["name"].(string))
	}
	assert.Equal(t, []string{"reason", "branch", "revision", "repository", "project", "dist", "lines", "clean", "note"}, names)
	assert.Len(t, list("api/v2/builders/pass/forceschedulers", "forceschedulers", 1), 1)

	// Field selection and property selection.
	sel := list("api/v2/builds?field=buildid&field=number&property=buildername", "builds", 2)
	assert.Equal(t, map[string]any{"buildid": float64(1), "number": float64(1)}, sel[0])
	props := list("api/v2/builds?property=buildername", "builds", 2)[0]["properties"]
	assert.Equal(t, map[string]any{"buildername": []any{"pass", "Builder"}}, props)

	for _, tt := range []struct{ path, msg string }{
		{"api/v2/builds?colour=0", `cannot filter builds by "colour": no such field`},
		{"api/v2/builds?builderid__like=1", `no operator "like"`},
		{"api/v2/builds?properties=x", `cannot filter builds by "properties"`},
		{"api/v2/changes?changeid__gt=x", `changeid "x" is not a number`},
		{"api/v2/buildrequests?claimed=maybe", `claimed "maybe" is not true or false`},
		{"api/v2/builds/1/steps?order=colour", `cannot order steps by "colour": no such field`},
		{"api/v2/workers?field=colour", `workers have no field "colour"`},
	} {
		var ans map[string]string
		get(t, u.url+tt.path, 400, &ans)
		assert.Contains(t, ans["error"], tt.msg)
	}
}

// TestAPI_ListLimits: a list answers at most MaxListLimit items
// (DefaultListLimit without ?limit=), with meta.total counting them all;
// a log's contents at most MaxLogChunk lines.
func TestAPI_ListLimits(t *testing.T) {
	t.Parallel()
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{Name: "long", Workers: []string{"w1"},
			Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "seq"}, Command: []string{"seq", strconv.Itoa(webui.MaxLogChunk + 5000)}}}}},
	})
	srv := httptest.NewServer(webui.Handler(m.Master))
	t.Cleanup(srv.Close)
	const n = webui.MaxListLimit + 300
	for i := range n {
		_, err := m.Master.AddChange(t.Context(), &ci.Change{Branch: "main", Revision: strconv.Itoa(i), Comments: "change"})
		require.NoError(t, err)
	}
	var ans struct {
		Changes []map[string]any `json:"changes"`
		Meta    struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	for query, want := range map[string]int{
		"":                        webui.DefaultListLimit,
		"?limit=5000":             webui.MaxListLimit,
		"?limit=10":               10,
		"?limit=100&offset=1250":  50,
		"?limit=1000000&offset=0": webui.MaxListLimit,
	} {
		get(t, srv.URL+"/api/v2/changes"+query, http.StatusOK, &ans)
		assert.Len(t, ans.Changes, want, query)
		assert.Equal(t, n, ans.Meta.Total, query)
	}

	b := m.Build(t, citest.Request{Builder: "long"})
	require.Equal(t, ci.Success, b.Results())
	var chunks struct {
		Logchunks []struct {
			Content string `json:"content"`
		} `json:"logchunks"`
	}
	get(t, srv.URL+"/api/v2/builds/"+strconv.FormatInt(b.Record.ID, 10)+"/steps/seq/logs/stdio/contents", http.StatusOK, &chunks)
	require.Len(t, chunks.Logchunks, 1)
	assert.Equal(t, webui.MaxLogChunk, strings.Count(chunks.Logchunks[0].Content, "\n"))
}

// TestAPI_ResultSpec: every list, nested ones included, takes Buildbot's
// filters, orders, page and fields.
func TestAPI_ResultSpec(t *testing.T) {
	sh := func(name string) ci.Step {
		return &steps.ShellCommand{StepOptions: ci.StepOptions{Name: name}, Command: []string{"true"}}
	}
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{
			{Name: "three", Workers: []string{"w1"}, Steps: []ci.Step{sh("a"), sh("b"), sh("c")}},
			{Name: "fail", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "false"}, Command: []string{"false"}}}},
		},
	})
	srv := httptest.NewServer(webui.Handler(m.Master))
	t.Cleanup(srv.Close)
	for range 2 {
		m.Build(t, citest.Request{Builder: "three"})
	}
	m.Build(t, citest.Request{Builder: "fail"})
	last := m.Build(t, citest.Request{Builder: "three"})

	field := func(path, name, key string, wantTotal int) []any {
		t.Helper()
		var ans map[string]json.RawMessage
		get(t, srv.URL+"/api/v2/"+path, http.StatusOK, &ans)
		var meta struct {
			Total int `json:"total"`
		}
		require.NoError(t, json.Unmarshal(ans["meta"], &meta))
		assert.Equal(t, wantTotal, meta.Total, path)
		var items []map[string]any
		require.NoError(t, json.Unmarshal(ans[name], &items), path)
		out := []any{}
		for _, it := range items {
			out = append(out, it[key])
		}
		return out
	}
	bid := jsonNumber(last.Record.ID)
	for _, tt := range []struct {
		path, name, key string
		want            []any
		total           int
	}{
		{"builds?order=number", "builds", "buildid", []any{1.0, 3.0, 2.0, 4.0}, 4},
		{"builds?order=-number&order=-buildid", "builds", "buildid", []any{4.0, 2.0, 3.0, 1.0}, 4},
		{"builds?number__gt=1", "builds", "buildid", []any{2.0, 4.0}, 2},
		{"builds?results=2", "builds", "buildid", []any{3.0}, 1},
		{"builds?results__ne=2&order=-buildid&limit=2", "builds", "buildid", []any{4.0, 2.0}, 3},
		{"builds?state_string__contains=fail", "builds", "buildid", []any{3.0}, 1},
		{"builds?buildid__in=1,4&complete=true", "builds", "buildid", []any{1.0, 4.0}, 2},
		{"builds?buildid__notin=1,4", "builds", "buildid", []any{2.0, 3.0}, 2},
		{"builders/three/builds?order=-number&limit=1", "builds", "number", []any{3.0}, 3},
		{"builds/" + bid + "/steps?limit=2&order=-number", "steps", "name", []any{"c", "b"}, 3},
		{"builds/" + bid + "/steps?name__ne=b", "steps", "name", []any{"a", "c"}, 2},
		{"builds/" + bid + "/steps?offset=1&field=name", "steps", "name", []any{"b", "c"}, 3},
		{"builders/three/builds/3/steps?number__ge=1&order=-name", "steps", "name", []any{"c", "b"}, 2},
		{"builds/" + bid + "/steps/c/logs?slug=stdio", "logs", "slug", []any{"stdio"}, 1},
		{"builds/" + bid + "/steps/c/logs?slug=nope", "logs", "slug", []any{}, 0},
		{"builders?name__contains=hr", "builders", "name", []any{"three"}, 1},
		{"builders?order=-name", "builders", "name", []any{"three", "fail"}, 2},
		{"workers?name__in=w1,w2", "workers", "name", []any{"w1"}, 1},
		{"buildrequests?builderid=1&order=-buildrequestid&limit=1", "buildrequests", "buildrequestid", []any{4.0}, 3},
		{"buildrequests?results__gt=0", "buildrequests", "buildrequestid", []any{3.0}, 1},
		{"buildsets?reason=citest&bsid__le=2", "buildsets", "bsid", []any{1.0, 2.0}, 2},
		{"changes?order=-changeid", "changes", "changeid", []any{}, 0},
	} {
		assert.Equal(t, tt.want, field(tt.path, tt.name, tt.key, tt.total), tt.path)
	}

	// ?field= keeps only the fields named.
	var ans struct {
		Steps []map[string]any `json:"steps"`
	}
	get(t, srv.URL+"/api/v2/builds/"+bid+"/steps?field=name&field=number&limit=1", http.StatusOK, &ans)
	assert.Equal(t, []map[string]any{{"name": "a", "number": 0.0}}, ans.Steps)
}

// TestAPI_RunningState: a running build's state_string is what its
// current step says: the step's description, then the state the step
// sets, then the next step's description; the finished build's is its
// result.
func TestAPI_RunningState(t *testing.T) {
	t.Parallel()
	next1, next2 := make(chan struct{}), make(chan string)
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{Name: "b1", Workers: []string{"w1"}, Steps: []ci.Step{
			ci.WithOptions(ci.StepOptions{Name: "checkout", Description: "checking out"},
				ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
					select {
					case <-next1:
						return ci.Success, nil
					case <-ctx.Done():
						return ci.Cancelled, nil
					}
				})),
			ci.WithOptions(ci.StepOptions{Name: "compile", Description: "compiling"},
				ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
					for {
						select {
						case state, ok := <-next2:
							if !ok {
								return ci.Success, nil
							}
							s.SetStateString(state)
						case <-ctx.Done():
							return ci.Cancelled, nil
						}
					}
				})),
		}}},
	})
	srv := httptest.NewServer(webui.Handler(m.Master))
	t.Cleanup(srv.Close)
	bs := m.Submit(t, citest.Request{Builder: "b1"})
	id := m.WaitRunning(t, "b1")
	t.Cleanup(func() { m.StopBuild(context.Background(), id, "the test ended") })
	url := srv.URL + "/api/v2/builds/" + strconv.FormatInt(id, 10)

	// state waits until the build's state_string, and its last step's,
	// are want, and that step is the step called step.
	state := func(want, step string) {
		t.Helper()
		var b buildsAnswer
		var steps struct {
			Steps []map[string]any `json:"steps"`
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			get(t, url, http.StatusOK, &b)
			get(t, url+"/steps", http.StatusOK, &steps)
			require.Len(t, b.Builds, 1)
			n := len(steps.Steps)
			if b.Builds[0]["state_string"] == want && n > 0 && steps.Steps[n-1]["name"] == step && steps.Steps[n-1]["state_string"] == want {
				assert.Equal(t, false, b.Builds[0]["complete"])
				assert.Equal(t, false, steps.Steps[n-1]["complete"])
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("build state %q, steps %v; want %q in step %q", b.Builds[0]["state_string"], steps.Steps, want, step)
			}
		}
	}
	state("checking out", "checkout")
	close(next1)
	state("compiling", "compile")
	next2 <- "compiling 1 of 3"
	state("compiling 1 of 3", "compile")
	close(next2)
	m.WaitBuildset(t, bs)
	var b buildsAnswer
	get(t, url, http.StatusOK, &b)
	require.Len(t, b.Builds, 1)
	assert.Equal(t, "build successful", b.Builds[0]["state_string"])
}
