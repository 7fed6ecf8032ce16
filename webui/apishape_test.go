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
	masterShape    = shape{"masterid": "integer", "name": "string", "active": "boolean", "last_active": "integer"}
	schedulerShape = shape{"schedulerid": "integer", "name": "string", "enabled": "boolean", "master": "object?"}
	rootLinkShape  = shape{"name": "string"}
	specShape      = shape{"path": "string", "type": "string", "plural": "string", "type_spec": "object"}
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
		{"builds/" + bid + "/changes", "changes", changeShape, false},
		{"builders/pass/builds/1/changes", "changes", changeShape, false},
		{"sourcestamps", "sourcestamps", sourceStampShape, false},
		{"sourcestamps/" + jsonNumber(full.SourceStampID), "sourcestamps", sourceStampShape, true},
		{"sourcestamps/" + jsonNumber(full.SourceStampID) + "/changes", "changes", changeShape, false},
		{"buildrequests/1/builds", "builds", buildShape, false},
		{"workers/w1/builds", "builds", buildShape, false},
		{"builders/pass/workers", "workers", workerShape, false},
		{"builders/pass/workers/w1", "workers", workerShape, true},
		{"builders/pass/masters", "masters", masterShape, false},
		{"builders/pass/masters/1", "masters", masterShape, true},
		{"builders/pass/builds/1/steps/colours", "steps", stepShape, true},
		{"builders/pass/builds/1/steps/0/logs", "logs", logShape, false},
		{"builders/pass/builds/1/steps/colours/logs/stdio", "logs", logShape, true},
		{"builders/pass/builds/1/steps/colours/logs/stdio/contents", "logchunks", logChunkShape, true},
		{"steps/1/logs/stdio", "logs", logShape, true},
		{"steps/1/logs/stdio/contents", "logchunks", logChunkShape, true},
		{"masters", "masters", masterShape, false},
		{"masters/1", "masters", masterShape, true},
		{"masters/1/builders", "builders", builderShape, false},
		{"masters/1/builders/pass", "builders", builderShape, true},
		{"masters/1/builders/pass/workers", "workers", workerShape, false},
		{"masters/1/builders/pass/workers/w1", "workers", workerShape, true},
		{"masters/1/workers", "workers", workerShape, false},
		{"masters/1/workers/w2", "workers", workerShape, true},
		{"masters/1/schedulers", "schedulers", schedulerShape, false},
		{"masters/1/schedulers/1", "schedulers", schedulerShape, true},
		{"schedulers", "schedulers", schedulerShape, false},
		{"schedulers/1", "schedulers", schedulerShape, true},
		{"", "rootlinks", rootLinkShape, false},
		{"application.spec", "specs", specShape, false},
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

// TestAPI_Resources checks what the endpoints beyond builds, steps and
// logs answer: the master and what runs in it, source stamps, a build's
// changes and properties, and the resources Kiln keeps none of, which
// answer empty lists.
func TestAPI_Resources(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin})
	c := &ci.Change{Author: "alice", Branch: "main", Revision: "abc", Files: []string{"a.go"}}
	_, err := u.m.Master.AddChange(t.Context(), c)
	require.NoError(t, err)
	b := u.m.Build(t, citest.Request{Builder: "pass", SourceStamp: ci.SourceStamp{ID: c.SourceStampID}, Properties: map[string]any{"dist": "stretch"}})
	forced := u.m.Build(t, citest.Request{Builder: "fail"})
	api := u.url + "api/v2/"
	bid := jsonNumber(b.Record.ID)
	names := func(path, name, key string) []any {
		t.Helper()
		items, meta := getAPI(t, api+path, name)
		out := []any{}
		for _, it := range items {
			out = append(out, it[key])
		}
		if total, ok := meta["total"]; ok {
			assert.Equal(t, float64(len(items)), total, path)
		}
		return out
	}
	cid := float64(c.ID)
	for _, tt := range []struct {
		path, name, key string
		want            []any
	}{
		{"masters", "masters", "masterid", []any{1.0}},
		{"masters/1/builders", "builders", "name", []any{"pass", "fail", "count"}},
		{"masters/1/workers", "workers", "name", []any{"w1", "w2"}},
		{"masters/1/schedulers", "schedulers", "name", []any{"force"}},
		{"masters/1/changesources", "changesources", "name", []any{}},
		{"masters/1/builders/count/workers?order=-name", "workers", "name", []any{"w2", "w1"}},
		{"builders/pass/workers", "workers", "name", []any{"w1"}},
		{"builders/count/workers", "workers", "name", []any{"w1", "w2"}},
		{"schedulers", "schedulers", "name", []any{"force"}},
		{"changesources", "changesources", "name", []any{}},
		{"sourcestamps?branch=main", "sourcestamps", "ssid", []any{float64(c.SourceStampID)}},
		{"sourcestamps/" + jsonNumber(c.SourceStampID) + "/changes", "changes", "changeid", []any{cid}},
		{"builds/" + bid + "/changes", "changes", "changeid", []any{cid}},
		{"builds/" + jsonNumber(forced.Record.ID) + "/changes", "changes", "changeid", []any{}},
		{"buildrequests/" + jsonNumber(b.Record.BuildRequestID) + "/builds", "builds", "buildid", []any{float64(b.Record.ID)}},
		{"workers/w2/builds", "builds", "buildid", []any{float64(forced.Record.ID)}},
		{"builds/" + bid + "/data", "build_data", "name", []any{}},
		{"builders/pass/builds/1/data", "build_data", "name", []any{}},
		{"test_result_sets", "test_result_sets", "test_result_setid", []any{}},
		{"builds/" + bid + "/test_result_sets", "test_result_sets", "test_result_setid", []any{}},
		{"builders/pass/test_result_sets", "test_result_sets", "test_result_setid", []any{}},
		{"steps/1/test_result_sets?complete=true", "test_result_sets", "test_result_setid", []any{}},
		{"test_result_sets/1/results", "test_results", "test_resultid", []any{}},
	} {
		assert.Equal(t, tt.want, names(tt.path, tt.name, tt.key), tt.path)
	}

	props, meta := getAPI(t, api+"builds/"+bid+"/properties", "properties")
	assert.Equal(t, map[string]any{}, meta)
	require.Len(t, props, 1)
	assert.Equal(t, []any{"pass", "Builder"}, props[0]["buildername"])
	assert.Equal(t, "stretch", props[0]["dist"].([]any)[0])
	props, _ = getAPI(t, api+"builders/pass/builds/1/properties", "properties")
	assert.Equal(t, []any{"pass", "Builder"}, props[0]["buildername"])
	br, _ := getAPI(t, api+"buildrequests/"+jsonNumber(b.Record.BuildRequestID), "buildrequests")
	props, meta = getAPI(t, api+"buildsets/"+jsonNumber(int64(br[0]["buildsetid"].(float64)))+"/properties", "properties")
	assert.Equal(t, map[string]any{}, meta)
	require.Len(t, props, 1)
	assert.Equal(t, "stretch", props[0]["dist"].([]any)[0])
	assert.NotContains(t, props[0], "buildername", "a buildset's properties are those it was submitted with")

	// Logs by a builder's build and by a step's ID.
	raw := u.do(t, req{path: "api/v2/builders/pass/builds/1/steps/colours/logs/stdio/raw"})
	assert.Contains(t, raw.body, "<b>bold</b>")
	raw = u.do(t, req{path: "api/v2/steps/1/logs/stdio/raw_inline"})
	assert.Contains(t, raw.body, "<b>bold</b>")

	links := names("", "rootlinks", "name")
	for _, n := range []string{"builders", "builds", "buildrequests", "buildsets", "changes", "changesources", "forceschedulers", "masters", "schedulers", "sourcestamps", "test_result_sets", "workers"} {
		assert.Contains(t, links, n)
	}
	specs, _ := getAPI(t, api+"application.spec", "specs")
	var paths []string
	for _, s := range specs {
		paths = append(paths, s["path"].(string)+" "+s["type"].(string))
	}
	assert.Contains(t, paths, "builders/i:builder/builds/n:number/steps/i:step/logs/i:log/contents logchunk")
	assert.Contains(t, paths, "masters/n:masterid/schedulers scheduler")
	assert.Contains(t, paths, "builds/n:id/properties sourcedproperties")

	for _, tt := range []struct {
		path string
		msg  string
	}{
		{"masters/2", "no master 2"},
		{"masters/2/builders", "no master 2"},
		{"builders/pass/masters/3", "no master 3"},
		{"builders/pass/workers/w2", `builder "pass" has no worker "w2"`},
		{"schedulers/9", "no scheduler 9"},
		{"changesources/1", "no change source 1"},
		{"sourcestamps/999", "no source stamp 999"},
		{"builds/999/changes", "no build 999"},
		{"builds/999/properties", "no build 999"},
		{"builds/999/data", "no build 999"},
		{"builds/" + bid + "/data/x", `has no data "x"`},
		{"builds/999/test_result_sets", "no build 999"},
		{"test_result_sets/1", "no test result set 1"},
		{"buildrequests/999/builds", "no build request 999"},
		{"workers/nope/builds", `no worker "nope"`},
		{"steps/999/logs/stdio", "no step 999"},
	} {
		var ans map[string]string
		get(t, api+tt.path, http.StatusNotFound, &ans)
		assert.Contains(t, ans["error"], tt.msg, tt.path)
	}
}
