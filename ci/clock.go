package ci

import "time"

// A Clock tells the time and runs functions later. The master and the
// schedulers use the master's clock for every time they store and every
// timer they set, so that tests can drive time (see citest.Clock).
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
