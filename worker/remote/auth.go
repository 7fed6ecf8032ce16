package remote

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Defaults of the login throttle.
const (
	// DefaultFreeFailures is how many failed logins an address may make
	// before it is locked out.
	DefaultFreeFailures = 5
	// DefaultLockout is the first lockout; each further failure doubles
	// it, up to DefaultMaxLockout.
	DefaultLockout    = time.Second
	DefaultMaxLockout = 5 * time.Minute
	// forgetFailures is how long after its last failure an address starts
	// afresh.
	forgetFailures = 15 * time.Minute
	// maxTracked bounds the addresses the throttle remembers.
	maxTracked = 10000
)

// isBcrypt reports whether a configured password is a bcrypt hash.
func isBcrypt(p string) bool {
	return strings.HasPrefix(p, "$2a$") || strings.HasPrefix(p, "$2b$") || strings.HasPrefix(p, "$2y$")
}

// dummyDigest is compared against when the worker is unknown, so that an
// unknown name costs what a wrong password does.
var dummyDigest = sha256.Sum256([]byte("kiln: no such worker"))

// checkPassword reports whether given matches the configured password: a
// bcrypt hash, or a plain password compared in constant time (digests of
// both are compared, so that the length does not leak either). known is
// false for an unknown worker: the comparison is made anyway, and fails.
func checkPassword(configured string, known bool, given string) bool {
	if known && isBcrypt(configured) {
		return bcrypt.CompareHashAndPassword([]byte(configured), []byte(given)) == nil
	}
	want := dummyDigest
	if known {
		want = sha256.Sum256([]byte(configured))
	}
	got := sha256.Sum256([]byte(given))
	ok := subtle.ConstantTimeCompare(want[:], got[:]) == 1
	// An unknown worker, and a worker without a password (in-process
	// workers need none), never log in over the network.
	return ok && known && configured != ""
}

// throttle slows down repeated failed logins from one address: after a few
// free failures, the address is refused (429) for a lockout that doubles
// with every further failure, without its credentials being checked. A
// successful login clears the address's record; so does a quiet quarter
// of an hour.
type throttle struct {
	free    int
	base    time.Duration
	max     time.Duration
	now     func() time.Time
	mu      sync.Mutex
	entries map[string]*failures
}

type failures struct {
	n     int
	last  time.Time
	until time.Time
}

func newThrottle(free int, base, max time.Duration, now func() time.Time) *throttle {
	return &throttle{free: free, base: base, max: max, now: now, entries: map[string]*failures{}}
}

// key groups addresses: an IPv4 address, or an IPv6 address's /64 (one
// host commonly has a whole /64).
func throttleKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// blocked returns how long the address must still wait, or 0. A nil
// throttle blocks nothing.
func (t *throttle) blocked(key string) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.entries[key]
	if f == nil {
		return 0
	}
	if d := f.until.Sub(t.now()); d > 0 {
		return d
	}
	return 0
}

// fail records a failed login and returns the lockout it starts (0 while
// failures are free).
func (t *throttle) fail(key string) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f := t.entries[key]
	if f != nil && now.Sub(f.last) > forgetFailures {
		f = nil
	}
	if f == nil {
		t.prune(now)
		f = &failures{}
		t.entries[key] = f
	}
	f.n++
	f.last = now
	if f.n <= t.free {
		return 0
	}
	d := t.base << min(f.n-t.free-1, 30)
	if d > t.max || d <= 0 {
		d = t.max
	}
	f.until = now.Add(d)
	return d
}

// succeed clears the address's record.
func (t *throttle) succeed(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	delete(t.entries, key)
	t.mu.Unlock()
}

// prune forgets stale records once there are too many; if all are fresh,
// those not locked out go first. t.mu is held.
func (t *throttle) prune(now time.Time) {
	if len(t.entries) < maxTracked {
		return
	}
	for k, f := range t.entries {
		if now.Sub(f.last) > forgetFailures {
			delete(t.entries, k)
		}
	}
	for k, f := range t.entries {
		if len(t.entries) < maxTracked {
			return
		}
		if !f.until.After(now) {
			delete(t.entries, k)
		}
	}
}
