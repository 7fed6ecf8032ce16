package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnci/kiln/worker/command"
)

// Defaults for the Worker's zero fields.
const (
	// DefaultPort is the master port of a Master address without one:
	// Buildbot's worker port.
	DefaultPort = 9989
	// DefaultMinBackoff is the first wait before reconnecting.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff is the longest wait between two connection
	// attempts that the master refused (a wrong password, a name in use):
	// buildbot-worker's maxdelay.
	DefaultMaxBackoff = 5 * time.Minute
	// DefaultOutageBackoff is the longest wait between two connection
	// attempts while the master cannot be reached (stopped, restarting,
	// a network outage): whatever the outage's length, the workers are
	// back within about that long once the master is, each at a random
	// moment of it, so that many do not come back at once.
	DefaultOutageBackoff = 5 * time.Second
	// DefaultWriteTimeout bounds the writing of one frame. A master that
	// accepts nothing for that long is dropped and dialled again.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultDialTimeout bounds one connection attempt: the TCP and TLS
	// handshakes and the WebSocket upgrade.
	DefaultDialTimeout = 30 * time.Second
)

// stopGrace is how long a stopping worker lets its interrupted commands
// report how they ended before it closes the connection anyway.
const stopGrace = 30 * time.Second

// A Worker is a worker agent: Run connects it to its master and runs the
// master's commands until the context ends or the master tells it to shut
// down.
//
// The fields are its configuration; they are read when Run starts and
// must not change while it runs. Name, Master and BaseDir are required.
type Worker struct {
	// Name and Password are the worker's credentials, as the master's
	// configuration lists them. Name may not contain a colon.
	Name     string
	Password string

	// Master is where the master listens: "host:port", "host" (port
	// DefaultPort), or a "ws://" or "wss://" URL (path "/" if it has
	// none).
	Master string
	// CAFile is a file of PEM certificates that a wss:// master's
	// certificate must chain to, instead of the system's roots. A
	// relative name is taken from BaseDir.
	CAFile string
	// GuardArgs, when set, is the program (and its arguments) of the
	// worker's guard (see Guard), which Run starts first: if the worker
	// dies, even killed with SIGKILL, the guard kills the commands it was
	// running. kiln-worker runs itself ("kiln-worker guard"). Unix only.
	GuardArgs []string

	// AllowPlaintext lets the worker connect with plain ws:// to a master
	// that is not on this machine: its password then crosses the network
	// in clear, for anyone on the way to take its name. Without it, such a
	// master is refused; a loopback master (localhost, 127.0.0.1, ::1) is
	// always allowed.
	AllowPlaintext bool

	// BaseDir is the worker's base folder: builder folders are made in
	// it, its info folder describes the worker, and commands may not
	// reach outside it unless Unconfined. It is created if missing.
	BaseDir string
	// Unconfined lets the master's commands use any path the worker's
	// user can reach, as buildbot-worker does. By default paths outside
	// BaseDir are refused.
	Unconfined bool
	// DeleteLeftoverDirs asks the master to remove the folders of the
	// base folder that no builder uses any more, as buildbot-worker's
	// option of that name does.
	DeleteLeftoverDirs bool

	// Admin and Host describe the worker to the master's users. Empty
	// means the contents of BaseDir/info/admin and BaseDir/info/host, as
	// with buildbot-worker; every other file of info/ is sent too.
	Admin, Host string
	// Env is the environment commands start from and that the master is
	// shown; nil means the process environment.
	Env map[string]string

	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts: it doubles from MinBackoff up to MaxBackoff after each
	// failure, with random jitter, and starts again from MinBackoff once
	// the worker is attached. Zero means DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// OutageBackoff caps the waits while the master cannot be reached
	// at all (nothing listening, a broken connection): DefaultOutageBackoff
	// if zero, and never more than MaxBackoff.
	OutageBackoff time.Duration
	// WriteTimeout bounds the writing of one frame;
	// DefaultWriteTimeout if zero.
	WriteTimeout time.Duration
	// DialTimeout bounds one connection attempt; DefaultDialTimeout if
	// zero.
	DialTimeout time.Duration

	// Logger receives the worker's messages; slog.Default() if nil.
	Logger *slog.Logger
}

// An agent is a Worker's configuration checked and resolved, shared by its
// successive connections.
type agent struct {
	w       *Worker
	log     *slog.Logger
	url     string // ws:// or wss:// URL of the master
	tls     *tls.Config
	auth    string // Authorization header
	baseDir string // absolute
	env     map[string]string
	backoff backoff // after a refusal
	outage  backoff // while the master cannot be reached
	guard   *guardClient
	writeTO time.Duration
	dialTO  time.Duration
}

// Run connects to the master and serves it, reconnecting whenever the
// connection is lost or refused (a wrong password, a master that is down),
// with exponential backoff and jitter, for as long as ctx lasts.
//
// When ctx ends, or the master sends shutdown, running commands are
// interrupted, they report how they ended, the connection is closed and
// Run returns nil. Run returns an error only for a configuration it cannot
// run with, before connecting.
func (w *Worker) Run(ctx context.Context) error {
	a, err := w.agent()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.baseDir, 0o755); err != nil {
		return fmt.Errorf("worker %s: base folder: %w", w.Name, err)
	}
	if len(w.GuardArgs) > 0 {
		g, stop, err := startGuard(w.GuardArgs)
		if err != nil {
			return fmt.Errorf("worker %s: start its guard: %w", w.Name, err)
		}
		a.guard = g
		defer func() {
			if err := stop(); err != nil {
				a.log.Warn("the worker's guard ended badly", "err", err)
			}
		}()
	}
	attempt := 0
	for {
		a.log.Info("connecting to master", "master", a.url)
		res := a.connect(ctx)
		switch {
		case ctx.Err() != nil:
			a.log.Info("worker stopped")
			return nil
		case res.shutdown:
			a.log.Info("worker shut down by the master")
			return nil
		case res.attached:
			attempt = 0
		}
		wait := a.retryDelay(res, attempt)
		attempt++
		a.log.Warn("reconnecting", "in", wait.Round(time.Millisecond), "reason", res.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			a.log.Info("worker stopped")
			return nil
		case <-t.C:
		}
	}
}

// Validate reports every problem of w's configuration that would keep Run
// from starting: missing or malformed fields, an unreadable CA file.
func (w *Worker) Validate() error {
	_, err := w.agent()
	return err
}

// agent checks w and resolves what Run needs, reporting every problem.
func (w *Worker) agent() (*agent, error) {
	a := &agent{w: w, log: w.Logger, env: w.Env}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("worker", w.Name)
	var errs []error
	switch {
	case w.Name == "":
		errs = append(errs, errors.New("no name"))
	case strings.Contains(w.Name, ":"):
		errs = append(errs, fmt.Errorf("name %q contains a colon, which HTTP Basic authentication cannot carry", w.Name))
	}
	if w.BaseDir == "" {
		errs = append(errs, errors.New("no base folder"))
	} else if dir, err := filepath.Abs(w.BaseDir); err != nil {
		errs = append(errs, fmt.Errorf("base folder: %w", err))
	} else {
		a.baseDir = dir
	}
	u, err := masterURL(w.Master)
	if err != nil {
		errs = append(errs, err)
	}
	a.url = u
	if err == nil && strings.HasPrefix(u, "ws://") && !w.AllowPlaintext && !loopbackURL(u) {
		errs = append(errs, fmt.Errorf("master %s is not on this machine, and ws:// would send the worker's password in clear: "+
			"connect with TLS (a wss:// URL, or kiln-worker create-worker --use-tls), or allow plain ws:// on a trusted network (--allow-plaintext)", w.Master))
	}
	if strings.HasPrefix(u, "wss://") {
		caFile := w.CAFile
		if caFile != "" && !filepath.IsAbs(caFile) && a.baseDir != "" {
			caFile = filepath.Join(a.baseDir, caFile)
		}
		if a.tls, err = tlsConfig(caFile); err != nil {
			errs = append(errs, err)
		}
	} else if w.CAFile != "" && err == nil {
		errs = append(errs, fmt.Errorf("a CA file is given but master %q is not a wss:// URL", w.Master))
	}
	if w.MinBackoff < 0 || w.MaxBackoff < 0 || w.OutageBackoff < 0 || w.WriteTimeout < 0 || w.DialTimeout < 0 {
		errs = append(errs, errors.New("negative backoff or timeout"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("worker %s: %w", w.Name, err)
	}
	a.auth = basicAuth(w.Name, w.Password)
	a.backoff = backoff{min: orDefault(w.MinBackoff, DefaultMinBackoff), max: orDefault(w.MaxBackoff, DefaultMaxBackoff)}
	a.outage = backoff{min: a.backoff.min, max: min(a.backoff.max, orDefault(w.OutageBackoff, DefaultOutageBackoff))}
	a.writeTO = orDefault(w.WriteTimeout, DefaultWriteTimeout)
	a.dialTO = orDefault(w.DialTimeout, DefaultDialTimeout)
	if a.env == nil {
		a.env = command.Environ()
	}
	return a, nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// loopbackURL reports whether a master URL names this machine: localhost
// or a loopback address.
func loopbackURL(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := parsed.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// retryDelay is the wait before the next connection attempt after
// attempt failed ones: up to MaxBackoff when the master refused the
// worker (asking again soon would change nothing), up to OutageBackoff
// when it could not be reached.
func (a *agent) retryDelay(res connectResult, attempt int) time.Duration {
	if res.refused {
		return a.backoff.delay(attempt)
	}
	return a.outage.delay(attempt)
}
