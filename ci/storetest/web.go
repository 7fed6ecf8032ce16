package storetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// testChangeBuilds checks BuildQuery.ChangeID: the builds made for a
// change, whether their buildset refers to the change's own source stamp
// or to a new one listing the change, and whether the build serves the
// request first or as a collapsed one.
func testChangeBuilds(t *testing.T, open func(*testing.T) *fixture) {
	f := open(t)
	b1, b2 := f.builder("b1"), f.builder("b2")
	c1, c2 := newChange("aaa"), newChange("bbb")
	for _, c := range []*ci.Change{c1, c2} {
		_, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
	}
	submit := func(ss ci.SourceStamp, builders ...int64) []*ci.BuildRequest {
		t.Helper()
		bs := &ci.Buildset{SubmittedAt: at(1), SourceStamps: []ci.SourceStamp{ss}, Properties: ci.Properties{}}
		reqs, err := f.s.AddBuildset(f.ctx, bs, builders, 0)
		require.NoError(t, err)
		return reqs
	}
	// c1: its own source stamp, on both builders; b1's build is retried.
	r1 := submit(ci.SourceStamp{ID: c1.SourceStampID}, b1.ID, b2.ID)
	retried := f.start(b1.ID, r1[0])
	f.finish(retried, ci.Retry, true)
	again := f.start(b1.ID, r1[0])
	onB2 := f.start(b2.ID, r1[1])
	// c2: a new source stamp listing it, whose request is collapsed into
	// a build of another request.
	other := f.request(b2.ID)
	r2 := submit(ci.SourceStamp{Branch: "main", Changes: []int64{c2.ID}}, b2.ID)
	collapsed := f.start(b2.ID, other, r2[0])
	f.start(b1.ID, f.request(b1.ID)) // for no change

	for _, tt := range []struct {
		name string
		q    ci.BuildQuery
		want []int64
	}{
		{"Change", ci.BuildQuery{ChangeID: c1.ID}, []int64{retried.ID, again.ID, onB2.ID}},
		{"Collapsed", ci.BuildQuery{ChangeID: c2.ID}, []int64{collapsed.ID}},
		{"ChangeBuilder", ci.BuildQuery{ChangeID: c1.ID, BuilderID: b1.ID, Query: ci.Query{Desc: true, Limit: 1}}, []int64{again.ID}},
		{"None", ci.BuildQuery{ChangeID: c2.ID + 100}, []int64{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			list, total, err := f.s.ListBuilds(f.ctx, tt.q)
			require.NoError(t, err)
			assert.Equal(t, tt.want, buildIDs(list))
			if tt.q.Limit == 0 {
				assert.Equal(t, len(tt.want), total)
			}
		})
	}
}

func testListBuildsets(t *testing.T, open func(*testing.T) *fixture) {
	f := open(t)
	b := f.builder("b")
	bsA, a := f.buildset(at(0), 0, b.ID)
	bsB, _ := f.buildset(at(1), 0, b.ID)
	bsC, c := f.buildset(at(2), 0, b.ID)
	f.finish(f.start(b.ID, a[0]), ci.Failure, false)
	require.NoError(t, f.s.CancelRequest(f.ctx, c[0].ID, at(3)))
	// Several source stamps, listed in their order, not by codebase.
	bsD := &ci.Buildset{Reason: "several", SubmittedAt: at(4), SourceStamps: []ci.SourceStamp{
		{Codebase: "z", Branch: "main"}, {Codebase: "a", Branch: "dev"}, {Codebase: "m", Revision: "abc"}}}
	_, err := f.s.AddBuildset(f.ctx, bsD, []int64{b.ID}, 0)
	require.NoError(t, err)
	ids := func(list []*ci.Buildset) []int64 {
		out := []int64{}
		for _, bs := range list {
			out = append(out, bs.ID)
		}
		return out
	}
	for _, tt := range []struct {
		name  string
		q     ci.BuildsetQuery
		want  []int64
		total int
	}{
		{"All", ci.BuildsetQuery{}, []int64{bsA.ID, bsB.ID, bsC.ID, bsD.ID}, 4},
		{"Complete", ci.BuildsetQuery{Complete: ptr(true)}, []int64{bsA.ID, bsC.ID}, 2},
		{"Incomplete", ci.BuildsetQuery{Complete: ptr(false)}, []int64{bsB.ID, bsD.ID}, 2},
		{"Page", ci.BuildsetQuery{Query: ci.Query{Limit: 1, Offset: 2, Desc: true}}, []int64{bsB.ID}, 4},
		{"SeveralSourceStamps", ci.BuildsetQuery{IDs: []int64{bsD.ID, bsB.ID}}, []int64{bsB.ID, bsD.ID}, 2},
		{"FilteredPage", ci.BuildsetQuery{Complete: ptr(true), Query: ci.Query{Limit: 1, Desc: true}}, []int64{bsC.ID}, 2},
		{"NoTotal", ci.BuildsetQuery{Query: ci.Query{Limit: 1, NoTotal: true}}, []int64{bsA.ID}, -1},
		{"IDs", ci.BuildsetQuery{IDs: []int64{bsC.ID, bsA.ID, 999}}, []int64{bsA.ID, bsC.ID}, 2},
		{"IDsComplete", ci.BuildsetQuery{IDs: []int64{bsB.ID, bsC.ID}, Complete: ptr(true)}, []int64{bsC.ID}, 1},
		{"IDsPage", ci.BuildsetQuery{IDs: []int64{bsA.ID, bsB.ID, bsC.ID}, Query: ci.Query{Limit: 1, Offset: 1}}, []int64{bsB.ID}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			list, total, err := f.s.ListBuildsets(f.ctx, tt.q)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ids(list))
			assert.Equal(t, tt.total, total)
			for _, bs := range list {
				assert.Equal(t, f.getBuildset(bs.ID), bs, "listed as got, with source stamps")
				assert.NotEmpty(t, bs.SourceStamps)
			}
		})
	}
}
