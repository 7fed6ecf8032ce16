package webui_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/webui"
)

// TestAPI_WorkerControl: Buildbot's control methods on workers, under
// their own authorization (Authz.Workers), their effect in the worker's
// API shape.
func TestAPI_WorkerControl(t *testing.T) {
	authz := admin
	authz.Workers = webui.LoggedIn
	u := startUI(t, uiOptions{authz: authz})

	worker := func() map[string]any {
		var ans struct {
			Workers []map[string]any `json:"workers"`
		}
		res := u.do(t, req{path: "api/v2/workers/w1"})
		require.Equal(t, http.StatusOK, res.code, res.body)
		require.NoError(t, json.Unmarshal([]byte(res.body), &ans))
		require.Len(t, ans.Workers, 1)
		return ans.Workers[0]
	}
	assert.Equal(t, false, worker()["paused"])

	res, ans := u.jsonrpc(t, "api/v2/workers/w1", "pause", map[string]any{"reason": "disk full"}, false)
	assert.Equal(t, http.StatusUnauthorized, res.code, "a login is needed")
	assert.Equal(t, false, worker()["paused"])

	res, ans = u.jsonrpc(t, "api/v2/workers/w1", "pause", map[string]any{"reason": "disk full"}, true)
	require.Equal(t, http.StatusOK, res.code, res.body)
	assert.Contains(t, ans, "result")
	assert.Nil(t, ans["result"])
	assert.Equal(t, true, worker()["paused"])
	st := u.m.Workers()[0]
	assert.Equal(t, "disk full", st.PauseReason)

	res, _ = u.jsonrpc(t, "api/v2/workers/w1", "unpause", map[string]any{}, true)
	require.Equal(t, http.StatusOK, res.code, res.body)
	assert.Equal(t, false, worker()["paused"])

	// By ID too; stop marks the worker graceful, then it is disconnected.
	id := worker()["workerid"].(float64)
	res, _ = u.jsonrpc(t, "api/v2/workers/"+itoa(int64(id)), "stop", map[string]any{}, true)
	require.Equal(t, http.StatusOK, res.code, res.body)
	u.m.WaitFor(t, "w1 to be disconnected", func() bool { return !u.m.Workers()[0].Connected })
	// The API shows it once the store has it.
	u.m.WaitFor(t, "the API to show w1 disconnected", func() bool { return len(worker()["connected_to"].([]any)) == 0 })

	res, ans = u.jsonrpc(t, "api/v2/workers/w1", "kill", map[string]any{}, true)
	assert.Equal(t, http.StatusConflict, res.code, "w1 is not connected")
	assert.Contains(t, ans["error"].(map[string]any)["message"], "worker not connected")
	res, _ = u.jsonrpc(t, "api/v2/workers/w2", "kill", map[string]any{}, true)
	assert.Equal(t, http.StatusOK, res.code, res.body)
	u.m.WaitFor(t, "w2 to be disconnected", func() bool { return !u.m.Workers()[1].Connected })

	res, _ = u.jsonrpc(t, "api/v2/workers/nope", "pause", map[string]any{}, true)
	assert.Equal(t, http.StatusNotFound, res.code)
	res, ans = u.jsonrpc(t, "api/v2/workers/w1", "reboot", map[string]any{}, true)
	assert.Equal(t, http.StatusBadRequest, res.code)
	assert.Equal(t, float64(-32601), ans["error"].(map[string]any)["code"])

	// Off by default.
	ro := startUI(t, uiOptions{authz: admin})
	res, _ = ro.jsonrpc(t, "api/v2/workers/w1", "pause", map[string]any{}, true)
	assert.Equal(t, http.StatusForbidden, res.code)
	assert.False(t, ro.m.Workers()[0].Paused)
}

// TestPages_WorkerControl: the workers' pages show what was asked of a
// worker (paused, stopping) and, behind Authz.Workers, the buttons to
// pause, unpause, stop gracefully and kill it, whose forms are protected
// as the other pages' actions.
func TestPages_WorkerControl(t *testing.T) {
	authz := admin
	authz.Workers = webui.LoggedIn
	u := startUI(t, uiOptions{authz: authz})
	form := "application/x-www-form-urlencoded"

	page := u.do(t, req{path: "workers"}).body
	assert.Contains(t, page, `<form method="post" action="/ci/workers/w1/pause" class="inline"><input type="hidden" name="back" value="workers"><button type="submit" name="pause"`)
	assert.Contains(t, page, `action="/ci/workers/w2/stop"`)
	assert.Contains(t, page, `action="/ci/workers/w2/kill"`)
	assert.NotContains(t, page, `/unpause"`)
	assert.Contains(t, page, "needs a login: the browser will ask for it")

	res := u.do(t, req{method: "POST", path: "workers/w1/pause", contentType: form, body: "back=workers"})
	assert.Equal(t, http.StatusUnauthorized, res.code, "a login is needed")
	res = u.do(t, req{method: "POST", path: "workers/w1/pause", contentType: form, body: "back=workers", login: true, fetchSite: "cross-site"})
	assert.Equal(t, http.StatusForbidden, res.code, "cross-site forms are refused")
	res = u.do(t, req{method: "POST", path: "workers/w1/pause", contentType: form, body: "back=workers", login: true, origin: "https://evil.example"})
	assert.Equal(t, http.StatusForbidden, res.code)
	assert.False(t, u.m.Workers()[0].Paused)

	res = u.do(t, req{method: "POST", path: "workers/w1/pause", contentType: form, body: "back=workers", login: true, fetchSite: "same-origin"})
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	assert.Equal(t, subPath+"workers", res.header.Get("Location"), "back to the list")
	require.True(t, u.m.Workers()[0].Paused)
	assert.Equal(t, "paused by "+alice, u.m.Workers()[0].PauseReason)
	page = u.do(t, req{path: "workers/w1", login: true}).body
	assert.Contains(t, page, `<span class="worker-flag paused">paused</span>`)
	assert.Contains(t, page, `<div class="muted">paused by alice</div>`)
	assert.Contains(t, page, `<form method="post" action="/ci/workers/w1/unpause" class="inline"><button type="submit" name="unpause"`)
	assert.NotContains(t, page, `/w1/pause"`)
	assert.NotContains(t, page, "needs a login", "the request carries one")

	res = u.do(t, req{method: "POST", path: "workers/w1/unpause", contentType: form, login: true})
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	assert.Equal(t, subPath+"workers/w1", res.header.Get("Location"), "back to the worker's page")
	assert.False(t, u.m.Workers()[0].Paused)

	// A pause reason from the API is text on the page.
	_, _ = u.jsonrpc(t, "api/v2/workers/w1", "pause", map[string]any{"reason": hostile}, true)
	page = u.do(t, req{path: "workers"}).body
	assert.NotContains(t, page, hostile)
	assert.Contains(t, page, "&lt;script&gt;")
	res = u.do(t, req{method: "POST", path: "workers/w1/unpause", contentType: form, login: true})
	require.Equal(t, http.StatusSeeOther, res.code, res.body)

	// Stopping a busy worker: it finishes its build first, and says so.
	long := u.m.Submit(t, citest_Request("count", map[string]any{"lines": 600}))
	build := waitRunning(t, u, long)
	busy := "w1"
	if build.WorkerID != u.m.Workers()[0].ID {
		busy = "w2"
	}
	res = u.do(t, req{method: "POST", path: "workers/" + busy + "/stop", contentType: form, body: "back=workers", login: true})
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	page = u.do(t, req{path: "workers/" + busy, login: true}).body
	assert.Contains(t, page, `<span class="worker-flag stopping">stopping</span>`)
	assert.NotContains(t, page, `/stop"`, "no second stop")
	assert.Contains(t, page, `action="/ci/workers/`+busy+`/kill"`)

	// Killing it ends the build as RETRY at once.
	res = u.do(t, req{method: "POST", path: "workers/" + busy + "/kill", contentType: form, login: true})
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	u.m.WaitFor(t, busy+" to be disconnected", func() bool {
		for _, w := range u.m.Workers() {
			if w.Name == busy {
				return !w.Connected
			}
		}
		return false
	})
	assert.Equal(t, ci.Retry, u.m.WaitBuild(t, build.ID).Results())
	page = u.do(t, req{path: "workers/" + busy, login: true}).body
	assert.Contains(t, page, `<span class="worker down">not connected</span>`)
	assert.NotContains(t, page, `/kill"`, "a worker not connected cannot be stopped or killed")
	res = u.do(t, req{method: "POST", path: "workers/" + busy + "/kill", contentType: form, login: true})
	assert.Equal(t, http.StatusConflict, res.code)
	assert.Contains(t, res.body, "worker not connected")

	for _, tt := range []struct {
		path string
		code int
	}{
		{"workers/w1/reboot", http.StatusNotFound},
		{"workers/nope/pause", http.StatusNotFound},
	} {
		res = u.do(t, req{method: "POST", path: tt.path, contentType: form, login: true})
		assert.Equal(t, tt.code, res.code, tt.path)
	}

	// Off by default: no buttons, and the forms are refused.
	ro := startUI(t, uiOptions{authz: admin})
	page = ro.do(t, req{path: "workers", login: true}).body
	assert.NotContains(t, page, "worker-control")
	res = ro.do(t, req{method: "POST", path: "workers/w1/pause", contentType: form, login: true})
	assert.Equal(t, http.StatusForbidden, res.code)
	assert.Contains(t, res.body, "controlling workers is turned off")
	assert.False(t, ro.m.Workers()[0].Paused)
}

// TestAPI_WorkersConfiguredOn: each worker's configured_on lists the
// builders it is configured on, in configuration order, and a builder's
// workers are those configured on it; the workers page names the same
// builders.
func TestAPI_WorkersConfiguredOn(t *testing.T) {
	u := startUI(t, uiOptions{})
	ids := map[string]float64{}
	for _, name := range []string{"pass", "fail", "count"} {
		id, ok := u.m.BuilderID(name)
		require.True(t, ok, name)
		ids[name] = float64(id)
	}
	on := func(builders ...string) []any {
		var out []any
		for _, b := range builders {
			out = append(out, map[string]any{"builderid": ids[b], "masterid": float64(1)})
		}
		return out
	}
	workers := func(path string) map[string]any {
		var ans struct {
			Workers []map[string]any `json:"workers"`
		}
		res := u.do(t, req{path: path})
		require.Equal(t, http.StatusOK, res.code, res.body)
		require.NoError(t, json.Unmarshal([]byte(res.body), &ans))
		byName := map[string]any{}
		for _, w := range ans.Workers {
			byName[w["name"].(string)] = w["configured_on"]
		}
		return byName
	}
	assert.Equal(t, map[string]any{"w1": on("pass", "count"), "w2": on("fail", "count")}, workers("api/v2/workers"))
	assert.Equal(t, map[string]any{"w1": on("pass", "count")}, workers("api/v2/workers/w1"))
	assert.Equal(t, map[string]any{"w1": on("pass", "count")}, workers("api/v2/builders/pass/workers"))
	assert.Equal(t, map[string]any{"w2": on("fail", "count")}, workers("api/v2/builders/fail/workers"))
	assert.Equal(t, map[string]any{"w1": on("pass", "count"), "w2": on("fail", "count")}, workers("api/v2/builders/count/workers"))

	res := u.do(t, req{path: "workers/w2"})
	require.Equal(t, http.StatusOK, res.code)
	assert.Contains(t, res.body, `href="`+subPath+`builders/fail"`)
	assert.Contains(t, res.body, `href="`+subPath+`builders/count"`)
	assert.NotContains(t, res.body, `href="`+subPath+`builders/pass"`)
}
