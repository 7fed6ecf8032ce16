// Command clustermaster is one of several masters sharing one PostgreSQL
// database, as internal/multimaster runs them: every master of a test runs
// it with the same builders, schedulers and workers, and its own name,
// ports and attached workers. Its builders, all served by every worker of
// -worker-names (wherever a worker is attached), but for "live":
//
//	build     one step echoing the worker's name: what the test's
//	          requests build
//	periodic  one step running true, built by the Periodic scheduler
//	          "periodic" every -periodic
//	hold      one step that, on a worker listed in -hold-workers, waits
//	          for the file -hold-file to exist (elsewhere it ends at once):
//	          the test holds builds on the master it kills
//	live      one step writing "live line I" for I = 1 ... 3, waiting
//	          before each next line for the file -live-dir/goI; only on
//	          the workers of -live-workers, so that the test knows which
//	          master runs it
//
// Schedulers: a force scheduler "force" (build, hold, live), the
// AnyBranch scheduler "push" (build, for every change), and "periodic".
// Change hooks: GitHub's, with the secret of $KILN_GITHUB_SECRET. The
// database URL is $KILN_DATABASE (a postgres:// URL, or a SQLite file),
// read from the environment so that its password appears in no process
// listing; it is never printed.
//
// Once its store is open and both listeners are, it prints one line to
// standard output,
//
//	ready name=NAME workers=HOST:PORT http=HOST:PORT
//
// and serves until SIGINT or SIGTERM. Anyone may force builds: it listens
// on the loopback interface by default.
//
//	clustermaster -dir DIR -name NAME -worker-names w1,w2 [-workers 127.0.0.1:0] [-http 127.0.0.1:0]
//	    [-heartbeat 10s -dead-after 30s] [-periodic 5s] [-hold-workers w5,w6 -hold-file F] [-live-workers w3 -live-dir D]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/postgres"
	_ "github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/hook"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/remote"
)

// Password is every worker's password.
const Password = "pass"

// LiveLines is how many lines the "live" builder's step writes.
const LiveLines = 3

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "clustermaster:", err)
		os.Exit(1)
	}
}

// Options are what the flags say.
type Options struct {
	Dir, Name       string
	Database        string
	GitHubSecret    string
	WorkerNames     []string
	Periodic        time.Duration
	HoldWorkers     []string
	HoldFile        string
	LiveWorkers     []string
	LiveDir         string
	ShutdownTimeout time.Duration
	Heartbeat       time.Duration
	DeadAfter       time.Duration
	Logger          *slog.Logger
}

// Config returns the master's configuration.
func Config(o Options) ci.MasterConfig {
	var workers []ci.WorkerConfig
	for _, name := range o.WorkerNames {
		workers = append(workers, ci.WorkerConfig{Name: name, Password: Password})
	}
	shell := func(name string, argv ...any) []ci.Step {
		return []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: name}, Command: argv}}
	}
	hold := strings.Join(o.HoldWorkers, "|")
	if hold == "" {
		hold = "-" // no worker is named "-"
	}
	wait := `while [ ! -e "$1" ]; do sleep 0.02; done`
	return ci.MasterConfig{
		Title:           "Kiln cluster " + o.Name,
		BaseDir:         o.Dir,
		Database:        o.Database,
		Name:            o.Name,
		Heartbeat:       o.Heartbeat,
		DeadAfter:       o.DeadAfter,
		Workers:         workers,
		ShutdownTimeout: o.ShutdownTimeout,
		Builders: []ci.BuilderConfig{
			{Name: "build", Workers: o.WorkerNames, Steps: shell("echo", "echo", "built on", ci.Interpolate("%(prop:workername)s"))},
			{Name: "periodic", Workers: o.WorkerNames, Steps: shell("true", "true")},
			{Name: "hold", Workers: o.WorkerNames, Steps: shell("hold", "sh", "-c",
				`case "$2" in `+hold+`) `+wait+`;; esac; echo "hold ended on $2"`,
				"sh", o.HoldFile, ci.Interpolate("%(prop:workername)s"))},
			{Name: "live", Workers: o.LiveWorkers, Steps: shell("live", "sh", "-c",
				`i=1; while [ $i -le $2 ]; do echo "live line $i"; f="$1/go$i"; while [ ! -e "$f" ]; do sleep 0.02; done; i=$((i+1)); done`,
				"sh", o.LiveDir, fmt.Sprint(LiveLines))},
		},
		Schedulers: []ci.Scheduler{
			&scheduler.Force{Name: "force", Builders: []string{"build", "hold", "live"}},
			&scheduler.AnyBranch{Name: "push", Builders: []string{"build"}},
			&scheduler.Periodic{Name: "periodic", Builders: []string{"periodic"}, Interval: o.Periodic},
		},
		ChangeHooks: []ci.ChangeHook{&hook.GitHub{Secret: o.GitHubSecret}},
		Logger:      o.Logger,
	}
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clustermaster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Dir, "dir", "", "the master's base folder (required)")
	fs.StringVar(&o.Name, "name", "", "the master's name (required)")
	workerAddr := fs.String("workers", "127.0.0.1:0", "address where workers connect")
	httpAddr := fs.String("http", "127.0.0.1:0", "address of the web server, API and hooks")
	names := fs.String("worker-names", "", "the workers, comma-separated (required)")
	fs.DurationVar(&o.Periodic, "periodic", 5*time.Second, "the periodic scheduler's interval")
	holdWorkers := fs.String("hold-workers", "", "workers where the hold builder's step waits for -hold-file")
	fs.StringVar(&o.HoldFile, "hold-file", "/nonexistent", "the file the hold builder waits for")
	liveWorkers := fs.String("live-workers", "", "the workers of the live builder (all if empty)")
	fs.StringVar(&o.LiveDir, "live-dir", "/nonexistent", "the folder of the files the live builder waits for")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", -1, "how long a stop waits for running builds (negative: not at all)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 0, "how often the master records it is alive (ci.DefaultHeartbeat if zero)")
	fs.DurationVar(&o.DeadAfter, "dead-after", 0, "how old another master's heartbeat must be for it to be taken for dead (ci.DefaultDeadAfter if zero)")
	verbose := fs.Bool("v", false, "log at info level (warnings only by default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.WorkerNames, o.HoldWorkers, o.LiveWorkers = list(*names), list(*holdWorkers), list(*liveWorkers)
	if o.LiveWorkers == nil {
		o.LiveWorkers = o.WorkerNames
	}
	if o.Dir == "" || o.Name == "" || len(o.WorkerNames) == 0 || o.Periodic <= 0 || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("usage: clustermaster -dir DIR -name NAME -worker-names W1,W2... [options]")
	}
	o.Database = getenv("KILN_DATABASE")
	o.GitHubSecret = getenv("KILN_GITHUB_SECRET")
	if o.GitHubSecret == "" {
		return errors.New("$KILN_GITHUB_SECRET is empty: the GitHub hook needs a secret")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("master", o.Name)
	cfg := Config(o)

	wln, err := net.Listen("tcp", *workerAddr)
	if err != nil {
		return fmt.Errorf("listen for workers: %w", err)
	}
	hln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		wln.Close()
		return fmt.Errorf("listen for the web server: %w", err)
	}
	cfg.Services = []ci.Service{
		&remote.Listener{Listener: wln},
		&webui.Server{Listener: hln, Options: webui.Options{Authz: webui.Authz{Force: webui.Anyone}}},
	}
	m, err := ci.NewMaster(cfg)
	if err != nil {
		wln.Close()
		hln.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }() // Run closes the listeners it is given
	select {
	case <-m.Ready():
		fmt.Fprintf(stdout, "ready name=%s workers=%s http=%s\n", o.Name, wln.Addr(), hln.Addr())
	case err := <-done:
		return err
	}
	return <-done
}
