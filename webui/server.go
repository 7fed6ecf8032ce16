package webui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Server is a ci.Service that serves a master's web application over
// HTTP until the master stops, with the configuration's change hooks at
// /change_hook/<dialect>. The zero value listens on DefaultAddr (on
// DefaultProxiedAddr when the master has a public URL) and serves a read-only UI to anyone; Options adds logins and actions:
//
//	&webui.Server{Options: webui.Options{
//		Auth:  &webui.BasicAuth{HtpasswdFile: "/srv/kiln/htpasswd"},
//		Authz: webui.Authz{Force: webui.LoggedIn},
//	}}
type Server struct {
	// Options configure the web application (see NewHandler).
	Options Options
	// Addr is where to listen; if empty, DefaultProxiedAddr when the
	// master's PublicURL is set (a proxy in front is the way in),
	// DefaultAddr otherwise (see ListenAddr).
	Addr string
	// Listener, when set, is served instead of listening on an address
	// (tests pass one on 127.0.0.1:0).
	Listener net.Listener
	// Mounts adds handlers beside the web application, by path pattern
	// (for example "/change_hook/" for the change hooks).
	Mounts map[string]http.Handler
}

// Where a Server listens when its Addr is empty.
const (
	DefaultAddr = ":8010"
	// DefaultProxiedAddr is the address when the master has a public URL:
	// a proxy (nginx) in front is the way in, so the server listens on
	// the loopback interface only.
	DefaultProxiedAddr = "127.0.0.1:8010"
)

var _ ci.NetworkService = (*Server)(nil)

// ListenAddr returns the address Run listens on for a master of
// configuration c (when no Listener is given): Addr, or its default.
func (s *Server) ListenAddr(c *ci.MasterConfig) string {
	switch {
	case s.Addr != "":
		return s.Addr
	case c.PublicURL != "":
		return DefaultProxiedAddr
	}
	return DefaultAddr
}

// ListensOnNetwork implements ci.NetworkService: the server listens on
// its address unless it was given a Listener.
func (s *Server) ListensOnNetwork() bool { return s.Listener == nil }

// Run implements ci.Service.
func (s *Server) Run(ctx context.Context, m *ci.Master) error {
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.ListenAddr(m.Config())); err != nil {
			return fmt.Errorf("web: %w", err)
		}
	}
	app, err := newApp(m, &s.Options)
	if err != nil {
		if s.Listener == nil {
			ln.Close()
		}
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", app.handler())
	for _, h := range m.Config().ChangeHooks {
		mux.Handle("/change_hook/"+h.Dialect(), h.Handler(m))
	}
	for pattern, h := range s.Mounts {
		mux.Handle(pattern, h)
	}
	base, _ := basePath(m.Config().PublicURL) // checked by NewHandler
	srv := &http.Server{
		// The hooks and mounts too are served under the public URL's path.
		Handler:           bodyDeadline(stripBase(base, mux)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	// Event streams last as long as their page: they end when the server
	// shuts down, so that they do not hold it.
	srv.RegisterOnShutdown(func() { close(app.closing) })
	m.Logger().Info("web server listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("web: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("web: shut down: %w", err)
	}
	return nil
}

// bodyReadTimeout bounds the reading of a request's body (a form, a
// JSON-RPC call, a webhook): one that trickles in is cut. Requests
// without a body are not concerned, so that live streams and downloads,
// which last, keep going (a server-wide ReadTimeout would cut them).
var bodyReadTimeout = 30 * time.Second

// bodyDeadline sets the read deadline of requests that carry a body.
func bodyDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
		}
		h.ServeHTTP(w, r)
	})
}
