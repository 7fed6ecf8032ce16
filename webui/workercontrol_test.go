package webui_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
