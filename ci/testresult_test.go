package ci_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// TestStepRun_AddTestResults: a step's sets are stored complete, with its
// build and step, their results in batches, and the passed and failed
// tests counted as Buildbot's test result submitter counts them.
func TestStepRun_AddTestResults(t *testing.T) {
	two := 2
	sets := []struct {
		set            ci.TestResultSet
		values         []string
		passed, failed *int
	}{
		{ci.TestResultSet{Category: ci.TestPassFail, ValueUnit: ci.TestUnitBoolean}, []string{"1", "0", "1", "x"}, ptr(2), ptr(1)},
		{ci.TestResultSet{Category: ci.TestPassOnly, ValueUnit: ci.TestUnitBoolean}, []string{"1", "1"}, ptr(2), ptr(0)},
		{ci.TestResultSet{Category: ci.TestFailOnly, ValueUnit: "message"}, []string{"bad", "worse", "worst"}, ptr(0), ptr(3)},
		{ci.TestResultSet{Category: ci.TestCodeIssue, ValueUnit: "message"}, []string{"unused"}, ptr(0), ptr(1)},
		{ci.TestResultSet{Category: ci.TestPerformance, ValueUnit: "ns"}, []string{"1200", "900"}, nil, nil},
		{ci.TestResultSet{Category: ci.TestPassFail, ValueUnit: "percent"}, []string{"1"}, nil, nil},
		// Counts given by the step are kept.
		{ci.TestResultSet{Category: ci.TestPerformance, ValueUnit: "ms", TestsPassed: &two}, []string{"3"}, ptr(2), nil},
		// More results than one batch.
		{ci.TestResultSet{Category: ci.TestPassFail, ValueUnit: ci.TestUnitBoolean}, repeat("1", 2500), ptr(2500), ptr(0)},
	}
	var stored []int64
	step := ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
		for i, tc := range sets {
			var results []*ci.TestResult
			for j, v := range tc.values {
				results = append(results, &ci.TestResult{TestName: fmt.Sprintf("T%d_%d", i, j), Value: v})
			}
			set, err := s.AddTestResults(ctx, tc.set, results)
			if err != nil {
				return ci.Exception, err
			}
			stored = append(stored, set.ID)
		}
		_, err := s.AddTestResults(ctx, ci.TestResultSet{Category: ci.TestPassFail}, []*ci.TestResult{{Value: "1"}})
		if err == nil {
			return ci.Failure, nil
		}
		_, err = s.AddTestResults(ctx, ci.TestResultSet{}, nil)
		if err == nil {
			return ci.Failure, nil
		}
		return ci.Success, nil
	})
	m := citest.Start(t, oneBuilder(ci.WithOptions(ci.StepOptions{Name: "record"}, step)))
	b := m.Build(t, citest.Request{Builder: "b1"})
	require.Equal(t, ci.Success, b.Results(), "%v %s", b.StepResults(), b.Step("record").StateString)
	require.Len(t, stored, len(sets))
	for i, tc := range sets {
		got, err := m.Store.GetTestResultSet(t.Context(), stored[i])
		require.NoError(t, err)
		assert.Equal(t, b.Record.ID, got.BuildID)
		assert.Equal(t, b.Step("record").ID, got.StepID)
		assert.Equal(t, b.Record.BuilderID, got.BuilderID)
		assert.True(t, got.Complete)
		assert.Equal(t, tc.passed, got.TestsPassed, "set %d passed", i)
		assert.Equal(t, tc.failed, got.TestsFailed, "set %d failed", i)
		results, total, err := m.Store.ListTestResults(t.Context(), stored[i], ci.Query{Limit: 1, Desc: true})
		require.NoError(t, err)
		assert.Equal(t, len(tc.values), total)
		assert.Equal(t, tc.values[len(tc.values)-1], results[0].Value, "the last result is stored")
	}
	all, total, err := m.Store.ListTestResultSets(t.Context(), ci.TestResultSetQuery{})
	require.NoError(t, err)
	assert.Equal(t, len(sets), total, "a refused set stores nothing")
	assert.Len(t, all, len(sets))
}

func ptr[T any](v T) *T { return &v }

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
