package webui

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// countHashes counts bcrypt comparisons, and the cost of each.
func countHashes(t *testing.T) (calls *atomic.Int64, costs chan int) {
	calls = &atomic.Int64{}
	costs = make(chan int, 1000)
	saved := compareHash
	compareHash = func(hash, pw []byte) error {
		calls.Add(1)
		if c, err := bcrypt.Cost(hash); err == nil {
			costs <- c
		}
		return saved(hash, pw)
	}
	t.Cleanup(func() { compareHash = saved })
	return calls, costs
}

func request(addr, login, pw string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v2/forceschedulers/force", nil)
	r.RemoteAddr = addr
	r.SetBasicAuth(login, pw)
	return r
}

// TestAuth_SameCost: an unknown login, a wrong password and a plain
// password each cost one bcrypt comparison at the users' cost, so that
// timing tells no login apart.
func TestAuth_SameCost(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAuthenticator(&BasicAuth{Users: map[string]string{"alice": string(hash), "bob": "plain-pw"}, AllowPlain: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	calls, costs := countHashes(t)
	for i, c := range []struct{ login, pw string }{{"mallory", "x"}, {"alice", "wrong"}, {"bob", "wrong"}, {"bob", "plain-pw"}} {
		_, _, err := a.user(request("192.0.2.1:1234", c.login, c.pw))
		if (err == nil) != (c.login == "bob" && c.pw == "plain-pw") {
			t.Errorf("%s/%s: %v", c.login, c.pw, err)
		}
		if got := calls.Load(); got != int64(i+1) {
			t.Fatalf("%s/%s: %d bcrypt comparisons in all, want %d", c.login, c.pw, got, i+1)
		}
	}
	close(costs)
	for c := range costs {
		if c != bcrypt.MinCost+1 {
			t.Errorf("a comparison at cost %d, want the users' own, %d", c, bcrypt.MinCost+1)
		}
	}
}

// TestAuth_Throttle: an address that failed too often is answered "too
// many" without any check, until it has waited; others are not.
func TestAuth_Throttle(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	a, err := newAuthenticator(&BasicAuth{Users: map[string]string{"alice": string(hash)}}, "")
	if err != nil {
		t.Fatal(err)
	}
	a.dummy = hash // cheap, for the test
	calls, _ := countHashes(t)
	for range loginFailureBurst {
		if _, _, err := a.user(request("198.51.100.7:1", "alice", "wrong")); err == nil {
			t.Fatal("a wrong password passed")
		}
	}
	before := calls.Load()
	_, _, err = a.user(request("198.51.100.7:2", "alice", "right"))
	re, ok := err.(*retryError)
	if !ok || re.After <= 0 || status(err) != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %v, want a 429 with a delay", loginFailureBurst, err)
	}
	if calls.Load() != before {
		t.Error("a throttled address made the master check its password")
	}
	if _, _, err := a.user(request("203.0.113.9:1", "alice", "right")); err != nil {
		t.Errorf("another address: %v", err)
	}
	// Behind the proxy on this machine, the client is the forwarded one.
	r := request("127.0.0.1:5000", "alice", "wrong")
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	if _, _, err := a.user(r); status(err) != http.StatusTooManyRequests {
		t.Errorf("through the proxy: %v, want 429", err)
	}
	// A page is not made to check anything for a throttled address.
	before = calls.Load()
	if _, ok := a.pageUser(request("198.51.100.7:3", "alice", "not checked yet")); ok {
		t.Error("a throttled address is logged in on a page")
	}
	if calls.Load() != before {
		t.Error("a page checked a throttled address's password")
	}
}

// TestAuth_PagesBounded: pages check uncached credentials only while a
// bcrypt slot is free at once, and take verified ones from the cache.
func TestAuth_PagesBounded(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	a, err := newAuthenticator(&BasicAuth{Users: map[string]string{"alice": string(hash)}}, "")
	if err != nil {
		t.Fatal(err)
	}
	calls, _ := countHashes(t)
	for range maxBcrypt {
		a.bcrypt <- struct{}{} // every slot busy
	}
	if _, ok := a.pageUser(request("192.0.2.5:1", "alice", "right")); ok {
		t.Error("checked while every slot is busy")
	}
	if calls.Load() != 0 {
		t.Error("a page waited for bcrypt")
	}
	for range maxBcrypt {
		<-a.bcrypt
	}
	if login, ok := a.pageUser(request("192.0.2.5:1", "alice", "right")); !ok || login != "alice" {
		t.Error("a free slot: not checked")
	}
	n := calls.Load()
	if _, ok := a.pageUser(request("192.0.2.5:1", "alice", "right")); !ok || calls.Load() != n {
		t.Error("verified credentials are not taken from the cache")
	}
}
