package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func testTimes(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("Precision", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		zone := time.FixedZone("CEST", 2*3600)
		started := time.Date(2031, 7, 8, 9, 10, 11, 123_456_789, zone)
		build := &ci.Build{BuilderID: b.ID, StartedAt: started}
		require.NoError(t, f.s.StartBuild(f.ctx, build, []int64{f.request(b.ID).ID}))
		got := f.getBuild(build.ID)
		assert.Equal(t, time.UTC, got.StartedAt.Location(), "times come back in UTC")
		assert.WithinDuration(t, started, got.StartedAt, time.Millisecond, "times keep at least milliseconds")

		old := time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC)
		c := &ci.Change{When: old}
		_, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
		gc, err := f.s.GetChange(f.ctx, c.ID)
		require.NoError(t, err)
		assert.Equal(t, old, gc.When, "times before 1970 are kept")
	})
	t.Run("Zero", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		r := f.request(b.ID)
		got := f.getRequest(r.ID)
		assert.True(t, got.ClaimedAt.IsZero())
		assert.True(t, got.CompleteAt.IsZero())
		build := &ci.Build{BuilderID: b.ID}
		require.NoError(t, f.s.StartBuild(f.ctx, build, []int64{r.ID}))
		gb := f.getBuild(build.ID)
		assert.True(t, gb.StartedAt.IsZero(), "the zero time is kept as zero")
		assert.True(t, gb.CompleteAt.IsZero())
		assert.True(t, f.getRequest(r.ID).ClaimedAt.IsZero())
	})
}

func testRecords(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("Fresh", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		build.Properties.Set("a", "1", "test")
		require.NoError(t, f.s.SetBuildState(f.ctx, build.ID, "x"))

		got := f.getBuild(build.ID)
		require.NotNil(t, got.Properties, "properties can be set on a stored build")
		assert.Empty(t, got.Properties, "a caller's change to its record is not stored")
		got.Properties.Set("b", "2", "test")
		got.StateString = "changed"
		again := f.getBuild(build.ID)
		assert.Empty(t, again.Properties, "a returned record is the caller's")
		assert.Equal(t, "x", again.StateString)

		c := newChange("abc")
		_, err := f.s.AddChange(f.ctx, c)
		require.NoError(t, err)
		gc, err := f.s.GetChange(f.ctx, c.ID)
		require.NoError(t, err)
		gc.Files[0] = "changed"
		gc.Properties["event"] = "changed"
		gc2, err := f.s.GetChange(f.ctx, c.ID)
		require.NoError(t, err)
		assert.Equal(t, c, gc2)
	})
}
