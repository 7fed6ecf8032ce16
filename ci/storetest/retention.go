package storetest

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// loggedBuild runs a whole build of builder with one step whose log holds
// lines, finished at the given time, and returns it.
func (f *fixture) loggedBuild(builderID int64, finished time.Time, lines int) *ci.Build {
	f.t.Helper()
	b := f.start(builderID, f.request(builderID))
	l := f.log(f.step(b.ID, 0, "compile").ID, "stdio")
	var text strings.Builder
	for i := range lines {
		text.WriteString("ocompiling file number ")
		text.WriteString(strconv.Itoa(i * 7919 % 100003))
		text.WriteString(strings.Repeat("x", i%50))
		text.WriteString("\n")
	}
	_, _, err := f.s.FinishLog(f.ctx, l.ID, text.String())
	require.NoError(f.t, err)
	b.Results, b.Complete, b.CompleteAt = ci.Success, true, finished
	_, err = f.s.FinishBuild(f.ctx, b, false)
	require.NoError(f.t, err)
	return b
}

func (f *fixture) logBytes() int64 {
	f.t.Helper()
	n, err := f.s.LogBytes(f.ctx)
	require.NoError(f.t, err)
	return n
}

func testRetention(t *testing.T, open func(*testing.T) *fixture) {
	day := func(d int) time.Time { return time.Date(2026, 1, d, 12, 0, 0, 0, time.UTC) }
	t.Run("BuildsWithLogs", func(t *testing.T) {
		f := open(t)
		a, b := f.builder("a"), f.builder("b")
		var as, bs []int64
		for d := 1; d <= 5; d++ {
			as = append(as, f.loggedBuild(a.ID, day(d), 10).ID)
			bs = append(bs, f.loggedBuild(b.ID, day(d), 10).ID)
		}
		running := f.start(a.ID, f.request(a.ID)) // never listed
		_ = running
		ids, err := f.s.BuildsWithLogs(f.ctx, ci.RetentionQuery{Limit: 100})
		require.NoError(t, err)
		assert.Len(t, ids, 10)
		assert.Equal(t, as[0], ids[0], "oldest first")

		ids, err = f.s.BuildsWithLogs(f.ctx, ci.RetentionQuery{BuilderID: a.ID, CompletedBefore: day(3), Limit: 100})
		require.NoError(t, err)
		assert.Equal(t, as[:2], ids)
		ids, err = f.s.BuildsWithLogs(f.ctx, ci.RetentionQuery{BuilderID: b.ID, KeepLast: 2, Limit: 100})
		require.NoError(t, err)
		assert.Equal(t, bs[:3], ids, "all but the newest two")
		ids, err = f.s.BuildsWithLogs(f.ctx, ci.RetentionQuery{BuilderID: b.ID, KeepLast: 2, Limit: 2})
		require.NoError(t, err)
		assert.Equal(t, bs[:2], ids)
		ids, err = f.s.BuildsWithLogs(f.ctx, ci.RetentionQuery{BuilderID: b.ID, KeepLast: 9, Limit: 100})
		require.NoError(t, err)
		assert.Empty(t, ids)
	})
	t.Run("DeleteBuildLogs", func(t *testing.T) {
		f := open(t)
		a := f.builder("a")
		old := f.loggedBuild(a.ID, day(1), 500)
		kept := f.loggedBuild(a.ID, day(2), 500)
		total := f.logBytes()
		require.Greater(t, total, int64(0))
		oldBytes, err := f.s.BuildLogBytes(f.ctx, []int64{old.ID})
		require.NoError(t, err)
		both, err := f.s.BuildLogBytes(f.ctx, []int64{old.ID, kept.ID})
		require.NoError(t, err)
		assert.Equal(t, total, both)
		freed, err := f.s.DeleteBuildLogs(f.ctx, []int64{old.ID})
		require.NoError(t, err)
		assert.Equal(t, oldBytes, freed)
		assert.Equal(t, total-freed, f.logBytes())
		steps, err := f.s.ListSteps(f.ctx, old.ID)
		require.NoError(t, err)
		logs, err := f.s.ListLogs(f.ctx, steps[0].ID)
		require.NoError(t, err)
		require.Len(t, logs, 1)
		assert.Equal(t, ci.LogDeleted, logs[0].Type)
		text, err := f.s.LogLines(f.ctx, logs[0].ID, 0, -1)
		require.NoError(t, err)
		assert.Empty(t, text)
		ids, err := f.s.BuildsWithLogs(f.ctx, ci.RetentionQuery{Limit: 10})
		require.NoError(t, err)
		assert.Equal(t, []int64{kept.ID}, ids)
		// The build itself stays.
		assert.True(t, f.getBuild(old.ID).Complete)
	})
	t.Run("DeleteBuilds", func(t *testing.T) {
		f := open(t)
		a := f.builder("a")
		old := f.loggedBuild(a.ID, day(1), 100)
		newer := f.loggedBuild(a.ID, day(9), 100)
		ids, err := f.s.FinishedBuildsBefore(f.ctx, day(5), 10)
		require.NoError(t, err)
		assert.Equal(t, []int64{old.ID}, ids)
		before := f.logBytes()
		freed, err := f.s.DeleteBuilds(f.ctx, ids)
		require.NoError(t, err)
		assert.Equal(t, before-freed, f.logBytes())
		_, err = f.s.GetBuild(f.ctx, old.ID)
		assert.ErrorIs(t, err, ci.ErrNotFound)
		_, err = f.s.GetRequest(f.ctx, old.BuildRequestID)
		assert.ErrorIs(t, err, ci.ErrNotFound, "its complete request went with it")
		assert.True(t, f.getBuild(newer.ID).Complete)
		all, total, err := f.s.ListBuilds(f.ctx, ci.BuildQuery{})
		require.NoError(t, err)
		assert.Equal(t, 1, total)
		assert.Equal(t, newer.ID, all[0].ID)
		// A running build is not deleted.
		running := f.start(a.ID, f.request(a.ID))
		_, err = f.s.DeleteBuilds(f.ctx, []int64{running.ID})
		assert.ErrorIs(t, err, ci.ErrConflict)
	})
	t.Run("Compact", func(t *testing.T) {
		f := open(t)
		a := f.builder("a")
		var ids []int64
		for d := 1; d <= 20; d++ {
			ids = append(ids, f.loggedBuild(a.ID, day(d), 3000).ID)
		}
		_, err := f.s.DeleteBuilds(f.ctx, ids)
		require.NoError(t, err)
		n, err := f.s.Compact(f.ctx, 1<<20)
		require.NoError(t, err)
		assert.Greater(t, n, 0, "free pages are given back")
		n, err = f.s.Compact(f.ctx, 1<<20)
		require.NoError(t, err)
		assert.Zero(t, n)
	})
}
