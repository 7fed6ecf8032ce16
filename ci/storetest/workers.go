package storetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func testEnsureBuilder(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b, err := f.s.EnsureBuilder(f.ctx, "linux", "Builds on Linux", []string{"x86", "fast"})
		require.NoError(t, err)
		assert.NotZero(t, b.ID)
		assert.Equal(t, &ci.Builder{ID: b.ID, Name: "linux", Description: "Builds on Linux", Tags: []string{"x86", "fast"}}, b)

		got, err := f.s.GetBuilder(f.ctx, b.ID)
		require.NoError(t, err)
		assert.Equal(t, b, got)
	})
	t.Run("Existing", func(t *testing.T) {
		f := open(t)
		b1, err := f.s.EnsureBuilder(f.ctx, "linux", "old", []string{"a"})
		require.NoError(t, err)
		other := f.builder("windows")
		b2, err := f.s.EnsureBuilder(f.ctx, "linux", "new", []string{"b"})
		require.NoError(t, err)
		assert.Equal(t, b1.ID, b2.ID)
		assert.NotEqual(t, other.ID, b2.ID)
		assert.Equal(t, "new", b2.Description, "the description follows the configuration")
		assert.Equal(t, []string{"b"}, b2.Tags)

		list, err := f.s.ListBuilders(f.ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		assert.Equal(t, "linux", list[0].Name)
		assert.Equal(t, "windows", list[1].Name)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetBuilder(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testEnsureWorker(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		w, err := f.s.EnsureWorker(f.ctx, "w1")
		require.NoError(t, err)
		assert.NotZero(t, w.ID)
		assert.Equal(t, "w1", w.Name)
		assert.False(t, w.Connected)
		assert.Empty(t, w.Info)
		assert.True(t, w.ChangedAt.IsZero())

		again, err := f.s.EnsureWorker(f.ctx, "w1")
		require.NoError(t, err)
		assert.Equal(t, w, again)

		w2 := f.worker("w2")
		assert.NotEqual(t, w.ID, w2.ID)
		list, err := f.s.ListWorkers(f.ctx)
		require.NoError(t, err)
		assert.Equal(t, []*ci.Worker{w, w2}, list)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetWorker(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testSetWorkerConnected(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		w := f.worker("w1")
		info := map[string]any{"host": "box", "version": "3.11", "numcpus": float64(2)}
		require.NoError(t, f.s.SetWorkerConnected(f.ctx, w.ID, true, info, at(1)))
		got, err := f.s.GetWorker(f.ctx, w.ID)
		require.NoError(t, err)
		assert.Equal(t, &ci.Worker{ID: w.ID, Name: "w1", Info: info, Connected: true, ChangedAt: at(1)}, got)
	})
	t.Run("NilInfoKeepsInfo", func(t *testing.T) {
		f := open(t)
		w := f.worker("w1")
		info := map[string]any{"host": "box"}
		require.NoError(t, f.s.SetWorkerConnected(f.ctx, w.ID, true, info, at(1)))
		require.NoError(t, f.s.SetWorkerConnected(f.ctx, w.ID, false, nil, at(2)))
		got, err := f.s.GetWorker(f.ctx, w.ID)
		require.NoError(t, err)
		assert.False(t, got.Connected)
		assert.Equal(t, at(2), got.ChangedAt)
		assert.Equal(t, info, got.Info)

		require.NoError(t, f.s.SetWorkerConnected(f.ctx, w.ID, true, map[string]any{"host": "other"}, at(3)))
		got, err = f.s.GetWorker(f.ctx, w.ID)
		require.NoError(t, err)
		assert.True(t, got.Connected)
		assert.Equal(t, map[string]any{"host": "other"}, got.Info)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		err := f.s.SetWorkerConnected(f.ctx, 42, true, nil, at(1))
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testState(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		value := []byte{0, 1, 2, 0xff, '{', '}'}
		require.NoError(t, f.s.SetState(f.ctx, "scheduler:nightly", "last_run", value))
		require.NoError(t, f.s.SetState(f.ctx, "scheduler:nightly", "other", []byte("x")))
		require.NoError(t, f.s.SetState(f.ctx, "scheduler:force", "last_run", []byte("y")))
		got, err := f.s.GetState(f.ctx, "scheduler:nightly", "last_run")
		require.NoError(t, err)
		assert.Equal(t, value, got)

		got[0] = 42
		again, err := f.s.GetState(f.ctx, "scheduler:nightly", "last_run")
		require.NoError(t, err)
		assert.Equal(t, value, again, "returned values are copies")

		require.NoError(t, f.s.SetState(f.ctx, "scheduler:nightly", "last_run", []byte(`{"t":1}`)))
		got, err = f.s.GetState(f.ctx, "scheduler:nightly", "last_run")
		require.NoError(t, err)
		assert.Equal(t, []byte(`{"t":1}`), got)
		got, err = f.s.GetState(f.ctx, "scheduler:force", "last_run")
		require.NoError(t, err)
		assert.Equal(t, []byte("y"), got)
	})
	t.Run("Empty", func(t *testing.T) {
		f := open(t)
		require.NoError(t, f.s.SetState(f.ctx, "o", "k", []byte{}))
		got, err := f.s.GetState(f.ctx, "o", "k")
		require.NoError(t, err)
		assert.Empty(t, got)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		require.NoError(t, f.s.SetState(f.ctx, "o", "k", []byte("v")))
		_, err := f.s.GetState(f.ctx, "o", "other")
		assert.ErrorIs(t, err, ci.ErrNotFound)
		_, err = f.s.GetState(f.ctx, "other", "k")
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}
