package ci

import (
	"context"
	"time"
)

// A Clock tells the time and runs functions later. The master, its
// services and the schedulers use the master's clock for every time they
// store and every timer they set (keepalives, retries, flushes, flood
// control), so that tests can drive time (see citest.Clock). To wait on
// it, use Sleep.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// A Timer is a function scheduled by a Clock.
type Timer interface {
	// Stop prevents the function from running, and reports whether it did
	// (false if it already ran or was stopped).
	Stop() bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc calls time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Sleep waits until d has passed on c (the system clock if nil) or ctx
// ends, whichever comes first. It returns nil once d has passed, and
// ctx's cause (context.Cause) if ctx ended first. A d of zero or less
// sets no timer, so that a fake clock does not have to be advanced for it:
// Sleep returns at once, nil unless ctx has ended.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	if c == nil {
		c = SystemClock{}
	}
	passed := make(chan struct{})
	t := c.AfterFunc(d, func() { close(passed) })
	select {
	case <-passed:
		return nil
	case <-ctx.Done():
		t.Stop()
		return context.Cause(ctx)
	}
}
