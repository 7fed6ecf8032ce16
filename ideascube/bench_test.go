//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/debtest"
	"github.com/kilnci/kiln/scheduler"
)

// BenchmarkPipeline measures Ideascube's pipeline for one architecture
// (amd64, in the warm schroot chroot), from the GitHub webhook of a new tag
// to the package being installable from the master's archive (its
// Packages index, over HTTP, lists the new version), and how much of that
// time is Kiln's own: what is not spent inside sbuild (sbuild-update
// included, sbuild's tool for its chroots), lintian, dput and the archive
// tool, reprepro. Each program's time is the elapsed time its step's log
// reports (the worker's for the commands it runs, the master's for
// reprepro's listings and include). Everything else is counted as
// Kiln's, git's checkout included.
//
//	sudo go test -run '^$' -bench Pipeline -benchtime 3x ./ideascube
//
// It needs what .ci/run prepares (the build user, the schroot chroot).
// The master runs in the test's process with the real configuration
// (builders other than amd64's left out, so that nothing else competes
// for the machine) and one kiln-worker process.
func BenchmarkPipeline(b *testing.B) {
	debtest.NeedTools(b, "git", "sbuild", "schroot", "lintian", "dput", "reprepro", "gpg", "sudo")
	debtest.Schroot(b, debtest.DefaultSchroot)
	d := deploy(b, nil, map[string][]string{"worker-amd64": {"local"}})
	d.writeArchiveKey()
	require.NoError(b, d.user.Chown(d.top))

	key, err := os.ReadFile(filepath.Join(d.dir, "archive-key.asc"))
	require.NoError(b, err)
	httpAddr, workerAddr := freeAddr(b), freeAddr(b)
	o := defaultOptions()
	o.BaseDir, o.HTTPAddr, o.WorkerAddr, o.PublicURL = d.dir, httpAddr, workerAddr, "http://"+httpAddr+"/"
	o.Repo, o.Dist, o.ExtraRepository, o.Resolver, o.MetricsAddr = d.repo, "bookworm", "", "apt", ""
	s := secrets{
		workerSecret("worker-amd64"): "amd64 pass", workerSecret("worker-armhf"): "armhf pass", secretAdminUser: "admin",
		secretAdminPassword: "admin pass", secretGitHub: "gh-secret", secretGitLab: "gl-token", secretArchiveKey: string(key),
	}
	cfg, err := config(o, s)
	require.NoError(b, err)
	cfg.Builders = cfg.Builders[:1]
	require.Equal(b, "build-amd64-pkg", cfg.Builders[0].Name)
	for _, sc := range cfg.Schedulers {
		switch x := sc.(type) {
		case *scheduler.Force:
			x.Builders = []string{"build-amd64-pkg"}
		case *scheduler.AnyBranch:
			x.Builders = []string{"build-amd64-pkg"}
		}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := ci.NewMaster(cfg)
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	// The master runs as root here: the build user uploads into its
	// incoming folder.
	incoming := filepath.Join(d.dir, "debian", "incoming")
	d.web = web{t: b, base: "http://" + httpAddr}
	d.waitFor("the archive", time.Minute, func() bool {
		resp, err := http.Get(d.web.base + "/debian/dists/bookworm/Release")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	require.NoError(b, os.Chown(incoming, int(d.user.UID), int(d.user.GID)))

	home := filepath.Join(d.top, "home-worker-amd64")
	dir := filepath.Join(d.top, "worker-amd64")
	create := exec.Command(bins.worker, "create-worker", dir, workerAddr, "worker-amd64", "amd64 pass")
	create.SysProcAttr = &syscall.SysProcAttr{Credential: d.user.Credential()}
	out, err := create.CombinedOutput()
	require.NoError(b, err, "%s", out)
	start(b, &d.user, []string{"HOME=" + home, "USER=" + d.user.Name, "LOGNAME=" + d.user.Name}, bins.worker, "start", dir)
	d.waitFor("the worker", time.Minute, func() bool {
		for _, w := range m.Workers() {
			if w.Name == "worker-amd64" && w.Connected {
				return true
			}
		}
		return false
	})
	st, err := m.Store(ctx)
	require.NoError(b, err)

	// A tag builds the package, until it is installable.
	release := func(version string) (t0 time.Time, installable time.Duration, buildID int) {
		require.NoError(b, debtest.Write(d.repo, debtest.Source{Version: version}))
		git(b, d.repo, "add", "-A", ".")
		git(b, d.repo, "commit", "-qm", "Release "+version)
		git(b, d.repo, "tag", "-a", version, "-m", "Release "+version)
		require.NoError(b, d.user.Chown(d.repo))
		want := "\nVersion: " + version + "\n"
		last := d.lastBuildID()
		t0 = time.Now()
		code, text := d.github("create", "gh-secret", createEvent("tag", version, "https://github.com/ideascube/ideascube.git"))
		require.Equal(b, http.StatusOK, code, text)
		d.waitFor(version+" to be installable", 20*time.Minute, func() bool {
			code, body := d.fetch("/debian/dists/bookworm/main/binary-amd64/Packages")
			if code == http.StatusOK && strings.Contains(string(body), want) {
				return true
			}
			if bs := d.builds(last); len(bs) > 0 && *bs[0].Results != success {
				steps, _ := d.steps(bs[0].BuildID)
				b.Fatalf("the build of %s failed: %v", version, steps)
			}
			time.Sleep(10 * time.Millisecond)
			return false
		})
		installable = time.Since(t0)
		bs := d.waitBuilds("the build", last, 1)
		return t0, installable, bs[0].BuildID
	}

	b.Log("warming up: the first build updates the chroot and fills the caches")
	release("1.5")
	b.ResetTimer()
	var wall, tools time.Duration
	for i := range b.N {
		t0, installable, id := release(fmt.Sprintf("2.%d", i))
		tl, end, parts := toolTime(b, st, int64(id), t0)
		// Kiln's share is taken over the whole pipeline, from the webhook
		// to the end of the publish step (which removes the upload from
		// incoming after the index lists it).
		w := end.Sub(t0)
		b.Logf("2.%d: installable %.1f s after the webhook, pipeline done at %.1f s; in the programs %.1f s (%s); Kiln's own %.0f ms (%.2f %%)",
			i, installable.Seconds(), w.Seconds(), tl.Seconds(), parts, (w-tl).Seconds()*1000, 100*(w-tl).Seconds()/w.Seconds())
		wall += w
		tools += tl
	}
	b.ReportMetric(wall.Seconds()/float64(b.N), "s/release")
	b.ReportMetric((wall-tools).Seconds()*1000/float64(b.N), "kiln-ms/release")
	b.ReportMetric(100*(wall-tools).Seconds()/wall.Seconds(), "kiln-%")
	b.ReportMetric(0, "ns/op")
}

var elapsedRe = regexp.MustCompile(`(?m)^helapsedTime=([0-9.]+)$`)

// toolSteps are the steps whose programs' time is not Kiln's: sbuild's,
// lintian's, dput's and the archive tool's.
var toolSteps = map[string]bool{"sbuild-update": true, "sbuild": true, "lintian": true, "dput": true, "publish": true}

// toolTime sums the time a build spent inside the tools of toolSteps, as
// their logs report it, and returns when the publish step ended and each
// step's program time and time around it (git's counted as Kiln's
// whole), after when the build started, from the webhook at t0.
func toolTime(tb testing.TB, st ci.Store, buildID int64, t0 time.Time) (time.Duration, time.Time, string) {
	ctx := context.Background()
	steps, err := st.ListSteps(ctx, buildID)
	require.NoError(tb, err)
	var total time.Duration
	var end time.Time
	var parts []string
	for _, s := range steps {
		if s.Name == "publish" {
			end = s.CompleteAt
		}
		logs, err := st.ListLogs(ctx, s.ID)
		require.NoError(tb, err)
		var t time.Duration
		for _, l := range logs {
			if l.Name != "stdio" {
				continue
			}
			// The worker reports a command's time at the end of its
			// log; publish's log is short, and read whole.
			first := max(0, l.NumLines-20)
			if s.Name == "publish" {
				first = 0
			}
			text, err := st.LogLines(ctx, l.ID, first, -1)
			require.NoError(tb, err)
			for _, m := range elapsedRe.FindAllStringSubmatch(text, -1) {
				f, _ := strconv.ParseFloat(m[1], 64)
				t += time.Duration(f * float64(time.Second))
			}
		}
		// around: the step's time outside its program.
		around := s.CompleteAt.Sub(s.StartedAt) - t
		if toolSteps[s.Name] {
			total += t
			parts = append(parts, fmt.Sprintf("%s %.2f s +%d ms", s.Name, t.Seconds(), around.Milliseconds()))
		} else {
			parts = append(parts, fmt.Sprintf("%s %d ms, Kiln's", s.Name, s.CompleteAt.Sub(s.StartedAt).Milliseconds()))
		}
	}
	require.False(tb, end.IsZero(), "build %d has no publish step", buildID)
	build, err := st.GetBuild(ctx, buildID)
	require.NoError(tb, err)
	parts = append([]string{"build started at +" + build.StartedAt.Sub(t0).Round(time.Millisecond).String()}, parts...)
	return total, end, strings.Join(parts, ", ")
}
