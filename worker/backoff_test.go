package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoff(t *testing.T) {
	b := backoff{min: time.Second, max: 60 * time.Second}
	for _, tt := range []struct {
		n        int
		low, top time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second},
		{1, time.Second, 2 * time.Second},
		{3, 4 * time.Second, 8 * time.Second},
		{6, 30 * time.Second, 60 * time.Second}, // 64 s, capped
		{1000, 30 * time.Second, 60 * time.Second},
	} {
		b.rand = func() float64 { return 0 }
		assert.Equal(t, tt.low, b.delay(tt.n), "attempt %d, least jitter", tt.n)
		b.rand = func() float64 { return 0.999999999 }
		assert.InDelta(t, float64(tt.top), float64(b.delay(tt.n)), float64(time.Microsecond), "attempt %d, most jitter", tt.n)
	}

	// Waits are spread: workers that lose their master together do not
	// all come back together.
	b.rand = nil
	seen := map[time.Duration]bool{}
	for range 100 {
		d := b.delay(4)
		assert.True(t, d >= 8*time.Second && d <= 16*time.Second, "%v", d)
		seen[d] = true
	}
	assert.Greater(t, len(seen), 50)
}
