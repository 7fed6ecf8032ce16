package worker

import (
	"math/rand/v2"
	"time"
)

// backoff computes the waits between connection attempts: exponential,
// with jitter so that the workers of a restarted master do not all come
// back in the same second.
type backoff struct {
	min, max time.Duration
	// rand returns a random number in [0, 1); rand.Float64 if nil.
	rand func() float64
}

// delay returns the wait before connection attempt n+1 after n failed
// ones (n from 0): a random duration between half and all of
// min·2ⁿ, capped at max.
func (b backoff) delay(n int) time.Duration {
	d := b.min
	for i := 0; i < n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	r := b.rand
	if r == nil {
		r = rand.Float64
	}
	return d/2 + time.Duration(r()*float64(d-d/2))
}
