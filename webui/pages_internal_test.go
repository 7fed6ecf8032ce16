package webui

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPreciseDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0 ms"},
		{0, "0 ms"},
		{850 * time.Millisecond, "850 ms"},
		{999*time.Millisecond + 900*time.Microsecond, "999 ms"},
		{time.Second, "1.0 s"},
		{4200 * time.Millisecond, "4.2 s"},
		{4249 * time.Millisecond, "4.2 s"},
		{9940 * time.Millisecond, "9.9 s"},
		{9960 * time.Millisecond, "10s"},
		{65 * time.Second, "1m 05s"},
		{2*time.Hour + 3*time.Second, "2h 00m 03s"},
	} {
		assert.Equal(t, tt.want, preciseDuration(tt.d), "%v", tt.d)
	}
}

// TestSafeNext: the login page sends the browser back within the
// application only.
func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/builders/pkg":          "/builders/pkg",
		"/builders/pkg?page=2#x": "/builders/pkg?page=2",
		"":                       "/",
		"//evil.example":         "/",
		"/\t/evil.example":       "/",
		"/\n/evil.example":       "/",
		"/\\evil.example":        "/",
		"\\\\evil.example":       "/",
		"https://evil.example/":  "/",
		"javascript:alert(1)":    "/",
		"/%2F/evil.example":      "/",
		"builders":               "/",
		"///evil.example":        "/",
		"/ok/../../evil":         "/ok/../../evil",
		"http:/evil.example":     "/",
		"/x\x7fy":                "/",
	} {
		if got := safeNext("/", next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
	if got := safeNext("/ci/", "/other"); got != "/ci/" {
		t.Errorf("outside the base path: %q", got)
	}
}

// TestSSE_NoForgery: data with carriage returns (a log line's) cannot end
// its event's line nor make another event: SSE ends lines at "\r" too.
func TestSSE_NoForgery(t *testing.T) {
	rec := httptest.NewRecorder()
	s := &sseWriter{w: rec, rc: http.NewResponseController(rec)}
	if err := s.event("lines", "5", "<span>a\rdata: forged\r\revent: done\r</span>\nnext\x1b"); err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	if strings.ContainsAny(body, "\r\x1b") {
		t.Fatalf("raw control characters in the stream: %q", body)
	}
	// Parse as a browser does: lines end at \r\n, \r or \n; a blank line
	// ends an event.
	var events []string
	name := ""
	for _, line := range strings.FieldsFunc(strings.ReplaceAll(body, "\n\n", "\n\x00\n"), func(r rune) bool { return r == '\n' || r == '\r' }) {
		switch {
		case line == "\x00":
			events = append(events, name)
			name = ""
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		}
	}
	if len(events) != 1 || events[0] != "lines" {
		t.Errorf("events %q, want one lines event", events)
	}
	if !strings.Contains(body, "data: <span>a␍data: forged␍␍event: done␍</span>\ndata: next␛\n") {
		t.Errorf("the data is not shown as sent: %q", body)
	}
}

// TestBodyDeadline: a body that trickles in is cut after
// bodyReadTimeout; requests without one are left alone.
func TestBodyDeadline(t *testing.T) {
	saved := bodyReadTimeout
	bodyReadTimeout = 500 * time.Millisecond
	t.Cleanup(func() { bodyReadTimeout = saved })
	read := make(chan error, 1)
	srv := httptest.NewServer(bodyDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		read <- err
	})))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	select {
	case err := <-read:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("the body's read ended with %v, want the deadline", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a trickling body was never cut")
	}
}
