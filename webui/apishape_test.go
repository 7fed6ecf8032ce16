package webui_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// A shape gives the JSON type of each field of a resource, from the types
// of Buildbot's spec (master/buildbot/spec/types/*.raml): "integer",
// "string", "boolean", "array", "object", with "?" for one that may be
// null. Kiln's own fields (the silence fields) are left out: they are
// omitted unless set.
type shape map[string]string

var (
	builderShape = shape{"builderid": "integer", "name": "string", "description": "string?", "tags": "array", "masterids": "array"}
	buildShape   = shape{"buildid": "integer", "number": "integer", "builderid": "integer", "buildrequestid": "integer",
		"workerid": "integer", "masterid": "integer", "started_at": "integer", "complete_at": "integer?", "complete": "boolean",
		"state_string": "string", "results": "integer?", "properties": "object"}
	stepShape = shape{"stepid": "integer", "buildid": "integer", "number": "integer", "name": "string", "started_at": "integer?",
		"complete_at": "integer?", "complete": "boolean", "state_string": "string", "results": "integer?", "hidden": "boolean", "urls": "array"}
	logShape = shape{"logid": "integer", "name": "string", "slug": "string", "stepid": "integer", "complete": "boolean",
		"num_lines": "integer", "type": "string"}
	logChunkShape = shape{"logid": "integer", "firstline": "integer", "content": "string"}
	workerShape   = shape{"workerid": "integer", "name": "string", "workerinfo": "object", "connected_to": "array",
		"configured_on": "array", "paused": "boolean", "graceful": "boolean"}
	requestShape = shape{"buildrequestid": "integer", "buildsetid": "integer", "builderid": "integer", "priority": "integer",
		"claimed": "boolean", "claimed_at": "integer?", "claimed_by_masterid": "integer?", "complete": "boolean",
		"complete_at": "integer?", "results": "integer?", "submitted_at": "integer", "waited_for": "boolean", "properties": "object"}
	buildsetShape = shape{"bsid": "integer", "external_idstring": "string?", "reason": "string", "submitted_at": "integer",
		"complete": "boolean", "complete_at": "integer?", "results": "integer?", "sourcestamps": "array",
		"parent_buildid": "integer?", "parent_relationship": "string?"}
	sourceStampShape = shape{"ssid": "integer", "branch": "string?", "codebase": "string", "project": "string",
		"repository": "string", "revision": "string?", "created_at": "integer", "patch": "object?"}
	changeShape = shape{"changeid": "integer", "author": "string?", "committer": "string?", "comments": "string",
		"branch": "string?", "revision": "string?", "revlink": "string?", "when_timestamp": "integer", "category": "string?",
		"repository": "string", "codebase": "string", "project": "string", "files": "array", "properties": "object",
		"sourcestamp": "object", "parent_changeids": "array"}
)

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		if v == float64(int64(v)) {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "?"
}

// assertShape checks that item has exactly the fields of s, each of its
// type.
func assertShape(t *testing.T, s shape, item map[string]any, what string) {
	t.Helper()
	var want, got []string
	for k := range s {
		want = append(want, k)
	}
	for k := range item {
		if k != "worker_silent_since" && k != "retry_at" && k != "silent_since" && k != "lost_at" {
			got = append(got, k)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	assert.Equal(t, want, got, "%s: fields", what)
	for k, typ := range s {
		v, ok := item[k]
		if !ok {
			continue
		}
		jt := jsonType(v)
		base, nullable := strings.CutSuffix(typ, "?")
		if jt == "null" && nullable {
			continue
		}
		assert.Equal(t, base, jt, "%s: field %s", what, k)
	}
}

// getAPI answers the items and the meta of an API path.
func getAPI(t *testing.T, url, name string) ([]map[string]any, map[string]any) {
	t.Helper()
	var ans map[string]json.RawMessage
	get(t, url, http.StatusOK, &ans)
	var items []map[string]any
	require.NoError(t, json.Unmarshal(ans[name], &items), url)
	var meta map[string]any
	require.NoError(t, json.Unmarshal(ans["meta"], &meta), url)
	return items, meta
}

// TestAPI_Shapes checks each endpoint's answer against the fields and JSON
// types of Buildbot's resource types; a single record's meta is {}.
func TestAPI_Shapes(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin})
	ctx := t.Context()
	full := &ci.Change{Author: "alice", Committer: "bob", Comments: "tag", Branch: "0.9.1", Revision: "abc",
		RevLink: "https://example.org/abc", Category: "new-tag", Repository: "https://example.org/r.git", Files: []string{"a.go"}}
	_, err := u.m.Master.AddChange(ctx, full)
	require.NoError(t, err)
	bare := &ci.Change{Comments: "nothing said"}
	_, err = u.m.Master.AddChange(ctx, bare)
	require.NoError(t, err)
	b := u.m.Build(t, citest.Request{Builder: "pass", SourceStamp: ci.SourceStamp{ID: full.SourceStampID}})
	u.m.Build(t, citest.Request{Builder: "fail"})
	bid := jsonNumber(b.Record.ID)
	api := u.url + "api/v2/"

	for _, tt := range []struct {
		path, name string
		shape      shape
		single     bool
	}{
		{"builders", "builders", builderShape, false},
		{"builders/pass", "builders", builderShape, true},
		{"builds", "builds", buildShape, false},
		{"builds/" + bid, "builds", buildShape, true},
		{"builders/pass/builds/1", "builds", buildShape, true},
		{"builds/" + bid + "/steps", "steps", stepShape, false},
		{"builds/" + bid + "/steps/0", "steps", stepShape, true},
		{"builds/" + bid + "/steps/colours/logs", "logs", logShape, false},
		{"builds/" + bid + "/steps/colours/logs/stdio", "logs", logShape, true},
		{"builds/" + bid + "/steps/colours/logs/stdio/contents", "logchunks", logChunkShape, true},
		{"workers", "workers", workerShape, false},
		{"workers/w1", "workers", workerShape, true},
		{"buildrequests", "buildrequests", requestShape, false},
		{"buildrequests/1", "buildrequests", requestShape, true},
		{"buildsets", "buildsets", buildsetShape, false},
		{"buildsets/1", "buildsets", buildsetShape, true},
		{"changes", "changes", changeShape, false},
		{"changes/" + jsonNumber(full.ID), "changes", changeShape, true},
	} {
		t.Run(tt.path, func(t *testing.T) {
			items, meta := getAPI(t, api+tt.path, tt.name)
			require.NotEmpty(t, items)
			if tt.single {
				assert.Len(t, items, 1)
				assert.Equal(t, map[string]any{}, meta)
			} else {
				assert.Equal(t, map[string]any{"total": float64(len(items))}, meta)
			}
			for _, it := range items {
				assertShape(t, tt.shape, it, tt.path)
			}
		})
	}

	// What a change does not say is null; its source stamp has its
	// creation time.
	changes, _ := getAPI(t, api+"changes", "changes")
	require.Len(t, changes, 2)
	assert.Equal(t, "alice", changes[0]["author"])
	assert.Equal(t, "0.9.1", changes[0]["branch"])
	for _, k := range []string{"author", "committer", "branch", "category", "revision", "revlink"} {
		assert.Nil(t, changes[1][k], k)
	}
	for _, c := range changes {
		ss := c["sourcestamp"].(map[string]any)
		assertShape(t, sourceStampShape, ss, "change's sourcestamp")
		assert.NotNil(t, ss["created_at"])
	}
	assert.Nil(t, changes[1]["sourcestamp"].(map[string]any)["branch"])
	sets, _ := getAPI(t, api+"buildsets", "buildsets")
	for _, s := range sets {
		for _, ss := range s["sourcestamps"].([]any) {
			assertShape(t, sourceStampShape, ss.(map[string]any), "buildset's sourcestamp")
		}
	}
}
