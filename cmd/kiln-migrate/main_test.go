package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/postgres"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fill makes the records of a master's life in the SQLite store.
func fill(t *testing.T, s ci.Store) {
	ctx := t.Context()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123_456_000, time.UTC)
	a, err := s.EnsureBuilder(ctx, "a", "builds a", []string{"deb", "amd64"})
	require.NoError(t, err)
	_, err = s.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	w, err := s.EnsureWorker(ctx, "w")
	require.NoError(t, err)
	require.NoError(t, s.SetWorkerConnected(ctx, w.ID, true, map[string]any{"host": "h"}, t0))
	for i := range 3 {
		c := &ci.Change{Author: "me", Revision: fmt.Sprint("r", i), Files: []string{"a.go", "b.go"},
			Properties: map[string]any{"event": "push"}, When: t0, DedupKey: fmt.Sprint("k", i)}
		_, err := s.AddChange(ctx, c)
		require.NoError(t, err)
		props := ci.Properties{}
		props.Set("branch", "main", ci.SourceScheduler)
		bs := &ci.Buildset{Reason: "change", SubmittedAt: t0, SourceStamps: []ci.SourceStamp{{ID: c.SourceStampID}},
			Properties: props, ExternalID: fmt.Sprint("ext", i)}
		reqs, err := s.AddBuildset(ctx, bs, []int64{a.ID}, 0)
		require.NoError(t, err)
		b := &ci.Build{BuilderID: a.ID, WorkerID: w.ID, StartedAt: t0, Properties: props.Clone()}
		require.NoError(t, s.StartBuild(ctx, b, []int64{reqs[0].ID}))
		st := &ci.StepRecord{BuildID: b.ID, Name: "compile", StartedAt: t0, URLs: []ci.StepURL{{Name: "doc", URL: "https://example.org"}}}
		require.NoError(t, s.AddStep(ctx, st))
		l := &ci.Log{StepID: st.ID, Name: "stdio", Type: ci.LogStream}
		require.NoError(t, s.AddLog(ctx, l))
		_, _, err = s.FinishLog(ctx, l.ID, strings.Repeat(fmt.Sprintf("ocompiling %d\n", i), 500))
		require.NoError(t, err)
		set := &ci.TestResultSet{BuildID: b.ID, StepID: st.ID, Description: "unit", Category: ci.TestPassFail, ValueUnit: ci.TestUnitBoolean}
		require.NoError(t, s.AddTestResultSet(ctx, set))
		ns := int64(1500 + i)
		require.NoError(t, s.AddTestResults(ctx, set.ID, []*ci.TestResult{
			{TestName: "TestA", TestCodePath: "a_test.go", Line: 7, DurationNS: &ns, Value: "1"},
			{TestName: fmt.Sprint("TestB", i), Value: "0"},
		}))
		passed, failed := 1, 1
		require.NoError(t, s.CompleteTestResultSet(ctx, set.ID, &passed, &failed))
		if i == 2 {
			// A running build, triggered by the first, with a pending request.
			_, err = s.AddBuildset(ctx, &ci.Buildset{Reason: "trigger", SubmittedAt: t0, ParentBuildID: b.ID - 2}, []int64{a.ID}, 5)
			require.NoError(t, err)
			continue
		}
		b.Results, b.Complete, b.CompleteAt = ci.Success, true, t0.Add(time.Minute)
		_, err = s.FinishBuild(ctx, b, false)
		require.NoError(t, err)
	}
	_, err = s.DeleteBuildLogs(ctx, []int64{1})
	require.NoError(t, err)
	require.NoError(t, s.SetState(ctx, "nightly", "last", []byte{0, 1, 2}))
}

func TestCopy(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.sqlite")
	src, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	fill(t, src)
	require.NoError(t, src.Close())
	src, err = sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer src.Close()

	url := pgtest.NewDatabase(t)
	var out strings.Builder
	require.NoError(t, run(ctx, []string{"-sqlite", path, "-database", url}, &out))
	assert.Contains(t, out.String(), "builds                 3 rows")
	assert.NotContains(t, out.String(), pgtest.Password)

	dst, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer dst.Close()
	same(t, src, dst)

	// New records follow the copied ones.
	pending, err := dst.PendingRequests(ctx)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	b := &ci.Build{BuilderID: pending[0].BuilderID}
	require.NoError(t, dst.StartBuild(ctx, b, []int64{pending[0].ID}))
	assert.Equal(t, 4, b.Number)
	assert.Equal(t, int64(4), b.ID)
	c := &ci.Change{Revision: "new"}
	_, err = dst.AddChange(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, int64(4), c.ID)
	added, err := dst.AddChange(ctx, &ci.Change{DedupKey: "k1"})
	require.NoError(t, err)
	assert.False(t, added, "dedup keys are copied")

	// A second copy into the same database is refused, storing nothing.
	err = run(ctx, []string{"-sqlite", path, "-database", url}, &out)
	assert.ErrorContains(t, err, "not empty")
}

// same checks that two stores hold the same records, read through the
// Store interface.
func same(t *testing.T, a, b ci.Store) {
	ctx := t.Context()
	ab, err := a.ListBuilders(ctx)
	require.NoError(t, err)
	bb, err := b.ListBuilders(ctx)
	require.NoError(t, err)
	assert.Equal(t, ab, bb)
	aw, err := a.ListWorkers(ctx)
	require.NoError(t, err)
	bw, err := b.ListWorkers(ctx)
	require.NoError(t, err)
	assert.Equal(t, aw, bw)
	ac, _, err := a.ListChanges(ctx, ci.Query{})
	require.NoError(t, err)
	bc, _, err := b.ListChanges(ctx, ci.Query{})
	require.NoError(t, err)
	assert.Equal(t, ac, bc)
	as, _, err := a.ListBuildsets(ctx, ci.BuildsetQuery{})
	require.NoError(t, err)
	bs, _, err := b.ListBuildsets(ctx, ci.BuildsetQuery{})
	require.NoError(t, err)
	assert.Equal(t, as, bs)
	ar, _, err := a.ListRequests(ctx, ci.RequestQuery{})
	require.NoError(t, err)
	br, _, err := b.ListRequests(ctx, ci.RequestQuery{})
	require.NoError(t, err)
	assert.Equal(t, ar, br)
	abuilds, _, err := a.ListBuilds(ctx, ci.BuildQuery{})
	require.NoError(t, err)
	bbuilds, _, err := b.ListBuilds(ctx, ci.BuildQuery{})
	require.NoError(t, err)
	assert.Equal(t, abuilds, bbuilds)
	for _, build := range abuilds {
		asteps, err := a.ListSteps(ctx, build.ID)
		require.NoError(t, err)
		bsteps, err := b.ListSteps(ctx, build.ID)
		require.NoError(t, err)
		assert.Equal(t, asteps, bsteps)
		for _, st := range asteps {
			alogs, err := a.ListLogs(ctx, st.ID)
			require.NoError(t, err)
			blogs, err := b.ListLogs(ctx, st.ID)
			require.NoError(t, err)
			assert.Equal(t, alogs, blogs)
			for _, l := range alogs {
				at, err := a.LogLines(ctx, l.ID, 0, -1)
				require.NoError(t, err)
				bt, err := b.LogLines(ctx, l.ID, 0, -1)
				require.NoError(t, err)
				assert.Equal(t, at, bt)
			}
		}
	}
	asets, _, err := a.ListTestResultSets(ctx, ci.TestResultSetQuery{})
	require.NoError(t, err)
	bsets, _, err := b.ListTestResultSets(ctx, ci.TestResultSetQuery{})
	require.NoError(t, err)
	assert.Equal(t, asets, bsets)
	require.NotEmpty(t, asets)
	for _, set := range asets {
		ar, _, err := a.ListTestResults(ctx, set.ID, ci.Query{})
		require.NoError(t, err)
		br, _, err := b.ListTestResults(ctx, set.ID, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, ar, br)
	}
	an, err := a.LogBytes(ctx)
	require.NoError(t, err)
	bn, err := b.LogBytes(ctx)
	require.NoError(t, err)
	assert.Equal(t, an, bn)
	av, err := a.GetState(ctx, "nightly", "last")
	require.NoError(t, err)
	bv, err := b.GetState(ctx, "nightly", "last")
	require.NoError(t, err)
	assert.Equal(t, av, bv)
}

func TestRun_Errors(t *testing.T) {
	var out strings.Builder
	t.Setenv("KILN_DATABASE_URL", "")
	err := run(context.Background(), []string{"-sqlite", "x"}, &out)
	assert.ErrorContains(t, err, "no target database")
	err = run(context.Background(), []string{"-sqlite", filepath.Join(t.TempDir(), "missing.sqlite"), "-database", "postgres://u:pw-s3cret@127.0.0.1:1/db"}, &out)
	assert.ErrorContains(t, err, "source")
	path := filepath.Join(t.TempDir(), "state.sqlite")
	s, err := sqlite.Open(t.Context(), path)
	require.NoError(t, err)
	s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = run(ctx, []string{"-sqlite", path, "-database", "postgres://u:pw-s3cret@127.0.0.1:1/db"}, &out)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "pw-s3cret")
}
