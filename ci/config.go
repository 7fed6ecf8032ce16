package ci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Defaults of MasterConfig.
const (
	DefaultDatabase   = "state.sqlite"
	DefaultWorkerAddr = ":9989"
	DefaultHTTPAddr   = ":8010"
	// DefaultProxiedHTTPAddr is the web server's address when a public
	// URL is set: a proxy (nginx) in front is the way in, so the master
	// listens on the loopback interface only.
	DefaultProxiedHTTPAddr = "127.0.0.1:8010"
	DefaultShutdownTimeout = 10 * time.Second
)

// MasterConfig is the whole configuration of a master, Buildbot's master.cfg
// as a Go value. NewMaster checks it in one pass and reports every problem.
type MasterConfig struct {
	// Title names the project in the web UI; TitleURL is where the title
	// links to.
	Title    string
	TitleURL string
	// PublicURL is the master's web address as users reach it (behind a
	// reverse proxy, the proxy's address), used in links sent out.
	PublicURL string

	Workers    []WorkerConfig
	Builders   []BuilderConfig
	Schedulers []Scheduler
	// Secrets give the values of %(secret:name)s, asked in order; every
	// value a build reads is then redacted from what the master writes.
	Secrets []SecretProvider

	// ChangeHooks are served by the web server at /change_hook/<dialect>.
	ChangeHooks []ChangeHook
	// Reporters are told of every build that starts and finishes. A
	// reporter that is also a Service (one that keeps a connection, as the
	// IRC bot) is run as the services are.
	Reporters []Reporter
	// Services run beside the master for as long as it runs: the web server,
	// the worker listener, in-process workers.
	Services []Service

	// BaseDir is the master's folder: the database and uploaded files are
	// relative to it. Empty means the current folder.
	BaseDir string
	// Database is the path of the SQLite database file, relative to
	// BaseDir (DefaultDatabase if empty), opened with the store driver
	// registered as "sqlite" (import github.com/kilnci/kiln/ci/sqlite);
	// or the URL of a PostgreSQL database, "postgres://..." or
	// "postgresql://...", opened with the driver registered as "postgres"
	// (import github.com/kilnci/kiln/ci/postgres). A URL holds a password:
	// the master never shows it (see DatabaseName).
	Database string
	// Store, when set, is used instead of opening Database. The master does
	// not close it.
	Store Store

	// WorkerAddr is where the worker listener accepts workers
	// (DefaultWorkerAddr if empty); HTTPAddr is where the web server
	// listens (if empty, DefaultProxiedHTTPAddr when PublicURL is set,
	// DefaultHTTPAddr otherwise; see WebAddr). The services read them.
	WorkerAddr string
	HTTPAddr   string

	// ShutdownTimeout is how long Run waits, once its context ends, for
	// running builds to finish before interrupting them; they then end as
	// RETRY and are built again after a restart. Zero means
	// DefaultShutdownTimeout; negative means interrupt at once.
	ShutdownTimeout time.Duration

	// Logger receives the master's log; slog.Default() if nil.
	Logger *slog.Logger
	// Clock gives the time and runs timers; the system clock if nil.
	// Tests set a fake one.
	Clock Clock
}

// DatabasePath returns the database file's path: Database joined to
// BaseDir, with the defaults applied. A database URL is returned as it is,
// password included: show DatabaseName instead.
func (c *MasterConfig) DatabasePath() string {
	db := c.Database
	if db == "" {
		db = DefaultDatabase
	}
	if _, ok := DatabaseDriver(db); ok || filepath.IsAbs(db) || c.BaseDir == "" {
		return db
	}
	return filepath.Join(c.BaseDir, db)
}

// DatabaseName returns the database's path, or its URL without the
// password, for messages and logs.
func (c *MasterConfig) DatabaseName() string {
	db := c.DatabasePath()
	if _, ok := DatabaseDriver(db); ok {
		return RedactURL(db)
	}
	return db
}

// DatabaseDriver returns the name of the store driver that opens the
// database db (a MasterConfig.Database): "postgres" for a postgres:// or
// postgresql:// URL, true; "sqlite" for anything else, a file's path,
// false.
func DatabaseDriver(db string) (driver string, url bool) {
	scheme, _, ok := strings.Cut(db, "://")
	if ok && (strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql")) {
		return "postgres", true
	}
	return "sqlite", false
}

// RedactURL returns a URL with its password replaced by "xxxxx" (in its
// user information and in a password= parameter), for messages and logs.
// A URL that does not parse is not shown at all: only its scheme is.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		scheme, _, _ := strings.Cut(s, "://")
		return scheme + "://(a URL that does not parse)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// WebAddr returns where the web server listens: HTTPAddr, or its default.
func (c *MasterConfig) WebAddr() string {
	switch {
	case c.HTTPAddr != "":
		return c.HTTPAddr
	case c.PublicURL != "":
		return DefaultProxiedHTTPAddr
	}
	return DefaultHTTPAddr
}

// A WorkerConfig declares a worker the master accepts.
type WorkerConfig struct {
	Name string
	// Password authenticates the worker: the plain password, or its bcrypt
	// hash ("$2a$...", "$2b$..."). It is never logged or shown. An
	// in-process worker needs none.
	Password string
	// Properties are given to every build on this worker, with source
	// "Worker".
	Properties map[string]any
	// MaxBuilds is the most builds the worker runs at once, across all its
	// builders; 0 means no limit. A worker runs at most one build of each
	// builder at a time, as in Buildbot.
	MaxBuilds int
}

// String describes the worker without its password.
func (w WorkerConfig) String() string { return fmt.Sprintf("worker %q", w.Name) }

// LogValue logs the worker without its password.
func (w WorkerConfig) LogValue() slog.Value { return slog.StringValue(w.Name) }

// A BuilderConfig declares a builder: which workers may run its builds and
// the steps of each build.
type BuilderConfig struct {
	Name        string
	Description string
	// Workers names the workers that may run the builder's builds.
	Workers []string
	// Steps run in order in every build.
	Steps []Step
	// Properties are given to every build of this builder, with source
	// "Builder".
	Properties map[string]any
	Tags       []string
	// CollapseRequests lets pending requests for the same source (codebase,
	// repository, branch, project) be served by one build of the newest.
	CollapseRequests bool
	// WorkerBuildDir is the builder's folder on each worker, relative to
	// the worker's base folder; the builder's name if empty.
	WorkerBuildDir string
	// Locks are taken when a build starts and held to its end; a build
	// starts only when they are free (see Lock).
	Locks []LockAccess
	// NextWorker, when set, chooses which of the free workers (names, in
	// configuration order) runs a request's build; "" leaves the request
	// waiting. By default the least busy worker, then the one idle longest.
	// It is called with the master's distribution lock held: it must be
	// quick and must not call the master.
	NextWorker func(workers []string, req *BuildRequest) string
	// NextBuild, when set, chooses which of the builder's pending requests
	// (in priority order) is built next; nil leaves them waiting. The same
	// rules as for NextWorker apply.
	NextBuild func(reqs []*BuildRequest) *BuildRequest
}

// BuildDir returns the builder's folder on workers.
func (b *BuilderConfig) BuildDir() string {
	if b.WorkerBuildDir != "" {
		return b.WorkerBuildDir
	}
	return b.Name
}

// A Scheduler decides when builds are requested, and submits buildsets
// through the master (Master.Submit). Package scheduler has Buildbot's
// schedulers.
//
// A scheduler that reacts to changes also implements ChangeListener; one
// that works in the background (timers) also implements Service, and the
// master runs it as it runs services.
//
// The configuration check calls a scheduler's (or a step's) Validate()
// error method if it has one, then its ValidateConfig(*MasterConfig) error
// method if it has one: that one sees the whole configuration, to check
// the names of other schedulers, say.
type Scheduler interface {
	// SchedulerName identifies the scheduler; it is unique in a master.
	SchedulerName() string
	// BuilderNames lists the builders the scheduler may submit to; the
	// master checks that they exist.
	BuilderNames() []string
}

// A ChangeListener is told of every change the master stores, in order,
// before the change is acknowledged to whoever submitted it: buildsets it
// submits from OnChange are durable by then. An error is logged and does not
// undo the change.
type ChangeListener interface {
	OnChange(ctx context.Context, m *Master, c *Change) error
}

// A Service runs beside the master. Run is called once, in its own
// goroutine, after the master has opened its store and recovered from its
// last stop; it blocks until ctx ends and must stop everything it started
// before returning. A Service that returns an error while ctx has not ended
// stops the master with that error.
type Service interface {
	Run(ctx context.Context, m *Master) error
}

// A NetworkService is a Service that listens on the network: the web
// server, the worker port. ci/citest runs a configuration without those
// that would open a socket of their own, so that a test runs the
// configuration a master program uses without taking its ports.
type NetworkService interface {
	Service
	// ListensOnNetwork reports whether Run would open a listening socket
	// of its own (false when the service was given a listener).
	ListensOnNetwork() bool
}

// ServiceFunc adapts a function to a Service.
type ServiceFunc func(ctx context.Context, m *Master) error

// Run calls f.
func (f ServiceFunc) Run(ctx context.Context, m *Master) error { return f(ctx, m) }

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks the configuration and returns every problem found, one
// per line, each naming the field at fault.
func (c *MasterConfig) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	workers := map[string]bool{}
	for i, w := range c.Workers {
		switch {
		case w.Name == "":
			add("workers[%d]: Name is empty", i)
		case !nameRe.MatchString(w.Name):
			add("workers[%d]: Name %q may only have letters, digits, '.', '_' and '-'", i, w.Name)
		case workers[w.Name]:
			add("workers[%d]: duplicate worker name %q", i, w.Name)
		}
		workers[w.Name] = true
		if w.MaxBuilds < 0 {
			add("worker %q: MaxBuilds is negative (%d)", w.Name, w.MaxBuilds)
		}
		for k, v := range w.Properties {
			if err := CheckValue(v); err != nil {
				add("worker %q: Properties[%q]: %v", w.Name, k, err)
			}
		}
	}

	builders := map[string]bool{}
	dirs := map[string]string{}
	for i, b := range c.Builders {
		label := fmt.Sprintf("builder %q", b.Name)
		switch {
		case b.Name == "":
			add("builders[%d]: Name is empty", i)
			label = fmt.Sprintf("builders[%d]", i)
		case !nameRe.MatchString(b.Name):
			add("builders[%d]: Name %q may only have letters, digits, '.', '_' and '-'", i, b.Name)
		case builders[b.Name]:
			add("builders[%d]: duplicate builder name %q", i, b.Name)
		}
		builders[b.Name] = true
		dir := b.BuildDir()
		if dir != "" {
			if filepath.IsAbs(dir) || strings.Contains(dir, "..") || strings.ContainsAny(dir, `/\`) {
				add("%s: WorkerBuildDir %q must be a plain folder name", label, dir)
			} else if other, ok := dirs[dir]; ok && other != b.Name {
				add("%s: WorkerBuildDir %q is also used by builder %q", label, dir, other)
			}
			dirs[dir] = b.Name
		}
		if len(b.Workers) == 0 {
			add("%s: Workers is empty", label)
		}
		seen := map[string]bool{}
		for _, w := range b.Workers {
			if !workers[w] {
				add("%s: Workers: unknown worker %q", label, w)
			}
			if seen[w] {
				add("%s: Workers: worker %q listed twice", label, w)
			}
			seen[w] = true
		}
		if len(b.Steps) == 0 {
			add("%s: Steps is empty", label)
		}
		for j, s := range b.Steps {
			if s == nil {
				add("%s: Steps[%d] is nil", label, j)
				continue
			}
			if v, ok := s.(validator); ok {
				if err := v.Validate(); err != nil {
					for _, line := range strings.Split(err.Error(), "\n") {
						add("%s: Steps[%d] (%s): %s", label, j, s.Options().Name, line)
					}
				}
			}
			if v, ok := s.(configValidator); ok {
				if err := v.ValidateConfig(c); err != nil {
					for _, line := range strings.Split(err.Error(), "\n") {
						add("%s: Steps[%d] (%s): %s", label, j, s.Options().Name, line)
					}
				}
			}
		}
		for k, v := range b.Properties {
			if err := CheckValue(v); err != nil {
				add("%s: Properties[%q]: %v", label, k, err)
			}
		}
	}

	errs = append(errs, checkLocks(c)...)

	scheds := map[string]bool{}
	for i, s := range c.Schedulers {
		if s == nil {
			add("schedulers[%d] is nil", i)
			continue
		}
		name := s.SchedulerName()
		switch {
		case name == "":
			add("schedulers[%d]: name is empty", i)
		case scheds[name]:
			add("schedulers[%d]: duplicate scheduler name %q", i, name)
		}
		scheds[name] = true
		if len(s.BuilderNames()) == 0 {
			add("scheduler %q: no builders", name)
		}
		for _, b := range s.BuilderNames() {
			if !builders[b] {
				add("scheduler %q: unknown builder %q", name, b)
			}
		}
		if v, ok := s.(validator); ok {
			if err := v.Validate(); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					add("scheduler %q: %s", name, line)
				}
			}
		}
		if v, ok := s.(configValidator); ok {
			if err := v.ValidateConfig(c); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					add("scheduler %q: %s", name, line)
				}
			}
		}
	}
	for i, s := range c.Services {
		if s == nil {
			add("services[%d] is nil", i)
			continue
		}
		if v, ok := s.(validator); ok {
			if err := v.Validate(); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					add("services[%d] (%T): %s", i, s, line)
				}
			}
		}
		if v, ok := s.(configValidator); ok {
			if err := v.ValidateConfig(c); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					add("services[%d] (%T): %s", i, s, line)
				}
			}
		}
	}
	dialects := map[string]bool{}
	for i, h := range c.ChangeHooks {
		if h == nil {
			add("change hooks[%d] is nil", i)
			continue
		}
		d := h.Dialect()
		if !nameRe.MatchString(d) {
			add("change hooks[%d]: dialect %q may only have letters, digits, '.', '_' and '-'", i, d)
		} else if dialects[d] {
			add("change hooks[%d]: dialect %q is served twice", i, d)
		}
		dialects[d] = true
		if v, ok := h.(validator); ok {
			if err := v.Validate(); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					add("change hook %q: %s", d, line)
				}
			}
		}
	}
	for i, p := range c.Secrets {
		if p == nil {
			add("secrets[%d] is nil", i)
		}
	}
	for i, r := range c.Reporters {
		if r == nil {
			add("reporters[%d] is nil", i)
			continue
		}
		if v, ok := r.(validator); ok {
			if err := v.Validate(); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					add("reporters[%d] (%T): %s", i, r, line)
				}
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &ConfigError{Problems: errs}
}

// A ConfigError lists every problem found in a configuration.
type ConfigError struct {
	Problems []error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems.
func (e *ConfigError) Unwrap() []error { return e.Problems }

// ErrInvalidConfig is matched by errors.Is on every *ConfigError.
var ErrInvalidConfig = errors.New("invalid configuration")

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }
