package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
)

// exampleMaster starts a master with the schedulers and three builders
// (no worker attaches: requests stay pending), in a temporary folder, and
// returns it with a function stopping it.
func exampleMaster(scheds ...ci.Scheduler) (*ci.Master, func()) {
	dir, err := os.MkdirTemp("", "kiln-example-")
	if err != nil {
		panic(err)
	}
	cfg := ci.MasterConfig{
		BaseDir:         dir,
		Workers:         []ci.WorkerConfig{{Name: "worker-amd64"}},
		Schedulers:      scheds,
		ShutdownTimeout: -1,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, arch := range []string{"amd64", "armhf", "i386"} {
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{
			Name:    "build-" + arch + "-pkg",
			Workers: []string{"worker-amd64"},
			Steps:   []ci.Step{&steps.ShellCommand{Command: []string{"make", "deb"}}},
		})
	}
	m, err := ci.NewMaster(cfg)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	<-m.Ready()
	return m, func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}
}

func ExampleChangeFilter() {
	tags := scheduler.ChangeFilter{Category: []string{"new-tag"}}
	releases := scheduler.ChangeFilter{
		Repository: []string{"https://github.com/ideascube/ideascube"},
		BranchRe:   `release/\d+\.\d+$`,
	}
	fixes := scheduler.ChangeFilter{Fn: func(c *ci.Change) bool { return strings.HasPrefix(c.Comments, "fix:") }}

	changes := []*ci.Change{
		{Category: "new-tag", Branch: "0.9.1"},
		{Category: "push", Branch: "release/1.2", Repository: "https://github.com/ideascube/ideascube", Comments: "fix: crash"},
		{Category: "push", Branch: "release/1.2-rc", Repository: "https://github.com/ideascube/ideascube"},
	}
	for _, c := range changes {
		fmt.Printf("%-8s %-15s tags=%v releases=%v fixes=%v\n", c.Category, c.Branch, tags.Match(c), releases.Match(c), fixes.Match(c))
	}
	fmt.Println((&scheduler.ChangeFilter{BranchRe: "release/("}).Validate())
	// Output:
	// new-tag  0.9.1           tags=true releases=false fixes=false
	// push     release/1.2     tags=false releases=true fixes=true
	// push     release/1.2-rc  tags=false releases=false fixes=false
	// BranchRe "release/(": error parsing regexp: missing closing ): `release/(`
}

// The Ideascube master builds every tag GitHub announces (the change hook
// gives them the category "new-tag") on its three package builders, and
// lets people force builds.
func ExampleAnyBranch() {
	builders := []string{"build-amd64-pkg", "build-armhf-pkg", "build-i386-pkg"}
	m, stop := exampleMaster(
		&scheduler.Force{Name: "force", Builders: builders},
		&scheduler.AnyBranch{
			Name:         "tags",
			ChangeFilter: scheduler.ChangeFilter{Category: []string{"new-tag"}},
			Builders:     builders,
		},
	)
	defer stop()

	ctx := context.Background()
	sub := m.Subscribe(64)
	defer sub.Close()
	for _, c := range []*ci.Change{
		{Category: "push", Branch: "master", Revision: "3f2a9c1"},
		{Category: "new-tag", Branch: "0.9.1", Revision: "0.9.1", Repository: "https://github.com/ideascube/ideascube"},
	} {
		if _, err := m.AddChange(ctx, c); err != nil {
			panic(err)
		}
	}
	// The buildsets are stored before AddChange returns.
	st, _ := m.Store(ctx)
	for len(sub.C) > 0 {
		e := <-sub.C
		if e.Type != ci.EventBuildsetNew {
			continue
		}
		bs, _ := st.GetBuildset(ctx, e.BuildsetID)
		reqs, _, _ := st.ListRequests(ctx, ci.RequestQuery{BuildsetID: bs.ID})
		fmt.Printf("%s\nbuild %s of %s: %d requests\n", bs.Reason, bs.SourceStamps[0].Branch, bs.Scheduler, len(reqs))
	}
	// Output:
	// The AnyBranchScheduler scheduler named 'tags' triggered this build
	// build 0.9.1 of tags: 3 requests
}

func ExampleNightly() {
	weekdays := &scheduler.Nightly{
		Name:     "nightly",
		Builders: []string{"build-amd64-pkg"},
		Spec:     "30 2 * * mon-fri",
		TimeZone: "Europe/Paris",
	}
	// Buildbot's Nightly(hour=3, dayOfWeek=0): 03:00 on Mondays (Buildbot
	// counts days from Monday = 0).
	mondays := &scheduler.Nightly{
		Name:      "weekly",
		Builders:  []string{"build-amd64-pkg"},
		Hour:      []int{3},
		DayOfWeek: []time.Weekday{time.Monday},
		Location:  time.UTC,
	}
	for _, n := range []*scheduler.Nightly{weekdays, mondays} {
		if err := n.Validate(); err != nil {
			panic(err)
		}
		at := time.Date(2024, 3, 28, 12, 0, 0, 0, time.UTC) // a Thursday
		for range 3 {
			at, _ = n.Next(at)
			fmt.Printf("%s: %s\n", n.Name, at.Format("Mon 2006-01-02 15:04 MST"))
		}
	}
	bad := &scheduler.Nightly{Spec: "0 3 * * 1-8"}
	fmt.Println(bad.Validate())
	// Output:
	// nightly: Fri 2024-03-29 02:30 CET
	// nightly: Mon 2024-04-01 02:30 CEST
	// nightly: Tue 2024-04-02 02:30 CEST
	// weekly: Mon 2024-04-01 03:00 UTC
	// weekly: Mon 2024-04-08 03:00 UTC
	// weekly: Mon 2024-04-15 03:00 UTC
	// Spec "0 3 * * 1-8": day-of-week field: "1-8" has "8", which is out of range 0-7
}

func ExampleForce() {
	force := &scheduler.Force{
		Name:     "force",
		Builders: []string{"build-amd64-pkg", "build-armhf-pkg"},
		Reason:   scheduler.StringParam{Required: true},
		Branch:   scheduler.StringParam{Default: "master", Regexp: `[\w./-]+`},
		Revision: scheduler.StringParam{Hidden: true},
		Project:  scheduler.StringParam{Default: "ideascube", Fixed: true},
		Properties: []scheduler.Param{
			scheduler.ChoiceParam{Name: "dist", Label: "Distribution", Choices: []string{"jessie", "stretch"}, Default: "jessie"},
			scheduler.IntParam{Name: "count", Label: "Builds", Default: 1},
			scheduler.BoolParam{Name: "clean", Label: "Clean first"},
		},
	}
	// What a form shows.
	for _, p := range force.ForceParams() {
		if !p.Hidden {
			fmt.Printf("%-10s %-5s default=%v\n", p.Name, p.Type, p.Default)
		}
	}

	m, stop := exampleMaster(force)
	defer stop()
	ctx := context.Background()
	_, _, err := force.Force(ctx, m, ci.ForceRequest{Owner: "alice", Properties: map[string]any{"count": "x"}})
	fmt.Println(errors.Is(err, ci.ErrInvalidForce), err)
	bs, _, err := force.Force(ctx, m, ci.ForceRequest{
		Owner:      "alice",
		Reason:     "release 0.9.1",
		Builders:   []string{"build-armhf-pkg"},
		Properties: map[string]any{"dist": "stretch", "count": "2", "clean": "on"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(bs.Reason)
	for _, name := range bs.Properties.Names() {
		fmt.Printf("  %s=%v\n", name, bs.Properties[name].Value)
	}
	// Output:
	// reason     text  default=
	// branch     text  default=master
	// repository text  default=
	// dist       list  default=jessie
	// count      int   default=1
	// clean      bool  default=false
	// true force "force": invalid force request: reason is required; property "count": "x" is not an integer
	// A build was forced by 'alice': release 0.9.1
	//   clean=true
	//   count=2
	//   dist=stretch
	//   owner=alice
	//   reason=release 0.9.1
}
