// Command hello is the master of the README: one builder that checks out a
// Go repository and tests it, an in-process worker, a force scheduler and
// the web API.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/sqlite" // the store: state.sqlite in BaseDir
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/local"
)

func config(repo string) ci.MasterConfig {
	return ci.MasterConfig{
		Title:   "Hello",
		BaseDir: "master",
		Workers: []ci.WorkerConfig{{Name: "local"}},
		Builders: []ci.BuilderConfig{{
			Name:       "test",
			Workers:    []string{"local"},
			Properties: map[string]any{"goflags": "-race"},
			Steps: []ci.Step{
				&steps.Git{RepoURL: repo, Mode: steps.Full, Method: steps.Fresh},
				&steps.ShellCommand{
					StepOptions: ci.StepOptions{Name: "test", HaltOnFailure: true},
					Command:     []any{"go", "test", ci.Interpolate("%(prop:goflags)s"), "./..."},
				},
			},
		}},
		Schedulers: []ci.Scheduler{&scheduler.Force{Name: "force", Builders: []string{"test"}}},
		Services: []ci.Service{
			&local.Worker{Name: "local", Dir: "worker"}, // runs commands in this process
			&webui.Server{Addr: ":8010"},
		},
	}
}

func main() {
	repo := flag.String("repo", "https://example.org/hello.git", "the repository to test")
	flag.Parse()
	m, err := ci.NewMaster(config(*repo)) // checks everything, one line per problem
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := m.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
