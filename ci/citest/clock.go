package citest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Clock is a fake ci.Clock for tests: time moves only when the test calls
// Advance or Set, which run the timers that fall due, in time order, in the
// caller's goroutine (so that when Advance returns, what they did is done).
// It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced when timers change
}

var _ ci.Clock = (*Clock)(nil)

// NewClock returns a fake clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{now: t, changed: make(chan struct{})} }

type fakeTimer struct {
	c    *Clock
	when time.Time
	f    func()
	done bool
}

// Now implements ci.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements ci.Clock: f runs when Advance or Set reaches d from
// now.
func (c *Clock) AfterFunc(d time.Duration, f func()) ci.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	c.notifyLocked()
	return t
}

// Stop implements ci.Timer.
func (t *fakeTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	c.timers = slices.DeleteFunc(c.timers, func(x *fakeTimer) bool { return x == t })
	c.notifyLocked()
	return true
}

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Advance moves the clock forward by d, running the timers that fall due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards), running the timers that fall
// due, earliest first, each with the clock showing its time.
func (c *Clock) Set(t time.Time) {
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, x := range c.timers {
			if !x.when.After(t) && (next == nil || x.when.Before(next.when)) {
				next = x
			}
		}
		if next == nil {
			if t.After(c.now) {
				c.now = t
			}
			c.mu.Unlock()
			return
		}
		next.done = true
		c.timers = slices.DeleteFunc(c.timers, func(x *fakeTimer) bool { return x == next })
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.notifyLocked()
		c.mu.Unlock()
		next.f()
	}
}

// Timers returns the times of the pending timers, earliest first.
func (c *Clock) Timers() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Time, 0, len(c.timers))
	for _, t := range c.timers {
		out = append(out, t.when)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// WaitTimers waits until at least n timers are pending, for tests that
// must not advance the clock before a scheduler running in the background
// has set its timer. It returns false if ctx ends first.
func (c *Clock) WaitTimers(ctx context.Context, n int) bool {
	return c.wait(ctx, func() bool { return len(c.timers) >= n })
}

// WaitTimer waits until a timer is pending for time t, for tests that
// must not advance the clock before a goroutine has started to wait (as
// for a delay it computed from the clock's time). It returns false if ctx
// ends first.
func (c *Clock) WaitTimer(ctx context.Context, t time.Time) bool {
	return c.wait(ctx, func() bool {
		return slices.ContainsFunc(c.timers, func(x *fakeTimer) bool { return x.when.Equal(t) })
	})
}

// wait waits until cond, called with c.mu held, is true.
func (c *Clock) wait(ctx context.Context, cond func() bool) bool {
	for {
		c.mu.Lock()
		ok, changed := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}
