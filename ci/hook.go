package ci

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// A ChangeHook turns the HTTP requests of a forge (GitHub, GitLab, a
// script) into changes. The web server serves each hook of the
// configuration at /change_hook/<Dialect>, Buildbot's paths, so that
// existing webhook settings keep working. Package hook has Kiln's.
type ChangeHook interface {
	// Dialect names the hook ("github", "gitlab", "base").
	Dialect() string
	// Handler returns the hook's handler for m. It is called once, when the
	// web server starts.
	Handler(m *Master) http.Handler
}

// NoteHookDelivery tells the master's subscribers (the metrics) that a
// change hook answered a request with an HTTP status.
func (m *Master) NoteHookDelivery(dialect string, status int) {
	m.publish(Event{Type: EventHookDelivery, Dialect: dialect, Status: status})
}

// BuildURL returns the address of a build's page, under the master's
// public URL: <PublicURL>builders/<builder>/builds/<number>. It is "" when
// no public URL is configured.
func (m *Master) BuildURL(builder string, number int) string {
	base := m.cfg.PublicURL
	if base == "" {
		return ""
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return base + "builders/" + url.PathEscape(builder) + "/builds/" + strconv.Itoa(number)
}
