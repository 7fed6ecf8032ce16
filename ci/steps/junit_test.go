package steps_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// A report as go-junit-report and pytest write them: suites in a
// <testsuites> root, a failure, an error, a skipped case.
const junitReport = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" failures="1" errors="1">
  <testsuite name="example.org/calc" tests="4">
    <testcase classname="example.org/calc" name="TestAdd" time="0.012"></testcase>
    <testcase classname="example.org/calc" name="TestSub" time="1.5" file="calc/sub_test.go" line="42">
      <failure message="sub_test.go:44: got 3, want 1" type="">want 1</failure>
    </testcase>
    <testcase classname="example.org/calc" name="TestSkip"><skipped message="short mode"/></testcase>
    <testsuite name="nested">
      <testcase classname="tests.test_io" name="test_read" time="0"><error message="OSError"/></testcase>
    </testsuite>
  </testsuite>
  <testsuite name="other"><testcase name="TestBare"/></testsuite>
</testsuites>
`

func TestParseJUnit(t *testing.T) {
	results, counts, err := steps.ParseJUnit(strings.NewReader(junitReport), 1<<20)
	require.NoError(t, err)
	assert.Equal(t, 2, counts.Passed)
	assert.Equal(t, 2, counts.Failed)
	assert.Equal(t, 1, counts.Skipped)
	assert.Equal(t, []string{"example.org/calc.TestSub", "tests.test_io.test_read"}, counts.FailedTests)
	assert.Equal(t, "2 passed, 2 failed, 1 skipped", counts.String())
	ns := func(n int64) *int64 { return &n }
	assert.Equal(t, []*ci.TestResult{
		{TestName: "example.org/calc.TestAdd", DurationNS: ns(12_000_000), Value: "1"},
		{TestName: "example.org/calc.TestSub", TestCodePath: "calc/sub_test.go", Line: 42, DurationNS: ns(1_500_000_000), Value: "0"},
		{TestName: "tests.test_io.test_read", DurationNS: ns(0), Value: "0"},
		{TestName: "TestBare", Value: "1"},
	}, results)

	single := `<testsuite name="s"><testcase name="a" classname="c"/></testsuite>`
	results, counts, err = steps.ParseJUnit(strings.NewReader(single), 1<<20)
	require.NoError(t, err)
	assert.Equal(t, "1 passed", counts.String())
	assert.Equal(t, "c.a", results[0].TestName)
}

func TestParseJUnit_Errors(t *testing.T) {
	for _, tc := range []struct{ name, xml, want string }{
		{"NotXML", "PASS\nok example.org/calc 0.01s\n", "not a JUnit report: no root element"},
		{"Truncated", `<testsuites><testsuite><testcase name="a">`, "not JUnit XML: XML syntax error on line 1: unexpected EOF"},
		{"Syntax", `<testsuites><testcase name="a></testsuites>`, "not JUnit XML: XML syntax error on line 1"},
		{"OtherRoot", `<html><testcase name="a"/></html>`, "the root element is <html>, not <testsuites> or <testsuite>"},
		{"Unnamed", "<testsuite>\n<testcase time=\"1\"/></testsuite>", "line 2: a <testcase> has no name"},
		{"BadTime", `<testsuite><testcase name="a" time="soon"/></testsuite>`, `test "a": time "soon" is not a number of seconds`},
		{"BadLine", `<testsuite><testcase name="a" line="-3"/></testsuite>`, `test "a": line "-3" is not a line number`},
		{"TooLarge", `<testsuite><testcase name="a"/>` + strings.Repeat(`<testcase name="b"/>`, 100) + `</testsuite>`, "the report is larger than 1000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := steps.ParseJUnit(strings.NewReader(tc.xml), 1000)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

// writeReport is a command writing the report text to report.xml.
func writeReport(name, text string) *steps.ShellCommand {
	return &steps.ShellCommand{StepOptions: opts(name), Command: []string{"sh", "-c", `printf '%s' "$1" > "$2"`, "sh", text, name + ".xml"}}
}

func sets(t *testing.T, m *citest.Master, b *citest.Build, step string) []*ci.TestResultSet {
	t.Helper()
	list, _, err := m.Store.ListTestResultSets(t.Context(), ci.TestResultSetQuery{StepID: b.Step(step).ID})
	require.NoError(t, err)
	return list
}

func TestJUnit(t *testing.T) {
	t.Run("Failures", func(t *testing.T) {
		m := start(t,
			writeReport("unit", junitReport),
			writeReport("more", `<testsuite><testcase classname="x" name="TestMore"/></testsuite>`),
			&steps.JUnit{Reports: []any{"unit.xml", ci.Interpolate("%(prop:arch)s.xml")}, Description: "unit tests"},
		)
		// The second report's name is rendered from a property.
		b := m.Build(t, citest.Request{Builder: "b", Properties: map[string]any{"arch": "more"}})
		st := b.Step("junit")
		assert.Equal(t, ci.Failure, st.Results, b.Log("junit", "junit"))
		assert.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "3 passed, 2 failed, 1 skipped (failure)", st.StateString)
		log := b.Log("junit", "junit")
		assert.Contains(t, log, "unit.xml: 2 passed, 2 failed, 1 skipped\n")
		assert.Contains(t, log, "  failed: example.org/calc.TestSub\n")
		assert.Contains(t, log, "more.xml: 1 passed\n")

		got := sets(t, m, b, "junit")
		require.Len(t, got, 2)
		assert.Equal(t, "unit tests", got[0].Description)
		assert.Equal(t, ci.TestPassFail, got[0].Category)
		assert.Equal(t, ci.TestUnitBoolean, got[0].ValueUnit)
		assert.True(t, got[0].Complete)
		assert.Equal(t, 2, *got[0].TestsPassed)
		assert.Equal(t, 2, *got[0].TestsFailed)
		assert.Equal(t, b.Record.ID, got[0].BuildID)
		assert.Equal(t, 1, *got[1].TestsPassed)
		assert.Equal(t, 0, *got[1].TestsFailed)
		results, total, err := m.Store.ListTestResults(t.Context(), got[0].ID, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, 4, total, "skipped cases are not stored")
		assert.Equal(t, "example.org/calc.TestSub", results[1].TestName)
		assert.Equal(t, "0", results[1].Value)
		assert.Equal(t, "calc/sub_test.go", results[1].TestCodePath)
	})
	for _, tc := range []struct {
		name string
		step steps.JUnit
		want ci.Result
	}{
		{"WarnOnFailedTests", steps.JUnit{WarnOnFailedTests: true}, ci.Warnings},
		{"IgnoreFailedTests", steps.JUnit{IgnoreFailedTests: true}, ci.Success},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.step.Reports = "unit.xml"
			m := start(t, writeReport("unit", junitReport), &tc.step)
			b := m.Build(t, citest.Request{Builder: "b"})
			assert.Equal(t, tc.want, b.Step("junit").Results)
			assert.Len(t, sets(t, m, b, "junit"), 1, "the results are recorded all the same")
		})
	}
	t.Run("AllPassed", func(t *testing.T) {
		m := start(t, writeReport("unit", `<testsuite><testcase name="a"/><testcase name="b"/></testsuite>`), &steps.JUnit{Reports: "unit.xml"})
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Success, b.Results())
		assert.Equal(t, "2 passed", b.Step("junit").StateString)
	})
	t.Run("BadReports", func(t *testing.T) {
		m := start(t,
			writeReport("good", `<testsuite><testcase name="a"/></testsuite>`),
			writeReport("bad", `<testsuite><testcase name="a">`),
			&steps.ShellCommand{StepOptions: opts("big"), Command: []string{"sh", "-c", "head -c 5000 /dev/zero > big.xml"}},
			&steps.JUnit{Reports: []string{"good.xml", "bad.xml", "missing.xml", "big.xml"}, MaxSize: 4000},
		)
		b := m.Build(t, citest.Request{Builder: "b"})
		st := b.Step("junit")
		require.Equal(t, ci.Failure, st.Results, "a report that cannot be read fails the step, not the master")
		assert.Equal(t, "1 passed, 3 unreadable reports (failure)", st.StateString)
		log := b.Log("junit", "junit")
		assert.Contains(t, log, "bad.xml: not JUnit XML: XML syntax error on line 1: unexpected EOF\n")
		assert.Contains(t, log, "missing.xml: could not be read from the worker")
		assert.Contains(t, log, "big.xml: could not be read from the worker")
		assert.Contains(t, b.LogLines("junit", "stdio"), "missing.xml")
		assert.Len(t, sets(t, m, b, "junit"), 1, "the good report is recorded")
	})
	t.Run("Validate", func(t *testing.T) {
		err := (&steps.JUnit{MaxSize: -1}).Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Reports is not set")
		assert.Contains(t, err.Error(), "MaxSize -1 is negative")
	})
}

// A builder that runs Go's tests, converts their output to JUnit XML with
// go-junit-report, and records the results: failed tests make the build
// FAILURE, and the data API lists them under /api/v2/test_result_sets.
func ExampleJUnit() {
	builder := ci.BuilderConfig{
		Name:    "test",
		Workers: []string{"w"},
		Steps: []ci.Step{
			&steps.Git{RepoURL: "https://example.org/calc.git"},
			&steps.ShellCommand{
				// The JUnit step decides how failed tests count.
				StepOptions: ci.StepOptions{Name: "go test", IgnoreFailure: true},
				Command:     "go test -v ./... 2>&1 | go-junit-report -set-exit-code > report.xml",
			},
			&steps.JUnit{Reports: "report.xml", Description: "go test ./..."},
		},
	}
	fmt.Println(builder.Steps[2].Options().Name)
	// Output: junit
}
