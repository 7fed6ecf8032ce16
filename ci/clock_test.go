package ci_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

func TestSleep(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		c := citest.NewClock(t0)
		done := make(chan error, 1)
		go func() { done <- ci.Sleep(context.Background(), c, time.Minute) }()
		require.True(t, c.WaitTimers(t.Context(), 1))
		c.Advance(59 * time.Second)
		select {
		case err := <-done:
			t.Fatalf("Sleep returned %v before its time", err)
		default:
		}
		c.Advance(time.Second)
		assert.NoError(t, <-done)
		assert.Empty(t, c.Timers())
	})

	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		c := citest.NewClock(t0)
		ctx, cancel := context.WithCancelCause(context.Background())
		done := make(chan error, 1)
		go func() { done <- ci.Sleep(ctx, c, time.Hour) }()
		require.True(t, c.WaitTimers(t.Context(), 1))
		stop := errors.New("stopping")
		cancel(stop)
		assert.ErrorIs(t, <-done, stop)
		assert.Empty(t, c.Timers(), "the timer is stopped")
	})

	t.Run("NotPositive", func(t *testing.T) {
		t.Parallel()
		c := citest.NewClock(t0)
		assert.NoError(t, ci.Sleep(context.Background(), c, 0))
		assert.NoError(t, ci.Sleep(context.Background(), c, -time.Second))
		assert.Empty(t, c.Timers(), "no timer is set")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, ci.Sleep(ctx, c, 0), context.Canceled)
		assert.ErrorIs(t, ci.Sleep(ctx, nil, time.Hour), context.Canceled)
	})

	t.Run("SystemClock", func(t *testing.T) {
		t.Parallel()
		assert.NoError(t, ci.Sleep(context.Background(), nil, time.Millisecond))
	})
}
