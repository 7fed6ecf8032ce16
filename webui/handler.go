package webui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Options configure the web application. The zero value (and nil) serves
// a read-only UI that anyone can see: no one logs in and every action is
// turned off.
type Options struct {
	// Auth checks who a request comes from (HTTP basic auth); nil lets no
	// one log in.
	Auth *BasicAuth
	// Authz says who may force, stop and cancel builds.
	Authz Authz
	// PageSize is how many builds or changes a page lists
	// (DefaultPageSize if zero).
	PageSize int
	// GridChanges is how many recent changes the grid shows
	// (DefaultGridChanges if zero).
	GridChanges int
	// Logger receives the web application's log; the master's if nil.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultPageSize    = 50
	DefaultGridChanges = 20
	// maxGridChanges bounds the changes a grid may be asked to show.
	maxGridChanges = 1000
)

// app is the web application of one master.
type app struct {
	m     *ci.Master
	log   *slog.Logger
	opts  Options
	auth  *authenticator
	csrf  *http.CrossOriginProtection
	base  string // the path of the public URL, ending in "/"
	pages pageSet
	// closing is closed when the server shuts down: streams and waits end
	// then, not when the master has stopped, which waits for the server.
	closing chan struct{}
}

// Handler returns the web application of m with the default options: a
// read-only UI that anyone can see. The master must be running (or about to
// run): requests wait for it to be ready.
func Handler(m *ci.Master) http.Handler {
	h, err := NewHandler(m, nil)
	if err != nil {
		panic(err) // the zero options have nothing that can fail
	}
	return h
}

// NewHandler returns the web application of m: pages, the JSON API under
// /api/v2 and live updates, at the path of the master's public URL (and at
// the root, for a proxy that strips that path). It reports a problem of
// opts (an unreadable htpasswd file, a password that is not a bcrypt hash)
// at once.
func NewHandler(m *ci.Master, opts *Options) (http.Handler, error) {
	a, err := newApp(m, opts)
	if err != nil {
		return nil, err
	}
	return a.handler(), nil
}

// handler is the application's handler, at its base path.
func (a *app) handler() http.Handler { return stripBase(a.base, a.routes()) }

// newApp checks opts and makes the application of m.
func newApp(m *ci.Master, opts *Options) (*app, error) {
	a := &app{m: m, closing: make(chan struct{})}
	if opts != nil {
		a.opts = *opts
	}
	a.log = a.opts.Logger
	if a.log == nil {
		a.log = m.Logger()
	}
	if a.opts.PageSize <= 0 {
		a.opts.PageSize = DefaultPageSize
	}
	if a.opts.GridChanges <= 0 {
		a.opts.GridChanges = DefaultGridChanges
	}
	var err error
	if a.auth, err = newAuthenticator(a.opts.Auth, m.Config().Title); err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	a.base, err = basePath(m.Config().PublicURL)
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	a.csrf = http.NewCrossOriginProtection()
	if o := origin(m.Config().PublicURL); o != "" {
		if err := a.csrf.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("webui: public URL: %w", err)
		}
	}
	if a.pages, err = parsePages(m.Now); err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	return a, nil
}

// basePath returns the path of a public URL, ending in "/".
func basePath(public string) (string, error) {
	if public == "" {
		return "/", nil
	}
	u, err := url.Parse(public)
	if err != nil {
		return "", fmt.Errorf("public URL %q: %w", public, err)
	}
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}

// origin returns the origin (scheme://host[:port]) of a public URL, or "".
func origin(public string) string {
	u, err := url.Parse(public)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// stripBase serves h at the base path, and at the root for a proxy that
// strips the base path before passing requests on.
func stripBase(base string, h http.Handler) http.Handler {
	if base == "/" {
		return h
	}
	prefix := strings.TrimSuffix(base, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == prefix {
			http.Redirect(w, r, base, http.StatusMovedPermanently)
			return
		}
		if rest, ok := strings.CutPrefix(r.URL.Path, prefix+"/"); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + rest
			r2.URL.RawPath = ""
			h.ServeHTTP(w, r2)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	page := func(pattern string, fn pageFunc) { mux.Handle(pattern, a.page(fn)) }
	page("GET /{$}", a.home)
	page("GET /builders", a.home)
	page("GET /builders/{builder}", a.builderPage)
	page("GET /builders/{builder}/builds/{number}", a.buildPage)
	page("GET /builders/{builder}/builds/{number}/steps/{step}/logs/{log}", a.logPage)
	page("GET /workers", a.workersPage)
	page("GET /workers/{worker}", a.workerPage)
	page("GET /changes", a.changesPage)
	page("GET /grid", a.gridPage)
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /live", a.liveEvents)
	mux.HandleFunc("GET /logs/{id}/live", a.liveLog)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler()))
	mux.Handle("POST /builders/{builder}/force", a.form(a.forceForm))
	mux.Handle("POST /builders/{builder}/builds/{number}/stop", a.form(a.stopForm))
	mux.Handle("POST /builders/{builder}/builds/{number}/rebuild", a.form(a.rebuildForm))
	mux.Handle("POST /buildrequests/{id}/cancel", a.form(a.cancelForm))
	mux.Handle("POST /workers/{worker}/{action}", a.form(a.workerForm))
	a.apiRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.pageError(w, r, fmt.Errorf("%w: no page %s", errNotFound, r.URL.Path))
	})
	return securityHeaders(mux)
}

// securityHeaders sets the headers every answer carries: a content
// security policy that allows only the application's own scripts and
// styles, so that text that slipped through escaping could not run.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

// Errors of the handlers themselves, classified by status.
var (
	errBadRequest   = errors.New("bad request")
	errNotFound     = errors.New("not found")
	errMethod       = errors.New("method not allowed")
	errUnauthorized = errors.New("login required")
	errForbidden    = errors.New("forbidden")
	// errTooMany: too many failed logins from the client's address; a
	// *retryError says for how long.
	errTooMany = errors.New("too many failed logins")
)

// A retryError is an error after which the client may try again in
// After (the Retry-After header).
type retryError struct {
	err   error
	After time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// status decides the HTTP status of an error: the one table of it.
func status(err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, ci.ErrInvalidForce),
		errors.Is(err, ci.ErrUnknownBuilder), errors.Is(err, ci.ErrInvalidConfig):
		return http.StatusBadRequest
	case errors.Is(err, errTooMany):
		return http.StatusTooManyRequests
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errNotFound), errors.Is(err, ci.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, ci.ErrConflict), errors.Is(err, ci.ErrBuildNotRunning), errors.Is(err, ci.ErrWorkerNotConnected):
		return http.StatusConflict
	case errors.Is(err, ci.ErrNotRunning), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorText is the one line an error answer carries: the error itself, or
// "internal error" for errors that are not the client's (which are logged).
func (a *app) errorText(r *http.Request, err error) (int, string) {
	code := status(err)
	if code == http.StatusInternalServerError {
		a.log.Error("web request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		return code, "internal error"
	}
	return code, strings.ReplaceAll(err.Error(), "\n", "; ")
}

// challenge asks for credentials on a 401 answer, and says when to try
// again after a 429.
func (a *app) challenge(w http.ResponseWriter, code int, err error) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", a.auth.challenge())
	}
	var re *retryError
	if errors.As(err, &re) {
		w.Header().Set("Retry-After", strconv.Itoa(int(re.After.Round(time.Second)/time.Second)+1))
	}
}

// requestTimeout bounds the store reads of one request (not live streams).
const requestTimeout = 10 * time.Second

// store returns the master's store, waiting for the master to be ready.
func (a *app) store(ctx context.Context) (ci.Store, error) {
	return a.m.Store(ctx)
}
