package hook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bodyServer serves an endpoint's readBody with the GitHub dialect's
// authentication, answering with what readBody gave: the status the hooks
// answer with, and the body's length.
func bodyServer(t *testing.T, secret string, maxBody int64) (*httptest.Server, *endpoint) {
	gh := &GitHub{Secret: secret}
	auth := func(r *http.Request, body io.Reader) error {
		return checkGitHubSignature([]byte(gh.Secret), r.Header, body)
	}
	e := newEndpoint(nil, "github", maxBody, auth, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := e.readBody(w, r)
		switch {
		case errors.Is(err, errBusy):
			w.WriteHeader(http.StatusServiceUnavailable)
		case errors.Is(err, errForbidden):
			w.WriteHeader(http.StatusForbidden)
		case errors.As(err, new(*http.MaxBytesError)):
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.WriteHeader(http.StatusRequestTimeout)
		case err != nil:
			w.WriteHeader(http.StatusBadRequest)
		}
		fmt.Fprint(w, len(body))
	}))
	t.Cleanup(srv.Close)
	return srv, e
}

func signature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// TestReadBody: a signed body of any size up to the limit is read whole
// (spooled beyond 1 MiB); a wrong signature or a body over the limit is
// refused.
func TestReadBody(t *testing.T) {
	srv, _ := bodyServer(t, "s3cret", 8<<20)
	for _, n := range []int{0, 1000, memoryBody, memoryBody + 1, 5 << 20} {
		body := bytes.Repeat([]byte("x"), n)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", signature("s3cret", body))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%d bytes", n)
		assert.Equal(t, fmt.Sprint(n), string(got), "%d bytes", n)
	}
	for name, h := range map[string]string{"wrong": signature("other", []byte("x")), "none": ""} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("x"))
		if h != "" {
			req.Header.Set("X-Hub-Signature-256", h)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, name)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(make([]byte, 9<<20)))
	req.Header.Set("X-Hub-Signature-256", signature("s3cret", make([]byte, 9<<20)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

// trickle opens a request whose body never comes: it sends the headers
// and a first byte, then waits. It returns the connection and a channel
// of the status line the server answers.
func trickle(t *testing.T, addr string) (net.Conn, <-chan string) {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nX-Hub-Signature-256: %s\r\n\r\nx", signature("s3cret", []byte("x")))
	status := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, _ := c.Read(b)
		line, _, _ := strings.Cut(string(b[:n]), "\r\n")
		status <- line
	}()
	return c, status
}

// TestReadBody_Bounded: while MaxConcurrentBodies bodies are being read,
// another request is answered 503 at once; a body that trickles is cut
// after the timeout, and the place it held is free again.
func TestReadBody_Bounded(t *testing.T) {
	saved := bodyTimeout
	bodyTimeout = 2 * time.Second
	t.Cleanup(func() { bodyTimeout = saved })
	srv, _ := bodyServer(t, "s3cret", 8<<20)
	addr := srv.Listener.Addr().String()
	var statuses []<-chan string
	for range MaxConcurrentBodies {
		_, st := trickle(t, addr)
		statuses = append(statuses, st)
	}
	// The trickles hold every place: a request waits for none.
	require.Eventually(t, func() bool {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader("{}"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 10*time.Second, 10*time.Millisecond)
	for _, st := range statuses {
		select {
		case line := <-st:
			assert.Equal(t, "HTTP/1.1 408 Request Timeout", line, "a trickling body is cut")
		case <-time.After(time.Minute):
			t.Fatal("a trickling body was never cut")
		}
	}
	body := []byte("{}")
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", signature("s3cret", body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the places are free again")
}

// TestReadBody_Memory: forty unsigned 25 MiB bodies sent at once cost
// the master a few MiB, not a gigabyte: four are read (spooled to disk
// beyond 1 MiB until their signature fails), the others refused at once.
func TestReadBody_Memory(t *testing.T) {
	srv, _ := bodyServer(t, "s3cret", DefaultMaxBodyBytes)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for range 40 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL, io.LimitReader(zeros{}, DefaultMaxBodyBytes))
			req.ContentLength = DefaultMaxBodyBytes
			req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("00", 32))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0 // the server may close before reading a refused body whole
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(codes)
	seen := map[int]int{}
	for c := range codes {
		seen[c]++
	}
	grew := float64(peak.Load()) - float64(before.HeapInuse)
	t.Logf("40 unsigned 25 MiB bodies: answers %v; heap in use grew by %.1f MiB at most", seen, grew/(1<<20))
	assert.Zero(t, seen[http.StatusOK])
	assert.Positive(t, seen[http.StatusForbidden], "some bodies were read, and refused")
	assert.Less(t, grew, float64(64<<20), "the heap stays small")
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
