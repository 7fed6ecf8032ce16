package webui

import (
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
