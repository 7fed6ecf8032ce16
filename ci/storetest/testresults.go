package storetest

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// resultSet adds an incomplete pass/fail set to a step of a build.
func (f *fixture) resultSet(buildID, stepID int64, description string) *ci.TestResultSet {
	f.t.Helper()
	set := &ci.TestResultSet{BuildID: buildID, StepID: stepID, Description: description,
		Category: ci.TestPassFail, ValueUnit: ci.TestUnitBoolean}
	require.NoError(f.t, f.s.AddTestResultSet(f.ctx, set))
	return set
}

func testTestResults(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("AddAndGet", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		st := f.step(build.ID, 0, "test")
		set := f.resultSet(build.ID, st.ID, "go test ./...")
		assert.NotZero(t, set.ID)
		assert.Equal(t, b.ID, set.BuilderID, "the store fills in the build's builder")

		got, err := f.s.GetTestResultSet(f.ctx, set.ID)
		require.NoError(t, err)
		assert.Equal(t, &ci.TestResultSet{ID: set.ID, BuilderID: b.ID, BuildID: build.ID, StepID: st.ID,
			Description: "go test ./...", Category: "pass_fail", ValueUnit: "boolean"}, got,
			"a new set is incomplete, with no counts")

		results := []*ci.TestResult{
			{TestName: "TestA", TestCodePath: "a_test.go", Line: 12, DurationNS: ptr(int64(1500)), Value: "1"},
			{TestName: "TestB", Value: "0"},
			{TestCodePath: "lint/x.go", Line: 3, Value: "0"},
		}
		require.NoError(t, f.s.AddTestResults(f.ctx, set.ID, results))
		for _, r := range results {
			assert.NotZero(t, r.ID)
			assert.Equal(t, set.ID, r.SetID)
			assert.Equal(t, b.ID, r.BuilderID)
		}
		more := []*ci.TestResult{{TestName: "TestC", DurationNS: ptr(int64(0)), Value: "1"}}
		require.NoError(t, f.s.AddTestResults(f.ctx, set.ID, more), "results can come in several batches")
		require.NoError(t, f.s.CompleteTestResultSet(f.ctx, set.ID, ptr(2), ptr(2)))

		got, err = f.s.GetTestResultSet(f.ctx, set.ID)
		require.NoError(t, err)
		assert.True(t, got.Complete)
		assert.Equal(t, ptr(2), got.TestsPassed)
		assert.Equal(t, ptr(2), got.TestsFailed)

		list, total, err := f.s.ListTestResults(f.ctx, set.ID, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, 4, total)
		want := append(results, more...)
		assert.Equal(t, want, list, "results come back as stored, by ID; 0 and empty mean none")
		assert.Nil(t, list[1].DurationNS, "no duration stays unknown")
		assert.Equal(t, ptr(int64(0)), list[3].DurationNS, "a duration of 0 is kept")

		page, total, err := f.s.ListTestResults(f.ctx, set.ID, ci.Query{Limit: 2, Offset: 1, Desc: true})
		require.NoError(t, err)
		assert.Equal(t, 4, total)
		assert.Equal(t, []*ci.TestResult{want[2], want[1]}, page)

		none, total, err := f.s.ListTestResults(f.ctx, set.ID+100, ci.Query{})
		require.NoError(t, err)
		assert.Empty(t, none, "a set that does not exist has no results")
		assert.Zero(t, total)
	})
	t.Run("Errors", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		other := f.start(b.ID, f.request(b.ID))
		st := f.step(build.ID, 0, "test")

		err := f.s.AddTestResultSet(f.ctx, &ci.TestResultSet{BuildID: other.ID, StepID: st.ID, Category: "pass_fail"})
		assert.ErrorIs(t, err, ci.ErrNotFound, "the step must be of the build")
		err = f.s.AddTestResultSet(f.ctx, &ci.TestResultSet{BuildID: build.ID, StepID: st.ID + 100, Category: "pass_fail"})
		assert.ErrorIs(t, err, ci.ErrNotFound)
		_, err = f.s.GetTestResultSet(f.ctx, 999)
		assert.ErrorIs(t, err, ci.ErrNotFound)
		err = f.s.AddTestResults(f.ctx, 999, []*ci.TestResult{{TestName: "x", Value: "1"}})
		assert.ErrorIs(t, err, ci.ErrNotFound)
		assert.ErrorIs(t, f.s.CompleteTestResultSet(f.ctx, 999, nil, nil), ci.ErrNotFound)

		set := f.resultSet(build.ID, st.ID, "")
		bad := []*ci.TestResult{{TestName: "ok", Value: "1"}, {Value: "1"}}
		err = f.s.AddTestResults(f.ctx, set.ID, bad)
		require.Error(t, err, "a result naming no test is refused")
		assert.Zero(t, bad[0].ID, "and nothing is stored")
		_, total, err := f.s.ListTestResults(f.ctx, set.ID, ci.Query{})
		require.NoError(t, err)
		assert.Zero(t, total)

		require.NoError(t, f.s.CompleteTestResultSet(f.ctx, set.ID, nil, nil))
		got, err := f.s.GetTestResultSet(f.ctx, set.ID)
		require.NoError(t, err)
		assert.True(t, got.Complete)
		assert.Nil(t, got.TestsPassed, "unknown counts stay unknown")
		assert.Nil(t, got.TestsFailed)
		assert.ErrorIs(t, f.s.CompleteTestResultSet(f.ctx, set.ID, ptr(1), ptr(0)), ci.ErrConflict)
		err = f.s.AddTestResults(f.ctx, set.ID, []*ci.TestResult{{TestName: "late", Value: "1"}})
		assert.ErrorIs(t, err, ci.ErrConflict, "a complete set takes no more results")
		assert.False(t, errors.Is(err, ci.ErrNotFound))
	})
	t.Run("ListSets", func(t *testing.T) {
		f := open(t)
		a, b := f.builder("a"), f.builder("b")
		ba := f.start(a.ID, f.request(a.ID))
		bb := f.start(b.ID, f.request(b.ID))
		s1, s2 := f.step(ba.ID, 0, "unit"), f.step(ba.ID, 1, "lint")
		s3 := f.step(bb.ID, 0, "unit")
		x1 := f.resultSet(ba.ID, s1.ID, "x1")
		x2 := f.resultSet(ba.ID, s1.ID, "x2")
		x3 := f.resultSet(ba.ID, s2.ID, "x3")
		x4 := f.resultSet(bb.ID, s3.ID, "x4")
		require.NoError(t, f.s.CompleteTestResultSet(f.ctx, x2.ID, ptr(3), ptr(0)))
		x2.Complete, x2.TestsPassed, x2.TestsFailed = true, ptr(3), ptr(0)

		ids := func(q ci.TestResultSetQuery) ([]int64, int) {
			t.Helper()
			list, total, err := f.s.ListTestResultSets(f.ctx, q)
			require.NoError(t, err)
			out := []int64{}
			for _, s := range list {
				out = append(out, s.ID)
			}
			return out, total
		}
		got, total := ids(ci.TestResultSetQuery{})
		assert.Equal(t, []int64{x1.ID, x2.ID, x3.ID, x4.ID}, got)
		assert.Equal(t, 4, total)
		got, _ = ids(ci.TestResultSetQuery{BuilderID: a.ID})
		assert.Equal(t, []int64{x1.ID, x2.ID, x3.ID}, got)
		got, _ = ids(ci.TestResultSetQuery{BuildID: bb.ID})
		assert.Equal(t, []int64{x4.ID}, got)
		got, _ = ids(ci.TestResultSetQuery{StepID: s1.ID})
		assert.Equal(t, []int64{x1.ID, x2.ID}, got)
		got, _ = ids(ci.TestResultSetQuery{StepID: s1.ID, Complete: ptr(true)})
		assert.Equal(t, []int64{x2.ID}, got)
		got, total = ids(ci.TestResultSetQuery{Complete: ptr(false), Query: ci.Query{Limit: 2, Desc: true}})
		assert.Equal(t, []int64{x4.ID, x3.ID}, got)
		assert.Equal(t, 3, total, "the total counts the whole selection")
		list, _, err := f.s.ListTestResultSets(f.ctx, ci.TestResultSetQuery{StepID: s1.ID, Complete: ptr(true)})
		require.NoError(t, err)
		assert.Equal(t, []*ci.TestResultSet{x2}, list)
	})
	t.Run("NamesAndCodePaths", func(t *testing.T) {
		f := open(t)
		a, b := f.builder("a"), f.builder("b")
		ba1 := f.start(a.ID, f.request(a.ID))
		ba2 := f.start(a.ID, f.request(a.ID))
		bb := f.start(b.ID, f.request(b.ID))
		add := func(build *ci.Build, results ...*ci.TestResult) {
			t.Helper()
			set := f.resultSet(build.ID, f.step(build.ID, 0, "test").ID, "")
			require.NoError(t, f.s.AddTestResults(f.ctx, set.ID, results))
		}
		add(ba1, &ci.TestResult{TestName: "TestZ", TestCodePath: "z_test.go", Value: "1"},
			&ci.TestResult{TestName: "TestA", Value: "1"}, &ci.TestResult{TestName: "Testb", Value: "1"})
		add(ba2, &ci.TestResult{TestName: "TestA", TestCodePath: "a_test.go", Value: "0"},
			&ci.TestResult{TestCodePath: "a_test.go", Line: 4, Value: "0"})
		add(bb, &ci.TestResult{TestName: "TestOther", TestCodePath: "o_test.go", Value: "1"})

		names, total, err := f.s.TestNames(f.ctx, a.ID, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, []string{"TestA", "TestZ", "Testb"}, names, "distinct, in byte order, of the builder only")
		assert.Equal(t, 3, total)
		names, total, err = f.s.TestNames(f.ctx, a.ID, ci.Query{Limit: 1, Offset: 1, Desc: true})
		require.NoError(t, err)
		assert.Equal(t, []string{"TestZ"}, names)
		assert.Equal(t, 3, total)
		paths, total, err := f.s.TestCodePaths(f.ctx, a.ID, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, []string{"a_test.go", "z_test.go"}, paths)
		assert.Equal(t, 2, total)
		paths, total, err = f.s.TestCodePaths(f.ctx, a.ID+b.ID+10, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, []string{}, paths, "a builder with no results has an empty list")
		assert.Zero(t, total)
	})
	t.Run("DeletedWithTheirBuild", func(t *testing.T) {
		f := open(t)
		a := f.builder("a")
		old := f.loggedBuild(a.ID, t0, 3)
		kept := f.loggedBuild(a.ID, at(60), 3)
		sets := map[int64]*ci.TestResultSet{}
		for _, b := range []*ci.Build{old, kept} {
			steps, err := f.s.ListSteps(f.ctx, b.ID)
			require.NoError(t, err)
			set := f.resultSet(b.ID, steps[0].ID, "")
			require.NoError(t, f.s.AddTestResults(f.ctx, set.ID, []*ci.TestResult{{TestName: "T", Value: "1"}}))
			require.NoError(t, f.s.CompleteTestResultSet(f.ctx, set.ID, ptr(1), ptr(0)))
			set.Complete, set.TestsPassed, set.TestsFailed = true, ptr(1), ptr(0)
			sets[b.ID] = set
		}
		_, err := f.s.DeleteBuilds(f.ctx, []int64{old.ID})
		require.NoError(t, err)
		_, err = f.s.GetTestResultSet(f.ctx, sets[old.ID].ID)
		assert.ErrorIs(t, err, ci.ErrNotFound, "the deleted build's sets go")
		_, total, err := f.s.ListTestResults(f.ctx, sets[old.ID].ID, ci.Query{})
		require.NoError(t, err)
		assert.Zero(t, total, "and their results")
		list, _, err := f.s.ListTestResultSets(f.ctx, ci.TestResultSetQuery{})
		require.NoError(t, err)
		assert.Equal(t, []*ci.TestResultSet{sets[kept.ID]}, list, "the other build's stay")
		_, total, err = f.s.ListTestResults(f.ctx, sets[kept.ID].ID, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, 1, total)
	})
}
