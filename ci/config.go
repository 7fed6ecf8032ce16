package ci

import (
	"cmp"
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
	DefaultDatabase        = "state.sqlite"
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
	// the worker listener, in-process workers. A service that listens on
	// the network carries its own address (webui.Server.Addr,
	// remote.Listener.Addr).
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

	// Name identifies the master among masters sharing a PostgreSQL
	// database: each needs its own, kept from one run to the next (its
	// unfinished builds are closed when it starts again). Empty means
	// DefaultMasterName: "<host name>:<absolute BaseDir>".
	Name string
	// Heartbeat is how often a master sharing its database records that
	// it is alive, looks for dead masters, claims the schedulers and
	// re-reads the pending requests (DefaultHeartbeat if zero).
	Heartbeat time.Duration
	// DeadAfter is how old the last heartbeat of a master sharing the
	// database must be for another to take it for dead: it then ends the
	// dead master's builds as RETRY, to be built again, and takes over
	// its schedulers (DefaultDeadAfter if zero). It must be longer than
	// Heartbeat, and the masters' clocks must agree to well within it.
	DeadAfter time.Duration

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

// A Preparer is a Service with something to do before the master runs
// anything: Prepare is called once, synchronously, before the master
// starts its services, its first build or its web server, so that a
// service that follows the master's events (Subscribe) sees them all,
// whereas one that subscribes in Run may miss the first.
type Preparer interface {
	Service
	Prepare(m *Master)
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
	v := &configCheck{c: c}
	workers := v.workers()
	builders := v.builders(workers)
	v.errs = append(v.errs, checkLocks(c)...)
	if c.Heartbeat < 0 || c.DeadAfter < 0 {
		v.add("Heartbeat (%s) and DeadAfter (%s) must not be negative", c.Heartbeat, c.DeadAfter)
	} else if hb, dead := cmp.Or(c.Heartbeat, DefaultHeartbeat), cmp.Or(c.DeadAfter, DefaultDeadAfter); dead <= hb {
		v.add("DeadAfter (%s) must be longer than Heartbeat (%s)", dead, hb)
	}

	// The other parts: each must not be nil, passes the checks Validate
	// makes of its kind, then its own (Validate, and ValidateConfig where
	// the kind is checked against the whole configuration), whose
	// problems are prefixed with what label says.
	scheds := map[string]bool{}
	dialects := map[string]bool{}
	parts := []struct {
		list   string // the list's name in a nil part's problem
		items  []any
		label  func(i int, p any) string
		check  func(i int, p any)
		config bool // ValidateConfig is asked too
	}{
		{
			list: "schedulers", items: anys(c.Schedulers), config: true,
			label: func(_ int, p any) string { return fmt.Sprintf("scheduler %q", p.(Scheduler).SchedulerName()) },
			check: func(i int, p any) {
				s := p.(Scheduler)
				name := s.SchedulerName()
				switch {
				case name == "":
					v.add("schedulers[%d]: name is empty", i)
				case scheds[name]:
					v.add("schedulers[%d]: duplicate scheduler name %q", i, name)
				}
				scheds[name] = true
				if len(s.BuilderNames()) == 0 {
					v.add("scheduler %q: no builders", name)
				}
				for _, b := range s.BuilderNames() {
					if !builders[b] {
						v.add("scheduler %q: unknown builder %q", name, b)
					}
				}
			},
		},
		{
			list: "services", items: anys(c.Services), config: true,
			label: func(i int, p any) string { return fmt.Sprintf("services[%d] (%T)", i, p) },
		},
		{
			list: "change hooks", items: anys(c.ChangeHooks),
			label: func(_ int, p any) string { return fmt.Sprintf("change hook %q", p.(ChangeHook).Dialect()) },
			check: func(i int, p any) {
				d := p.(ChangeHook).Dialect()
				if !nameRe.MatchString(d) {
					v.add("change hooks[%d]: dialect %q may only have letters, digits, '.', '_' and '-'", i, d)
				} else if dialects[d] {
					v.add("change hooks[%d]: dialect %q is served twice", i, d)
				}
				dialects[d] = true
			},
		},
		// A secret provider has no checks of its own.
		{list: "secrets", items: anys(c.Secrets)},
		{
			list: "reporters", items: anys(c.Reporters),
			label: func(i int, p any) string { return fmt.Sprintf("reporters[%d] (%T)", i, p) },
		},
	}
	for _, l := range parts {
		for i, p := range l.items {
			if p == nil {
				v.add("%s[%d] is nil", l.list, i)
				continue
			}
			if l.check != nil {
				l.check(i, p)
			}
			if l.label != nil {
				v.own(l.label(i, p), p, l.config)
			}
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	return &ConfigError{Problems: v.errs}
}

// A configCheck collects the problems Validate finds in c.
type configCheck struct {
	c    *MasterConfig
	errs []error
}

func (v *configCheck) add(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

// workers checks the workers and returns the set of their names.
func (v *configCheck) workers() map[string]bool {
	workers := map[string]bool{}
	for i, w := range v.c.Workers {
		v.name("workers", "worker", i, w.Name, workers)
		label := fmt.Sprintf("worker %q", w.Name)
		if w.MaxBuilds < 0 {
			v.add("%s: MaxBuilds is negative (%d)", label, w.MaxBuilds)
		}
		v.properties(label, w.Properties)
	}
	return workers
}

// builders checks the builders against the set of workers and returns
// the set of their names.
func (v *configCheck) builders(workers map[string]bool) map[string]bool {
	builders := map[string]bool{}
	dirs := map[string]string{}
	for i, b := range v.c.Builders {
		label := fmt.Sprintf("builder %q", b.Name)
		if b.Name == "" {
			label = fmt.Sprintf("builders[%d]", i)
		}
		v.name("builders", "builder", i, b.Name, builders)
		dir := b.BuildDir()
		if dir != "" {
			if filepath.IsAbs(dir) || strings.Contains(dir, "..") || strings.ContainsAny(dir, `/\`) {
				v.add("%s: WorkerBuildDir %q must be a plain folder name", label, dir)
			} else if other, ok := dirs[dir]; ok && other != b.Name {
				v.add("%s: WorkerBuildDir %q is also used by builder %q", label, dir, other)
			}
			dirs[dir] = b.Name
		}
		if len(b.Workers) == 0 {
			v.add("%s: Workers is empty", label)
		}
		seen := map[string]bool{}
		for _, w := range b.Workers {
			if !workers[w] {
				v.add("%s: Workers: unknown worker %q", label, w)
			}
			if seen[w] {
				v.add("%s: Workers: worker %q listed twice", label, w)
			}
			seen[w] = true
		}
		if len(b.Steps) == 0 {
			v.add("%s: Steps is empty", label)
		}
		for j, s := range b.Steps {
			if s == nil {
				v.add("%s: Steps[%d] is nil", label, j)
				continue
			}
			v.own(fmt.Sprintf("%s: Steps[%d] (%s)", label, j, s.Options().Name), s, true)
		}
		v.properties(label, b.Properties)
	}
	return builders
}

// name checks the name of list[i], a kind of which each needs a name of
// its own, and adds it to seen.
func (v *configCheck) name(list, kind string, i int, name string, seen map[string]bool) {
	switch {
	case name == "":
		v.add("%s[%d]: Name is empty", list, i)
	case !nameRe.MatchString(name):
		v.add("%s[%d]: Name %q may only have letters, digits, '.', '_' and '-'", list, i, name)
	case seen[name]:
		v.add("%s[%d]: duplicate %s name %q", list, i, kind, name)
	}
	seen[name] = true
}

// properties checks that every value of props can be rendered.
func (v *configCheck) properties(label string, props map[string]any) {
	for k, p := range props {
		if err := CheckValue(p); err != nil {
			v.add("%s: Properties[%q]: %v", label, k, err)
		}
	}
}

// own adds the problems p finds in itself (its Validate method) and, when
// config, against the whole configuration (ValidateConfig): one per line
// of their errors, each after label.
func (v *configCheck) own(label string, p any, config bool) {
	if x, ok := p.(validator); ok {
		v.lines(label, x.Validate())
	}
	if x, ok := p.(configValidator); ok && config {
		v.lines(label, x.ValidateConfig(v.c))
	}
}

func (v *configCheck) lines(label string, err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		v.add("%s: %s", label, line)
	}
}

// anys returns list as a list of interface values.
func anys[T any](list []T) []any {
	out := make([]any, len(list))
	for i, x := range list {
		out[i] = x
	}
	return out
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
