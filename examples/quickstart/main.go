// Command quickstart shows Kiln working on one machine: it creates a small
// git repository in a temporary folder, starts a master with an in-process
// worker, the web UI and the JSON API, builds the repository (a git
// checkout and a few shell steps), prints the result and where to look, and
// keeps serving until interrupted.
//
// As Buildbot's first-run tutorial does, it also accepts a remote worker
// named "example-worker" with password "pass" on 127.0.0.1:9989: a
// kiln-worker or a stock buildbot-worker can attach to it, and the builder
// then shares its builds between that worker and the in-process one. Anyone may force and stop builds: the
// master listens on the loopback interface only.
//
//	go run ./examples/quickstart [-http 127.0.0.1:8010] [-workers 127.0.0.1:9989] [-dir DIR] [-once] [-database URL]
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
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/postgres"
	_ "github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/local"
	"github.com/kilnci/kiln/worker/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(out)
	addr := fs.String("http", "127.0.0.1:8010", "address of the web UI and API")
	workerAddr := fs.String("workers", "127.0.0.1:9989", "address where remote workers connect")
	once := fs.Bool("once", false, "exit after the build instead of serving")
	dir := fs.String("dir", "", "folder for the master, worker and repository (a new temporary folder if empty)")
	database := fs.String("database", "", "postgres:// URL of a PostgreSQL database for the master's records ($KILN_DATABASE_URL if empty, else DIR/master/state.sqlite)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *database == "" {
		// The URL holds a password: the environment keeps it out of
		// ps, and out of -h's defaults.
		*database = os.Getenv("KILN_DATABASE_URL")
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "kiln-quickstart-")
		if err != nil {
			return err
		}
		*dir = d
	}
	repo := filepath.Join(*dir, "hello")
	if err := makeRepo(ctx, repo); err != nil {
		return fmt.Errorf("create the example repository: %w", err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen for the web API: %w", err)
	}
	wln, err := net.Listen("tcp", *workerAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen for workers: %w", err)
	}
	force := &scheduler.Force{Name: "force", Builders: []string{"hello"}}
	cfg := ci.MasterConfig{
		Title:    "Kiln quick start",
		BaseDir:  filepath.Join(*dir, "master"),
		Database: *database,
		Workers:  []ci.WorkerConfig{{Name: "local"}, {Name: "example-worker", Password: "pass"}},
		Builders: []ci.BuilderConfig{{
			Name:       "hello",
			Workers:    []string{"local", "example-worker"},
			Properties: map[string]any{"greeting": "Hello"},
			Steps: []ci.Step{
				&steps.Git{RepoURL: repo, Mode: steps.Full, Method: steps.Fresh},
				&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "list"}, Command: []string{"ls", "-l"}},
				&steps.SetPropertyFromCommand{StepOptions: ci.StepOptions{Name: "subject"}, Command: []string{"git", "log", "-1", "--format=%s"}, Property: "subject"},
				&steps.ShellCommand{
					StepOptions: ci.StepOptions{Name: "test", HaltOnFailure: true},
					Command:     []string{"sh", "test.sh"},
				},
				&steps.ShellCommand{
					StepOptions: ci.StepOptions{Name: "greet"},
					Command:     []any{"echo", ci.Interpolate("%(prop:greeting)s from %(prop:buildername)s #%(prop:buildnumber)s at %(prop:got_revision)s: %(prop:subject)s")},
				},
			},
		}},
		Schedulers: []ci.Scheduler{force},
		Services: []ci.Service{
			&local.Worker{Name: "local", Dir: filepath.Join(*dir, "worker")},
			&remote.Listener{Listener: wln},
			&webui.Server{Listener: ln, Options: webui.Options{Authz: webui.Authz{Force: webui.Anyone, Stop: webui.Anyone, Cancel: webui.Anyone}}},
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	m, err := ci.NewMaster(cfg)
	if err != nil {
		ln.Close()
		wln.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	wait := func() error {
		cancel()
		return <-runErr
	}

	if err := waitWorker(ctx, m, "local"); err != nil {
		return withRunErr(err, wait())
	}
	sub := m.Subscribe(1024)
	defer sub.Close()
	bs, _, err := force.Force(ctx, m, ci.ForceRequest{Owner: "quickstart", Reason: "first build"})
	if err != nil {
		return withRunErr(err, wait())
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "Kiln master running in %s\nbuilding %s ...\n", *dir, repo)
	var buildID int64
	for buildID == 0 {
		select {
		case e := <-sub.C:
			if e.Type == ci.EventBuildFinished && e.BuildsetID == bs.ID {
				buildID = e.BuildID
			}
		case <-ctx.Done():
			return wait()
		}
	}
	st, _ := m.Store(ctx)
	b, err := st.GetBuild(ctx, buildID)
	if err != nil {
		return withRunErr(err, wait())
	}
	stepRecs, err := st.ListSteps(ctx, buildID)
	if err != nil {
		return withRunErr(err, wait())
	}
	fmt.Fprintf(out, "build #%d of hello: %s (%s)\n", b.Number, b.Results, b.StateString)
	for _, s := range stepRecs {
		fmt.Fprintf(out, "  step %-8s %-8s %s\n", s.Name, s.Results, s.StateString)
	}
	if greet := lastStep(stepRecs, "greet"); greet != nil {
		if logs, err := st.ListLogs(ctx, greet.ID); err == nil && len(logs) > 0 {
			text, _ := st.LogLines(ctx, logs[0].ID, 0, -1)
			for _, line := range splitLines(text) {
				if len(line) > 1 && line[0] == 'o' {
					fmt.Fprintf(out, "  output: %s\n", line[1:])
				}
			}
		}
	}
	fmt.Fprintf(out, "look at:\n  %s/\n  %s/api/v2/builds\n  %s/api/v2/builds/%d/steps\n  database %s\n", base, base, base, buildID, cfg.DatabaseName())
	wa := wln.Addr().String()
	fmt.Fprintf(out, "attach a remote worker, example-worker (password pass), on %s:\n", wa)
	fmt.Fprintf(out, "  go run ./cmd/kiln-worker create-worker /tmp/example-worker %s example-worker pass\n  go run ./cmd/kiln-worker start /tmp/example-worker\n", wa)
	fmt.Fprintf(out, "or with Buildbot's worker:\n  buildbot-worker create-worker --protocol msgpack_experimental_v7 /tmp/bb-worker %s example-worker pass\n  buildbot-worker start --nodaemon /tmp/bb-worker\n", wa)
	fmt.Fprintf(out, "then force a build on the page %s/builders/hello, or:\n  curl -X POST -H 'Content-Type: application/json' -d '{\"jsonrpc\": \"2.0\", \"method\": \"force\", \"params\": {\"builderid\": %d}, \"id\": 1}' %s/api/v2/forceschedulers/force\n", base, b.BuilderID, base)
	if *once {
		return wait()
	}
	fmt.Fprintln(out, "serving until interrupted (Ctrl-C)")
	<-ctx.Done()
	return wait()
}

func withRunErr(err, runErr error) error {
	if runErr != nil {
		return fmt.Errorf("%w (master: %v)", err, runErr)
	}
	return err
}

func lastStep(steps []*ci.StepRecord, name string) *ci.StepRecord {
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Name == name {
			return steps[i]
		}
	}
	return nil
}

func splitLines(s string) []string {
	var lines []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		lines = append(lines, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return lines
}

// waitWorker waits until the worker is attached.
func waitWorker(ctx context.Context, m *ci.Master, name string) error {
	sub := m.Subscribe(64)
	defer sub.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, ok := m.WorkerConn(name); ok {
			return nil
		}
		select {
		case <-sub.C:
		case <-tick.C:
		case <-m.Done():
			return fmt.Errorf("the master stopped")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// makeRepo creates a small git repository with a script and its test.
func makeRepo(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"README":   "A tiny project built by Kiln's quick start.\n",
		"hello.sh": "#!/bin/sh\necho \"hello, $1\"\n",
		"test.sh":  "#!/bin/sh\nset -e\nout=$(sh hello.sh kiln)\n[ \"$out\" = \"hello, kiln\" ] && echo \"test passed: $out\"\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main"},
		{"add", "."},
		{"-c", "user.name=Kiln Quickstart", "-c", "user.email=quickstart@example.invalid", "commit", "--quiet", "-m", "Add hello.sh and its test"},
	} {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %v: %s", args, err, out)
		}
	}
	return nil
}
