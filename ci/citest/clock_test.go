package citest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/kilnci/kiln/ci/citest"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	c := citest.NewClock(t0)
	var fired []string
	var at []time.Time
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "b"); at = append(at, c.Now()) })
	c.AfterFunc(time.Second, func() {
		fired = append(fired, "a")
		at = append(at, c.Now())
		c.AfterFunc(500*time.Millisecond, func() { fired = append(fired, "a2"); at = append(at, c.Now()) })
	})
	stopped := c.AfterFunc(1500*time.Millisecond, func() { fired = append(fired, "never") })
	assert.True(t, stopped.Stop())
	assert.False(t, stopped.Stop())
	assert.Len(t, c.Timers(), 2)

	c.Advance(999 * time.Millisecond)
	assert.Empty(t, fired)
	c.Advance(3 * time.Second)
	assert.Equal(t, []string{"a", "a2", "b"}, fired)
	assert.Equal(t, []time.Time{t0.Add(time.Second), t0.Add(1500 * time.Millisecond), t0.Add(2 * time.Second)}, at)
	assert.Equal(t, t0.Add(3999*time.Millisecond), c.Now())
	c.Set(t0) // never backwards
	assert.Equal(t, t0.Add(3999*time.Millisecond), c.Now())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { c.AfterFunc(time.Hour, func() {}) }()
	assert.True(t, c.WaitTimers(ctx, 1))
	go func() { c.AfterFunc(time.Minute, func() {}) }()
	assert.True(t, c.WaitTimer(ctx, c.Now().Add(time.Minute)))
	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	assert.False(t, c.WaitTimers(short, 5))
	assert.False(t, c.WaitTimer(short, c.Now().Add(time.Second)))
}
