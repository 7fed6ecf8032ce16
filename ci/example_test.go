package ci_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/worker/local"
)

// A master with one builder and an in-process worker: submit a build, wait
// for it, read what the store recorded.
func ExampleNewMaster() {
	dir, _ := os.MkdirTemp("", "kiln-example-")
	defer os.RemoveAll(dir)
	m, err := ci.NewMaster(ci.MasterConfig{
		Title:   "example",
		BaseDir: dir,
		Workers: []ci.WorkerConfig{{Name: "local"}},
		Builders: []ci.BuilderConfig{{
			Name:       "hello",
			Workers:    []string{"local"},
			Properties: map[string]any{"who": "world"},
			Steps: []ci.Step{
				&steps.ShellCommand{
					StepOptions: ci.StepOptions{Name: "greet"},
					Command:     []any{"echo", ci.Interpolate("hello, %(prop:who)s")},
				},
			},
		}},
		Services: []ci.Service{&local.Worker{Name: "local", Dir: filepath.Join(dir, "worker")}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	defer func() { stop(); <-done }()

	events := m.Subscribe(0)
	defer events.Close()
	bs, _, err := m.Submit(ctx, ci.Submission{Builders: []string{"hello"}, Reason: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for e := range events.C {
		if e.Type == ci.EventBuildsetComplete && e.BuildsetID == bs.ID {
			break
		}
	}
	st, _ := m.Store(ctx)
	builds, _, _ := st.ListBuilds(ctx, ci.BuildQuery{})
	b := builds[0]
	fmt.Printf("build %d: %s (%s)\n", b.Number, b.Results, b.StateString)
	stepRecs, _ := st.ListSteps(ctx, b.ID)
	logs, _ := st.ListLogs(ctx, stepRecs[0].ID)
	text, _ := st.LogLines(ctx, logs[0].ID, 0, -1)
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(line, "o") { // standard output
			fmt.Print(line[1:])
		}
	}
	// Output:
	// build 1: success (build successful)
	// hello, world
}

// A step written as a Go function: it reads and sets properties, and could
// send remote commands through s.RunCommand.
func ExampleStepFunc() {
	version := ci.WithOptions(ci.StepOptions{Name: "version", HaltOnFailure: true},
		ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			tag, _ := s.Property("branch")
			if tag == "" {
				return ci.Failure, nil
			}
			s.SetProperty("version", strings.TrimPrefix(fmt.Sprint(tag), "v"), s.Name())
			return ci.Success, nil
		}))
	fmt.Println(version.Options().Name, version.Options().HaltOnFailure)
	// Output: version true
}

// Two masters of a project share one PostgreSQL database (the driver
// registered by importing github.com/kilnci/kiln/ci/postgres), each on its
// own machine with its own workers. Each gets a name of its own; the
// heartbeat settings are the defaults, written out.
func ExampleMasterConfig_severalMasters() {
	config := func(name string, workers ...string) ci.MasterConfig {
		var wc []ci.WorkerConfig
		for _, w := range workers {
			wc = append(wc, ci.WorkerConfig{Name: w, Password: os.Getenv("WORKER_PASSWORD")})
		}
		return ci.MasterConfig{
			Name:      name,
			Database:  os.Getenv("KILN_DATABASE"), // postgres://kiln:...@db.example.org/kiln
			Heartbeat: ci.DefaultHeartbeat,
			DeadAfter: ci.DefaultDeadAfter,
			Workers:   wc,
			Builders: []ci.BuilderConfig{{
				Name:    "test",
				Workers: workers, // this master's workers for the builder
				Steps:   []ci.Step{&steps.ShellCommand{Command: []string{"make", "test"}}},
			}},
		}
	}
	for _, cfg := range []ci.MasterConfig{config("master-1", "w1", "w2"), config("master-2", "w3", "w4")} {
		if err := cfg.Validate(); err != nil {
			fmt.Println(err)
		}
		fmt.Println(cfg.Name, len(cfg.Workers), "workers")
	}
	// Output:
	// master-1 2 workers
	// master-2 2 workers
}

// reportStep writes a report as soon as it runs. It says so
// (ci.StartLogger): its log is stored with the step's start, in the same
// write, rather than in a write of its own.
type reportStep struct{}

func (reportStep) Options() ci.StepOptions { return ci.StepOptions{Name: "report"} }

func (reportStep) StartLogs() []ci.Log { return []ci.Log{{Name: "report", Type: ci.LogText}} }

func (reportStep) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	w, err := s.AddLog(ctx, "report", ci.LogText) // the log stored with the step
	if err != nil {
		return ci.Exception, err
	}
	fmt.Fprintln(w, "all good")
	return ci.Success, w.Close()
}

// A step that adds its logs as it starts says which: with options set
// around it, it still does, and the master stores its log with its start.
func ExampleStartLogger() {
	step := ci.WithOptions(ci.StepOptions{Name: "report", Description: "reporting"}, reportStep{})
	for _, l := range step.(ci.StartLogger).StartLogs() {
		fmt.Println(l.Name, l.Type)
	}
	// Output: report t
}
