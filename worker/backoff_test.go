package worker

import (
	"errors"
	"net/http"
	"net/http/httptest"
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

// TestRetryDelay: while the master cannot be reached, a worker tries
// again within OutageBackoff whatever the outage's length; after a
// refusal its waits grow to MaxBackoff.
func TestRetryDelay(t *testing.T) {
	w := &Worker{Name: "w1", Master: "127.0.0.1:9989", BaseDir: t.TempDir()}
	a, err := w.agent()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []float64{0, 0.5, 0.999} {
		a.backoff.rand = func() float64 { return r }
		a.outage.rand = a.backoff.rand
		for attempt := range 30 {
			d := a.retryDelay(connectResult{err: errors.New("connection refused")}, attempt)
			if d > DefaultOutageBackoff {
				t.Errorf("outage, attempt %d: %s, more than %s", attempt, d, DefaultOutageBackoff)
			}
		}
		d := a.retryDelay(connectResult{err: errors.New("connection refused")}, 29)
		if d < DefaultOutageBackoff/2 {
			t.Errorf("outage, attempt 29: %s, less than half the cap", d)
		}
		d = a.retryDelay(connectResult{refused: true}, 29)
		if d < DefaultMaxBackoff/2 || d > DefaultMaxBackoff {
			t.Errorf("refused, attempt 29: %s, not within [%s, %s]", d, DefaultMaxBackoff/2, DefaultMaxBackoff)
		}
	}
	// A MaxBackoff under the outage cap is the cap.
	w.MaxBackoff = 2 * time.Second
	a, _ = w.agent()
	if d := a.retryDelay(connectResult{}, 30); d > 2*time.Second {
		t.Errorf("with MaxBackoff 2s: %s", d)
	}
}

// TestConnect_Refused: a master that answers no is a refusal; one that
// cannot be reached is an outage.
func TestConnect_Refused(t *testing.T) {
	for _, tc := range []struct {
		status  int
		refused bool
	}{{http.StatusUnauthorized, true}, {http.StatusConflict, true}, {http.StatusOK, true}, {0, false}} {
		addr := "127.0.0.1:1" // nothing listens there
		if tc.status != 0 {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tc.status) }))
			defer srv.Close()
			addr = srv.Listener.Addr().String()
		}
		a, err := (&Worker{Name: "w1", Master: addr, BaseDir: t.TempDir()}).agent()
		if err != nil {
			t.Fatal(err)
		}
		res := a.connect(t.Context())
		if res.err == nil || res.refused != tc.refused {
			t.Errorf("status %d: refused %t, err %v; want refused %t", tc.status, res.refused, res.err, tc.refused)
		}
	}
}
