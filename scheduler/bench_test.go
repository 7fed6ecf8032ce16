package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// The benchmarks feed changes to 50 schedulers: AnyBranch and
// SingleBranch, some with a tree-stable timer, with filters of every kind.
// Run them over exactly the 10,000 changes of the data set with
//
//	go test -run '^$' -bench . -benchtime 10000x ./scheduler/
//
// Each op is one change: ns/op is the time per change.

const benchChanges = 10000

var (
	benchRepos    = []string{"https://github.com/ideascube/ideascube", "https://github.com/ideascube/kiwix", "https://github.com/ideascube/ansiblecube", "https://git.example.org/tools", "https://git.example.org/docs"}
	benchProjects = []string{"ideascube", "kiwix", "infra"}
)

// benchData returns the changes: mostly pushes to a few busy branches,
// some tags and pull requests.
func benchData() []ci.Change {
	r := rand.New(rand.NewPCG(1, 2))
	branches := []string{"master", "master", "master", "dev", "dev"}
	for i := range 10 {
		branches = append(branches, fmt.Sprintf("release/1.%d", i))
	}
	for i := range 25 {
		branches = append(branches, fmt.Sprintf("feature/f%d", i))
	}
	out := make([]ci.Change, benchChanges)
	for i := range out {
		c := ci.Change{
			Category:   "push",
			Branch:     branches[r.IntN(len(branches))],
			Revision:   fmt.Sprintf("%040x", r.Uint64()),
			Repository: benchRepos[r.IntN(len(benchRepos))],
			Project:    benchProjects[r.IntN(len(benchProjects))],
			Author:     "dev <dev@example.org>",
			Comments:   "change",
		}
		switch x := r.IntN(10); {
		case x == 0:
			c.Category, c.Branch = "new-tag", fmt.Sprintf("0.%d.%d", r.IntN(20), r.IntN(10))
		case x == 1:
			c.Category, c.Branch = "pull-request", fmt.Sprintf("refs/pull/%d/merge", r.IntN(500))
		}
		if r.IntN(4) == 0 {
			c.Codebase = "lib"
		}
		if r.IntN(3) == 0 {
			c.Files = []string{"docs/index.md"}
		} else {
			c.Files = []string{"src/main.go", "docs/index.md"}
		}
		out[i] = c
	}
	return out
}

func notDocs(c *ci.Change) bool {
	for _, f := range c.Files {
		if !strings.HasPrefix(f, "docs/") {
			return true
		}
	}
	return false
}

// benchSchedulers returns 50 schedulers on the builders.
func benchSchedulers(builders []string) []ci.Scheduler {
	var out []ci.Scheduler
	b := func(i int) []string { return []string{builders[i%len(builders)]} }
	for i := range 50 {
		name := fmt.Sprintf("s%02d", i)
		repo := benchRepos[i%len(benchRepos)]
		var f ChangeFilter
		switch i % 10 {
		case 0:
			f = ChangeFilter{Category: []string{"new-tag"}, Repository: []string{repo}}
		case 1:
			f = ChangeFilter{Repository: []string{repo}, Branch: []string{"master"}}
		case 2:
			f = ChangeFilter{RepositoryRe: `https://github\.com/ideascube/`, BranchRe: `release/1\.[0-4]$`}
		case 3:
			f = ChangeFilter{Project: []string{benchProjects[i%len(benchProjects)]}, Branch: []string{"dev"}, Category: []string{"push"}}
		case 4:
			f = ChangeFilter{CategoryRe: `pull-`, Repository: []string{repo}}
		case 5:
			f = ChangeFilter{Repository: []string{repo}, BranchRe: `feature/f1\d`, Codebase: []string{""}}
		case 6:
			f = ChangeFilter{Repository: []string{repo}, Branch: []string{"master", "dev"}, Codebase: []string{"lib"}}
		case 7:
			f = ChangeFilter{ProjectRe: `kiwix|infra`, Branch: []string{"release/1.7"},
				Fn: func(c *ci.Change) bool { return !strings.Contains(c.Comments, "[skip ci]") }}
		case 8:
			f = ChangeFilter{Repository: []string{repo}, CategoryRe: `new-tag|push`, BranchRe: `0\.1\d\.`}
		case 9:
			f = ChangeFilter{Repository: []string{repo}, Branch: []string{"master"}, Project: []string{"ideascube"}}
		}
		var tst time.Duration
		var imp func(*ci.Change) bool
		if i%5 == 4 {
			tst = 5 * time.Minute
			imp = notDocs
		}
		if i%2 == 0 {
			out = append(out, &AnyBranch{Name: name, Builders: b(i), ChangeFilter: f, TreeStableTimer: tst, FileIsImportant: imp})
		} else {
			out = append(out, &SingleBranch{Name: name, Builders: b(i), ChangeFilter: f, TreeStableTimer: tst, FileIsImportant: imp})
		}
	}
	return out
}

func benchConfigs(scheds []ci.Scheduler) []*basicConfig {
	var cfgs []*basicConfig
	for _, s := range scheds {
		switch x := s.(type) {
		case *AnyBranch:
			cfgs = append(cfgs, x.config())
		case *SingleBranch:
			cfgs = append(cfgs, x.config())
		}
	}
	return cfgs
}

// BenchmarkDecide measures the in-memory part of scheduling a change: for
// each of the 50 schedulers, the filter, the importance check and, for
// those keeping it, the timer group.
func BenchmarkDecide(b *testing.B) {
	changes := benchData()
	cfgs := benchConfigs(benchSchedulers([]string{"a"}))
	atOnce, waiting := 0, 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &changes[i%len(changes)]
		for _, cfg := range cfgs {
			if keep, _ := cfg.decide(nil, c); keep {
				if cfg.treeStable > 0 {
					_ = cfg.key(c)
					waiting++
				} else {
					atOnce++
				}
			}
		}
	}
	// What the decisions cost in the store: a buildset for each change
	// built at once, a state write for each change put to wait.
	b.ReportMetric(float64(atOnce)/float64(b.N), "builds/change")
	b.ReportMetric(float64(waiting)/float64(b.N), "waits/change")
}

// BenchmarkAddChange measures Master.AddChange as a change hook calls it:
// storing the change, then every scheduler's decision, with the
// buildsets submitted and the waiting changes stored before it returns.
// Every 100 changes the clock moves past the tree-stable timers, whose
// builds are counted too.
func BenchmarkAddChange(b *testing.B) {
	for _, n := range []int{0, 50} {
		b.Run(fmt.Sprintf("schedulers=%d", n), func(b *testing.B) {
			builders := []string{"a", "b", "c", "d", "e"}
			cfg := ci.MasterConfig{Workers: []ci.WorkerConfig{{Name: "w"}}}
			for _, name := range builders {
				cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: name, Workers: []string{"w"},
					Steps: []ci.Step{&steps.ShellCommand{Command: []string{"true"}}}})
			}
			if n > 0 {
				cfg.Schedulers = benchSchedulers(builders)
			}
			clock := citest.NewClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
			cfg.Clock = clock
			m := citest.Start(b, cfg, citest.Options{NoWorkers: true})
			changes := benchData()
			ctx := context.Background()
			if n > 0 {
				// Let the schedulers start, so that timers are armed as
				// changes arrive.
				wctx, cancel := context.WithTimeout(ctx, time.Minute)
				for _, s := range cfg.Schedulers {
					_ = engineOf(enginePtr(s))
				}
				waitServing(wctx, cfg.Schedulers)
				cancel()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c := changes[i%len(changes)]
				if _, err := m.Master.AddChange(ctx, &c); err != nil {
					b.Fatal(err)
				}
				if i%100 == 99 {
					clock.Advance(6 * time.Minute)
				}
			}
			b.StopTimer()
			_, total, err := m.Store.ListRequests(ctx, ci.RequestQuery{Query: ci.Query{Limit: 1}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(total)/float64(b.N), "requests/change")
		})
	}
}

func enginePtr(s ci.Scheduler) **treeStable {
	switch x := s.(type) {
	case *AnyBranch:
		return &x.engine
	case *SingleBranch:
		return &x.engine
	}
	return new(*treeStable)
}

// waitServing waits until every tree-stable scheduler runs.
func waitServing(ctx context.Context, scheds []ci.Scheduler) {
	for _, s := range scheds {
		e := *enginePtr(s)
		if e == nil {
			continue
		}
		for ctx.Err() == nil {
			e.mu.Lock()
			ok := e.run != nil && e.run.serving
			e.mu.Unlock()
			if ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}
