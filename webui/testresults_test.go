package webui_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// The fields and JSON types of Buildbot's test_result_set and test_result
// (master/buildbot/data/test_result_sets.py, test_results.py).
var (
	testResultSetShape = shape{"test_result_setid": "integer", "builderid": "integer", "buildid": "integer", "stepid": "integer",
		"description": "string?", "category": "string", "value_unit": "string", "tests_passed": "integer?",
		"tests_failed": "integer?", "complete": "boolean"}
	testResultShape = shape{"test_resultid": "integer", "builderid": "integer", "test_result_setid": "integer",
		"test_name": "string?", "test_code_path": "string?", "line": "integer?", "duration_ns": "integer?", "value": "string"}
)

// unitReport is the JUnit XML the "tests" builder's command writes: two
// passed tests, one failed with a file and line, one skipped.
const unitReport = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="example.org/calc" tests="4" failures="1">
    <testcase classname="calc" name="TestAdd" time="0.25"/>
    <testcase classname="calc" name="TestSub" time="1.5" file="calc/sub_test.go" line="42"><failure message="got 3, want 1"/></testcase>
    <testcase classname="calc" name="TestMul" time="0"/>
    <testcase classname="calc" name="TestSlow"><skipped/></testcase>
  </testsuite>
</testsuites>
`

// withTests adds the builder "tests": a command writes two JUnit reports
// on the worker, and a JUnit step records them.
func withTests(cfg *ci.MasterConfig) {
	cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: "tests", Workers: []string{"w2"}, Steps: []ci.Step{
		&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "go test"},
			Command: []string{"sh", "-c", `printf '%s' "$1" > unit.xml && printf '%s' "$2" > lint.xml`, "sh", unitReport,
				`<testsuite name="lint"><testcase name="vet" file="main.go"/></testsuite>`}},
		&steps.JUnit{Reports: []string{"unit.xml", "lint.xml"}},
	}})
}

// TestAPI_TestResults is the end-to-end test of test results: a build's
// command writes JUnit XML on the worker, the JUnit step records it, and
// every test result path of Buildbot's API lists it, with Buildbot's
// shapes and the result spec of any list.
func TestAPI_TestResults(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin, changeCfg: withTests})
	b1 := u.m.Build(t, citest.Request{Builder: "tests"})
	require.Equal(t, ci.Failure, b1.Results(), b1.Log("junit", "junit"))
	assert.Equal(t, "3 passed, 1 failed, 1 skipped (failure)", b1.Step("junit").StateString)
	b2 := u.m.Build(t, citest.Request{Builder: "tests"})
	other := u.m.Build(t, citest.Request{Builder: "pass"})
	api := u.url + "api/v2/"
	bid1, bid2 := jsonNumber(b1.Record.ID), jsonNumber(b2.Record.ID)
	step1 := jsonNumber(b1.Step("junit").ID)

	sets, meta := getAPI(t, api+"test_result_sets", "test_result_sets")
	require.Len(t, sets, 4, "two sets per build")
	assert.Equal(t, map[string]any{"total": 4.0}, meta)
	for _, s := range sets {
		assertShape(t, testResultSetShape, s, "test_result_sets")
	}
	unit := sets[0]
	assert.Equal(t, map[string]any{"test_result_setid": unit["test_result_setid"], "builderid": unit["builderid"],
		"buildid": float64(b1.Record.ID), "stepid": float64(b1.Step("junit").ID), "description": "unit.xml",
		"category": "pass_fail", "value_unit": "boolean", "tests_passed": 2.0, "tests_failed": 1.0, "complete": true}, unit)
	assert.Equal(t, "lint.xml", sets[1]["description"])
	assert.Equal(t, 1.0, sets[1]["tests_passed"])
	unitID := jsonNumber(int64(unit["test_result_setid"].(float64)))
	builderID := jsonNumber(int64(unit["builderid"].(float64)))

	ids := func(path string) []any {
		t.Helper()
		items, meta := getAPI(t, api+path, "test_result_sets")
		out := []any{}
		for _, it := range items {
			assertShape(t, testResultSetShape, it, path)
			out = append(out, it["test_result_setid"])
		}
		if total, ok := meta["total"]; ok && len(items) < 4 {
			assert.LessOrEqual(t, float64(len(items)), total.(float64), path)
		}
		return out
	}
	all := []any{sets[0]["test_result_setid"], sets[1]["test_result_setid"], sets[2]["test_result_setid"], sets[3]["test_result_setid"]}
	for _, tt := range []struct {
		path string
		want []any
	}{
		{"test_result_sets/" + unitID, all[:1]},
		{"builds/" + bid1 + "/test_result_sets", all[:2]},
		{"builds/" + bid2 + "/test_result_sets", all[2:]},
		{"builds/" + jsonNumber(other.Record.ID) + "/test_result_sets", []any{}},
		{"steps/" + step1 + "/test_result_sets", all[:2]},
		{"builds/" + bid1 + "/steps/junit/test_result_sets", all[:2]},
		{"builds/" + bid1 + "/steps/1/test_result_sets", all[:2]},
		{"builds/" + bid1 + "/steps/0/test_result_sets", []any{}},
		{"builders/tests/builds/2/steps/junit/test_result_sets", all[2:]},
		{"builders/tests/test_result_sets", all},
		{"builders/" + builderID + "/test_result_sets", all},
		{"builders/pass/test_result_sets", []any{}},
		// The result spec, as on any list.
		{"test_result_sets?order=-test_result_setid&limit=2", []any{all[3], all[2]}},
		{"test_result_sets?offset=3", all[3:]},
		{"test_result_sets?buildid=" + bid2, all[2:]},
		{"test_result_sets?complete=true&tests_failed__gt=0", []any{all[0], all[2]}},
		{"test_result_sets?complete=false", []any{}},
		{"test_result_sets?description=lint.xml&order=-buildid", []any{all[3], all[1]}},
		{"builders/tests/test_result_sets?stepid=" + step1 + "&description__contains=unit", all[:1]},
		{"builds/" + bid1 + "/test_result_sets?buildid=" + bid2, []any{}},
	} {
		assert.Equal(t, tt.want, ids(tt.path), tt.path)
	}
	_, meta = getAPI(t, api+"test_result_sets/"+unitID, "test_result_sets")
	assert.Equal(t, map[string]any{}, meta, "one record's meta is {}")
	_, meta = getAPI(t, api+"test_result_sets?order=-test_result_setid&limit=2", "test_result_sets")
	assert.Equal(t, map[string]any{"total": 4.0}, meta, "the total counts the whole list")

	// The results of a set.
	results, meta := getAPI(t, api+"test_result_sets/"+unitID+"/results", "test_results")
	assert.Equal(t, map[string]any{"total": 3.0}, meta, "the skipped test is not stored")
	require.Len(t, results, 3)
	for _, r := range results {
		assertShape(t, testResultShape, r, "results")
		assert.Equal(t, unit["test_result_setid"], r["test_result_setid"])
		assert.Equal(t, unit["builderid"], r["builderid"])
	}
	assert.Equal(t, "calc.TestAdd", results[0]["test_name"])
	assert.Nil(t, results[0]["test_code_path"])
	assert.Nil(t, results[0]["line"])
	assert.Equal(t, 250_000_000.0, results[0]["duration_ns"])
	assert.Equal(t, "1", results[0]["value"])
	assert.Equal(t, "calc.TestSub", results[1]["test_name"])
	assert.Equal(t, "calc/sub_test.go", results[1]["test_code_path"])
	assert.Equal(t, 42.0, results[1]["line"])
	assert.Equal(t, "0", results[1]["value"])
	assert.Equal(t, 0.0, results[2]["duration_ns"])

	failed, meta := getAPI(t, api+"test_result_sets/"+unitID+"/results?value=0&field=test_name&field=line", "test_results")
	assert.Equal(t, []map[string]any{{"test_name": "calc.TestSub", "line": 42.0}}, failed)
	assert.Equal(t, map[string]any{"total": 1.0}, meta)
	byName, _ := getAPI(t, api+"test_result_sets/"+unitID+"/results?order=-test_name&limit=2&field=test_name", "test_results")
	assert.Equal(t, []map[string]any{{"test_name": "calc.TestSub"}, {"test_name": "calc.TestMul"}}, byName)
	slow, _ := getAPI(t, api+"test_result_sets/"+unitID+"/results?duration_ns__ge=1000000000&field=test_name", "test_results")
	assert.Equal(t, []map[string]any{{"test_name": "calc.TestSub"}}, slow)
	none, meta := getAPI(t, api+"test_result_sets/999/results", "test_results")
	assert.Empty(t, none, "a set that does not exist has no results, as in Buildbot")
	assert.Equal(t, map[string]any{"total": 0.0}, meta)
	raw, meta := getAPI(t, api+"test_result_sets/"+unitID+"/raw_results", "test_raw_results")
	assert.Empty(t, raw, "Kiln keeps no raw results")
	assert.Equal(t, map[string]any{"total": 0.0}, meta)

	// A builder's distinct test names and code paths.
	var names struct {
		Names []string       `json:"test_names"`
		Meta  map[string]any `json:"meta"`
	}
	get(t, api+"builders/tests/test_names", http.StatusOK, &names)
	assert.Equal(t, []string{"calc.TestAdd", "calc.TestMul", "calc.TestSub", "vet"}, names.Names)
	assert.Equal(t, map[string]any{"total": 4.0}, names.Meta)
	get(t, api+"builders/tests/test_names?limit=2&offset=1", http.StatusOK, &names)
	assert.Equal(t, []string{"calc.TestMul", "calc.TestSub"}, names.Names)
	var paths struct {
		Paths []string       `json:"test_code_paths"`
		Meta  map[string]any `json:"meta"`
	}
	get(t, api+"builders/"+builderID+"/test_code_paths", http.StatusOK, &paths)
	assert.Equal(t, []string{"calc/sub_test.go", "main.go"}, paths.Paths)
	get(t, api+"builders/pass/test_code_paths", http.StatusOK, &paths)
	assert.Equal(t, []string{}, paths.Paths)

	specs, _ := getAPI(t, api+"application.spec", "specs")
	var spec []string
	for _, s := range specs {
		spec = append(spec, s["path"].(string)+" "+s["type"].(string))
	}
	for _, p := range []string{
		"test_result_sets test_result_set", "test_result_sets/n:setid test_result_set",
		"test_result_sets/n:setid/results test_result", "test_result_sets/n:setid/raw_results test_raw_result",
		"builders/i:builder/test_names string", "builders/i:builder/test_code_paths string",
		"builds/n:id/steps/i:step/test_result_sets test_result_set", "steps/n:stepid/test_result_sets test_result_set",
	} {
		assert.Contains(t, spec, p)
	}

	for _, tt := range []struct {
		path   string
		status int
		msg    string
	}{
		{"test_result_sets/999", http.StatusNotFound, "no test result set 999"},
		{"test_result_sets/999/raw_results", http.StatusNotFound, "no test result set 999"},
		{"test_result_sets/x", http.StatusBadRequest, `setid "x" is not a number`},
		{"builds/" + bid1 + "/steps/nope/test_result_sets", http.StatusNotFound, `has no step "nope"`},
		{"builders/nope/test_names", http.StatusNotFound, `no builder "nope"`},
		{"builders/nope/test_result_sets", http.StatusNotFound, `no builder "nope"`},
		{"test_result_sets?order=colour", http.StatusBadRequest, `cannot order test_result_sets by "colour"`},
		{"test_result_sets?tests_failed=many", http.StatusBadRequest, `tests_failed "many" is not a number`},
		{"test_result_sets?buildid=x", http.StatusBadRequest, `buildid "x" is not a number`},
		{"test_result_sets/" + unitID + "/results?colour=red", http.StatusBadRequest, `cannot filter test_results by "colour"`},
		{"builders/tests/test_names?order=name", http.StatusBadRequest, `cannot order test_names by "name"`},
	} {
		var ans map[string]string
		get(t, api+tt.path, tt.status, &ans)
		assert.Contains(t, ans["error"], tt.msg, tt.path)
	}

	// Retention deletes a build's test results with it.
	_, err := u.m.Store.DeleteBuilds(t.Context(), []int64{b1.Record.ID})
	require.NoError(t, err)
	assert.Equal(t, all[2:], ids("test_result_sets"))
	get(t, api+"builders/tests/test_names", http.StatusOK, &names)
	assert.Equal(t, []string{"calc.TestAdd", "calc.TestMul", "calc.TestSub", "vet"}, names.Names, "the second build has the same tests")
}
