package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func newChange(rev string) *ci.Change {
	return &ci.Change{
		Author:     "Alice <alice@example.org>",
		Committer:  "Bob <bob@example.org>",
		Comments:   "Fix the frobnicator\n\nIt was broken.",
		Branch:     "main",
		Revision:   rev,
		RevLink:    "https://example.org/r/commit/" + rev,
		When:       at(0),
		Category:   "push",
		Repository: "https://example.org/r.git",
		Codebase:   "r",
		Project:    "proj",
		Files:      []string{"b.go", "a.go", "dir/c.go"},
		Properties: map[string]any{"event": "push", "n": float64(3), "ok": true, "list": []any{"x", float64(1)}},
	}
}

func testAddChange(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		c := newChange("abc123")
		added, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
		assert.True(t, added)
		assert.NotZero(t, c.ID)
		assert.NotZero(t, c.SourceStampID)

		got, err := f.s.GetChange(f.ctx, c.ID)
		require.NoError(t, err)
		assert.Equal(t, c, got)
	})
	t.Run("Empty", func(t *testing.T) {
		f := open(t)
		c := &ci.Change{}
		added, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
		assert.True(t, added)
		got, err := f.s.GetChange(f.ctx, c.ID)
		require.NoError(t, err)
		assert.Empty(t, got.Files)
		assert.Empty(t, got.Properties)
		assert.True(t, got.When.IsZero())
	})
	t.Run("Dedup", func(t *testing.T) {
		f := open(t)
		c1 := newChange("abc123")
		c1.DedupKey = "delivery-1"
		added, err := f.s.AddChange(f.ctx, c1)
		require.NoError(t, err)
		assert.True(t, added)

		c2 := newChange("def456")
		c2.DedupKey = "delivery-1"
		added, err = f.s.AddChange(f.ctx, c2)
		require.NoError(t, err)
		assert.False(t, added)
		assert.Equal(t, c1, c2, "the second change is filled from the first")

		c3 := newChange("def456")
		c3.DedupKey = "delivery-2"
		added, err = f.s.AddChange(f.ctx, c3)
		require.NoError(t, err)
		assert.True(t, added)
		assert.NotEqual(t, c1.ID, c3.ID)

		_, total, err := f.s.ListChanges(f.ctx, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, 2, total)
	})
	t.Run("NoDedupKey", func(t *testing.T) {
		f := open(t)
		for range 2 {
			added, err := f.s.AddChange(f.ctx, newChange("abc123"))
			require.NoError(t, err)
			assert.True(t, added, "changes without a key are never deduplicated")
		}
		_, total, err := f.s.ListChanges(f.ctx, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, 2, total)
	})
	t.Run("SourceStamp", func(t *testing.T) {
		// A buildset may refer to the source stamp stored for a change.
		f := open(t)
		c := newChange("abc123")
		_, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
		b := f.builder("b")
		bs := &ci.Buildset{SubmittedAt: at(1), SourceStamps: []ci.SourceStamp{{ID: c.SourceStampID}}}
		_, err = f.s.AddBuildset(f.ctx, bs, []int64{b.ID}, 0)
		require.NoError(t, err)
		got := f.getBuildset(bs.ID)
		require.Len(t, got.SourceStamps, 1)
		ss := got.SourceStamps[0]
		assert.Equal(t, c.SourceStampID, ss.ID)
		want := c.SourceStamp()
		want.ID, want.CreatedAt, want.Changes = ss.ID, ss.CreatedAt, []int64{c.ID}
		assert.Equal(t, want, ss)
		assert.Equal(t, ss, bs.SourceStamps[0], "AddBuildset fills the source stamp it refers to")
	})
}

func testGetChange(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetChange(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testListChanges(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		var ids []int64
		for i := range 5 {
			c := newChange(fmt.Sprint("rev", i))
			_, err := f.s.AddChange(f.ctx, c)
			require.NoError(t, err)
			ids = append(ids, c.ID)
		}
		changeIDs := func(cs []*ci.Change) []int64 {
			out := []int64{}
			for _, c := range cs {
				out = append(out, c.ID)
			}
			return out
		}
		for _, tt := range []struct {
			name string
			q    ci.Query
			want []int64
		}{
			{"All", ci.Query{}, ids},
			{"Limit", ci.Query{Limit: 2}, ids[:2]},
			{"Offset", ci.Query{Offset: 3}, ids[3:]},
			{"LimitOffset", ci.Query{Limit: 2, Offset: 1}, ids[1:3]},
			{"Desc", ci.Query{Desc: true, Limit: 2}, []int64{ids[4], ids[3]}},
			{"DescOffset", ci.Query{Desc: true, Offset: 4}, []int64{ids[0]}},
			{"PastEnd", ci.Query{Offset: 10}, []int64{}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				list, total, err := f.s.ListChanges(f.ctx, tt.q)
				require.NoError(t, err)
				assert.Equal(t, 5, total)
				assert.Equal(t, tt.want, changeIDs(list))
			})
		}
		list, total, err := f.s.ListChanges(f.ctx, ci.Query{Limit: 1, NoTotal: true})
		require.NoError(t, err)
		assert.Equal(t, -1, total, "NoTotal counts nothing")
		got, err := f.s.GetChange(f.ctx, ids[0])
		require.NoError(t, err)
		assert.Equal(t, got, list[0], "a listed change is complete")
	})
	t.Run("Empty", func(t *testing.T) {
		f := open(t)
		list, total, err := f.s.ListChanges(f.ctx, ci.Query{})
		require.NoError(t, err)
		assert.Empty(t, list)
		assert.Zero(t, total)
	})
}

func testChangesAfter(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		var ids []int64
		for i := range 5 {
			c := &ci.Change{Branch: "main", Revision: string(rune('a' + i)), When: at(i)}
			_, err := f.s.AddChange(f.ctx, c)
			require.NoError(t, err)
			ids = append(ids, c.ID)
		}
		got, err := f.s.ChangesAfter(f.ctx, ids[1], 2)
		require.NoError(t, err)
		require.Len(t, got, 2)
		assert.Equal(t, []int64{ids[2], ids[3]}, []int64{got[0].ID, got[1].ID})
		assert.Equal(t, "c", got[0].Revision)
		got, err = f.s.ChangesAfter(f.ctx, ids[4], 10)
		require.NoError(t, err)
		assert.Empty(t, got)
		got, err = f.s.ChangesAfter(f.ctx, 0, 10)
		require.NoError(t, err)
		assert.Len(t, got, 5)
	})
}

func testSourceStamps(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		c := newChange("abc123")
		_, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
		bs := &ci.Buildset{Reason: "r", SourceStamps: []ci.SourceStamp{{Codebase: "other", Repository: "https://example.org/o.git", Branch: "dev"}}}
		b, err := f.s.EnsureBuilder(f.ctx, "b", "", nil)
		require.NoError(t, err)
		_, err = f.s.AddBuildset(f.ctx, bs, []int64{b.ID}, 0)
		require.NoError(t, err)

		ss, err := f.s.GetSourceStamp(f.ctx, c.SourceStampID)
		require.NoError(t, err)
		assert.Equal(t, c.SourceStampID, ss.ID)
		assert.Equal(t, "abc123", ss.Revision)
		assert.Equal(t, "main", ss.Branch)
		assert.Equal(t, []int64{c.ID}, ss.Changes)
		assert.False(t, ss.CreatedAt.IsZero())

		all, total, err := f.s.ListSourceStamps(f.ctx, ci.Query{})
		require.NoError(t, err)
		assert.Equal(t, 2, total)
		require.Len(t, all, 2)
		assert.Equal(t, ss, all[0])
		assert.Equal(t, bs.SourceStamps[0].ID, all[1].ID)
		assert.Equal(t, "dev", all[1].Branch)
		assert.Empty(t, all[1].Changes)

		page, total, err := f.s.ListSourceStamps(f.ctx, ci.Query{Desc: true, Limit: 1})
		require.NoError(t, err)
		assert.Equal(t, 2, total)
		require.Len(t, page, 1)
		assert.Equal(t, all[1].ID, page[0].ID)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetSourceStamp(f.ctx, 999)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}
