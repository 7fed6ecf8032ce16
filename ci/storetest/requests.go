package storetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func testAddBuildset(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b1, b2 := f.builder("b1"), f.builder("b2")
		c := newChange("abc")
		_, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
		parent := f.start(b1.ID, f.request(b1.ID))
		props := ci.Properties{}
		props.Set("branch", "main", ci.SourceScheduler)
		props.Set("count", float64(2), ci.SourceForce)
		props.Set("nested", map[string]any{"a": []any{true, nil}}, "test")
		bs := &ci.Buildset{
			ExternalID:  "ext-1",
			Reason:      "because",
			SubmittedAt: at(5),
			SourceStamps: []ci.SourceStamp{
				{Codebase: "app", Repository: "https://example.org/app.git", Branch: "main", Revision: "abc", Project: "p", CreatedAt: at(4), Changes: []int64{c.ID}},
				{Codebase: "lib", Repository: "https://example.org/lib.git", Branch: "dev", CreatedAt: at(4)},
			},
			Properties:    props,
			ParentBuildID: parent.ID,
			Scheduler:     "force",
		}
		reqs, err := f.s.AddBuildset(f.ctx, bs, []int64{b1.ID, b2.ID}, 7)
		require.NoError(t, err)
		assert.NotZero(t, bs.ID)
		require.Len(t, bs.SourceStamps, 2)
		assert.NotZero(t, bs.SourceStamps[0].ID)
		assert.NotZero(t, bs.SourceStamps[1].ID)
		assert.NotEqual(t, bs.SourceStamps[0].ID, bs.SourceStamps[1].ID)

		require.Len(t, reqs, 2)
		for i, b := range []*ci.Builder{b1, b2} {
			r := reqs[i]
			assert.NotZero(t, r.ID)
			assert.Equal(t, &ci.BuildRequest{ID: r.ID, BuildsetID: bs.ID, BuilderID: b.ID, Priority: 7, SubmittedAt: at(5)}, r)
			assert.Equal(t, r, f.getRequest(r.ID))
		}
		assert.NotEqual(t, reqs[0].ID, reqs[1].ID)

		got := f.getBuildset(bs.ID)
		assert.Equal(t, bs, got)
		assert.False(t, got.Complete)
	})
	t.Run("NoProperties", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		bs := &ci.Buildset{SubmittedAt: at(0), SourceStamps: []ci.SourceStamp{{}}}
		_, err := f.s.AddBuildset(f.ctx, bs, []int64{b.ID}, 0)
		require.NoError(t, err)
		got := f.getBuildset(bs.ID)
		require.NotNil(t, got.Properties, "properties can be set on a stored buildset")
		got.Properties.Set("x", "y", "test")
		require.Len(t, got.SourceStamps, 1)
		assert.NotZero(t, got.SourceStamps[0].ID)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetBuildset(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testGetRequest(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetRequest(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testListRequests(t *testing.T, open func(*testing.T) *fixture) {
	f := open(t)
	b1, b2 := f.builder("b1"), f.builder("b2")
	bsA, a := f.buildset(at(0), 0, b1.ID, b2.ID) // a[0] claimed, a[1] pending
	_, b := f.buildset(at(1), 0, b1.ID, b2.ID)   // b[0] complete, b[1] cancelled
	_, c := f.buildset(at(2), 0, b1.ID)          // pending
	f.start(b1.ID, a[0])
	f.finish(f.start(b1.ID, b[0]), ci.Success, false)
	require.NoError(t, f.s.CancelRequest(f.ctx, b[1].ID, at(3)))

	for _, tt := range []struct {
		name  string
		q     ci.RequestQuery
		want  []int64
		total int
	}{
		{"All", ci.RequestQuery{}, []int64{a[0].ID, a[1].ID, b[0].ID, b[1].ID, c[0].ID}, 5},
		{"Builder", ci.RequestQuery{BuilderID: b2.ID}, []int64{a[1].ID, b[1].ID}, 2},
		{"Buildset", ci.RequestQuery{BuildsetID: bsA.ID}, []int64{a[0].ID, a[1].ID}, 2},
		{"Complete", ci.RequestQuery{Complete: ptr(true)}, []int64{b[0].ID, b[1].ID}, 2},
		{"Incomplete", ci.RequestQuery{Complete: ptr(false)}, []int64{a[0].ID, a[1].ID, c[0].ID}, 3},
		{"Claimed", ci.RequestQuery{Claimed: ptr(true)}, []int64{a[0].ID, b[0].ID}, 2},
		{"Unclaimed", ci.RequestQuery{Claimed: ptr(false)}, []int64{a[1].ID, b[1].ID, c[0].ID}, 3},
		{"Pending", ci.RequestQuery{Claimed: ptr(false), Complete: ptr(false)}, []int64{a[1].ID, c[0].ID}, 2},
		{"BuilderComplete", ci.RequestQuery{BuilderID: b1.ID, Complete: ptr(false)}, []int64{a[0].ID, c[0].ID}, 2},
		{"Page", ci.RequestQuery{Query: ci.Query{Limit: 2, Offset: 1}}, []int64{a[1].ID, b[0].ID}, 5},
		{"Desc", ci.RequestQuery{Query: ci.Query{Limit: 2, Desc: true}}, []int64{c[0].ID, b[1].ID}, 5},
		{"FilteredPage", ci.RequestQuery{BuilderID: b1.ID, Query: ci.Query{Limit: 1, Offset: 1, Desc: true}}, []int64{b[0].ID}, 3},
		{"None", ci.RequestQuery{BuilderID: 999}, []int64{}, 0},
		{"NoTotal", ci.RequestQuery{Claimed: ptr(false), Complete: ptr(false), Query: ci.Query{NoTotal: true}}, []int64{a[1].ID, c[0].ID}, -1},
		{"IDs", ci.RequestQuery{IDs: []int64{c[0].ID, a[1].ID, 999}}, []int64{a[1].ID, c[0].ID}, 2},
		{"IDsBuilder", ci.RequestQuery{IDs: []int64{a[0].ID, a[1].ID, b[0].ID}, BuilderID: b1.ID, Query: ci.Query{Desc: true}}, []int64{b[0].ID, a[0].ID}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			list, total, err := f.s.ListRequests(f.ctx, tt.q)
			require.NoError(t, err)
			assert.Equal(t, tt.want, requestIDs(list))
			assert.Equal(t, tt.total, total)
			for _, r := range list {
				assert.Equal(t, f.getRequest(r.ID), r)
			}
		})
	}
}

func testPendingRequests(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("Order", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		_, r1 := f.buildset(at(3), 0, b.ID)
		_, r2 := f.buildset(at(1), 0, b.ID)
		_, r3 := f.buildset(at(2), 5, b.ID)
		_, r4 := f.buildset(at(1), 0, b.ID) // same time as r2, later ID
		_, r5 := f.buildset(at(9), -1, b.ID)
		_, r6 := f.buildset(at(0), 5, b.ID)
		assert.Equal(t, []int64{r6[0].ID, r3[0].ID, r2[0].ID, r4[0].ID, r1[0].ID, r5[0].ID}, f.pendingIDs())
	})
	t.Run("OnlyPending", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		claimed, done, cancelled, pending := f.request(b.ID), f.request(b.ID), f.request(b.ID), f.request(b.ID)
		f.start(b.ID, claimed)
		f.finish(f.start(b.ID, done), ci.Failure, false)
		require.NoError(t, f.s.CancelRequest(f.ctx, cancelled.ID, at(1)))
		reqs, err := f.s.PendingRequests(f.ctx)
		require.NoError(t, err)
		assert.Equal(t, []*ci.BuildRequest{pending}, reqs)
	})
	t.Run("Empty", func(t *testing.T) {
		f := open(t)
		assert.Empty(t, f.pendingIDs())
	})
}

func testCancelRequest(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b1, b2 := f.builder("b1"), f.builder("b2")
		bs, reqs := f.buildset(at(0), 0, b1.ID, b2.ID)

		require.NoError(t, f.s.CancelRequest(f.ctx, reqs[0].ID, at(1)))
		r := f.getRequest(reqs[0].ID)
		assert.True(t, r.Complete)
		assert.False(t, r.Claimed)
		assert.Equal(t, ci.Cancelled, r.Results)
		assert.Equal(t, at(1), r.CompleteAt)
		assert.False(t, f.getBuildset(bs.ID).Complete, "the buildset has a request left")
		assert.Equal(t, []int64{reqs[1].ID}, f.pendingIDs())

		require.NoError(t, f.s.CancelRequest(f.ctx, reqs[1].ID, at(2)))
		got := f.getBuildset(bs.ID)
		assert.True(t, got.Complete, "the last request cancelled completes the buildset")
		assert.Equal(t, ci.Cancelled, got.Results)
		assert.Equal(t, at(2), got.CompleteAt)
		assert.Empty(t, f.pendingIDs())
	})
	t.Run("WorstResult", func(t *testing.T) {
		f := open(t)
		b1, b2 := f.builder("b1"), f.builder("b2")
		bs, reqs := f.buildset(at(0), 0, b1.ID, b2.ID)
		f.finish(f.start(b1.ID, reqs[0]), ci.Failure, false)
		require.NoError(t, f.s.CancelRequest(f.ctx, reqs[1].ID, at(30)))
		got := f.getBuildset(bs.ID)
		assert.True(t, got.Complete)
		assert.Equal(t, ci.Cancelled, got.Results)
	})
	t.Run("ErrConflict", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		claimed := f.request(b.ID)
		build := f.start(b.ID, claimed)
		err := f.s.CancelRequest(f.ctx, claimed.ID, at(1))
		assert.ErrorIs(t, err, ci.ErrConflict, "a claimed request is stopped through its build")
		r := f.getRequest(claimed.ID)
		assert.True(t, r.Claimed)
		assert.False(t, r.Complete)
		assert.Equal(t, build.ID, r.BuildID)

		cancelled := f.request(b.ID)
		require.NoError(t, f.s.CancelRequest(f.ctx, cancelled.ID, at(1)))
		err = f.s.CancelRequest(f.ctx, cancelled.ID, at(2))
		assert.ErrorIs(t, err, ci.ErrConflict, "a request is cancelled once")
		assert.Equal(t, at(1), f.getRequest(cancelled.ID).CompleteAt)

		f.finish(build, ci.Success, false)
		err = f.s.CancelRequest(f.ctx, claimed.ID, at(3))
		assert.ErrorIs(t, err, ci.ErrConflict, "a complete request cannot be cancelled")
		assert.Equal(t, ci.Success, f.getRequest(claimed.ID).Results)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		err := f.s.CancelRequest(f.ctx, 42, at(1))
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testAddBuildsetIdempotent(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("ErrDuplicate", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		first := &ci.Buildset{Reason: "once", ExternalID: "sched:change:7", SubmittedAt: at(1), Properties: ci.Properties{}, SourceStamps: []ci.SourceStamp{{Branch: "main"}}}
		reqs, err := f.s.AddBuildset(f.ctx, first, []int64{b.ID}, 0)
		require.NoError(t, err)
		again := &ci.Buildset{Reason: "twice", ExternalID: "sched:change:7", SubmittedAt: at(2), Properties: ci.Properties{}}
		dup, err := f.s.AddBuildset(f.ctx, again, []int64{b.ID, b.ID}, 0)
		require.ErrorIs(t, err, ci.ErrDuplicate)
		assert.Equal(t, first.ID, again.ID)
		assert.Equal(t, "once", again.Reason)
		assert.Equal(t, requestIDs(reqs), requestIDs(dup))
		_, total, err := f.s.ListRequests(f.ctx, ci.RequestQuery{})
		require.NoError(t, err)
		assert.Equal(t, 1, total, "nothing more is stored")
		// Without an ExternalID, buildsets are never duplicates.
		for range 2 {
			_, err := f.s.AddBuildset(f.ctx, &ci.Buildset{SubmittedAt: at(3), Properties: ci.Properties{}}, []int64{b.ID}, 0)
			require.NoError(t, err)
		}
	})
}
