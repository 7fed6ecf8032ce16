package ci_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// journaled is a step that writes "start NAME" to journal, waits for
// release (when not empty) and writes "end NAME".
func journaled(name, journal, release string, locks ...ci.LockAccess) ci.Step {
	return &steps.ShellCommand{
		StepOptions: ci.StepOptions{Name: name, Locks: locks},
		Command: []string{"sh", "-c", `echo "start $1" >> "$2"; if [ -n "$3" ]; then while [ ! -e "$3" ]; do sleep 0.01; done; fi; echo "end $1" >> "$2"`,
			"sh", name, journal, release},
	}
}

func journal(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// waitState waits until the running build's state is state.
func waitState(t *testing.T, m *citest.Master, id int64, state string) {
	t.Helper()
	require.Eventually(t, func() bool {
		b, err := m.Store.GetBuild(context.Background(), id)
		require.NoError(t, err)
		return b.StateString == state
	}, time.Minute, 10*time.Millisecond, "build %d to be %q", id, state)
}

// TestLocks_Step: a step taking a worker lock whole waits for the steps
// that hold places of it on that worker, and they for it; counting
// holders run side by side; the same lock on another worker is another
// lock.
func TestLocks_Step(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "journal")
	release := filepath.Join(dir, "release")
	chroot := ci.WorkerLock("chroot", 3)
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}},
		Builders: []ci.BuilderConfig{
			{Name: "build-a", Workers: []string{"w1"}, Steps: []ci.Step{journaled("build-a", file, release, chroot.Counting())}},
			{Name: "build-b", Workers: []string{"w1"}, Steps: []ci.Step{journaled("build-b", file, release, chroot.Counting())}},
			{Name: "update", Workers: []string{"w1"}, Steps: []ci.Step{journaled("update", file, "", chroot.Exclusive())}},
			{Name: "update-w2", Workers: []string{"w2"}, Steps: []ci.Step{journaled("update-w2", file, "", chroot.Exclusive())}},
		},
	}
	m := citest.Start(t, cfg)
	a := m.Submit(t, citest.Request{Builder: "build-a"})
	b := m.Submit(t, citest.Request{Builder: "build-b"})
	// Both builds hold a place at once.
	require.Eventually(t, func() bool { return len(journal(t, file)) == 2 }, time.Minute, 10*time.Millisecond)
	assert.ElementsMatch(t, []string{"start build-a", "start build-b"}, journal(t, file))

	u := m.Submit(t, citest.Request{Builder: "update"})
	waitState(t, m, m.WaitRunning(t, "update"), "waiting for locks")
	// On the other worker, the lock is free.
	w2 := m.WaitBuildset(t, m.Submit(t, citest.Request{Builder: "update-w2"}))
	assert.Equal(t, ci.Success, w2[0].Results())
	assert.NotContains(t, journal(t, file), "start update", "the update waits for the builds")

	// A build asked for after the update waits for it: first come, first
	// served.
	c := m.Submit(t, citest.Request{Builder: "build-a"})
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	for _, id := range []int64{a, b, u, c} {
		builds := m.WaitBuildset(t, id)
		require.Len(t, builds, 1)
		assert.Equal(t, ci.Success, builds[0].Results())
	}
	lines := journal(t, file)
	var w1 []string
	for _, l := range lines {
		if !strings.HasSuffix(l, "update-w2") {
			w1 = append(w1, l)
		}
	}
	require.Len(t, w1, 8, lines)
	update := func(l []string) int {
		for i, s := range l {
			if s == "start update" {
				return i
			}
		}
		return -1
	}(w1)
	assert.Equal(t, 4, update, "the update starts after both builds ended: %q", w1)
	assert.Equal(t, "end update", w1[5], "and runs alone: %q", w1)
	assert.Equal(t, []string{"start build-a", "end build-a"}, w1[6:], "the later build runs after it")
}

// TestLocks_Builder: a master lock of a builder bounds its builds on
// every worker; the request waits, holding no worker.
func TestLocks_Builder(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	deploy := ci.MasterLock("deploy", 1)
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}},
		Builders: []ci.BuilderConfig{
			{Name: "prod", Workers: []string{"w1"}, Locks: []ci.LockAccess{deploy.Counting()}, Steps: []ci.Step{blockingStep("wait", release)}},
			{Name: "staging", Workers: []string{"w2"}, Locks: []ci.LockAccess{deploy.Counting()}, Steps: []ci.Step{shell("s", "true")}},
		},
	}
	m := citest.Start(t, cfg)
	prod := m.Submit(t, citest.Request{Builder: "prod"})
	m.WaitRunning(t, "prod")
	staging := m.Submit(t, citest.Request{Builder: "staging"})
	pending, err := m.Store.PendingRequests(context.Background())
	require.NoError(t, err)
	require.Len(t, pending, 1, "the staging build waits for the lock")
	builds, _, err := m.Store.ListBuilds(context.Background(), ci.BuildQuery{})
	require.NoError(t, err)
	assert.Len(t, builds, 1, "no build is started for it")
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	p, s := m.WaitBuildset(t, prod), m.WaitBuildset(t, staging)
	assert.Equal(t, ci.Success, p[0].Results())
	assert.Equal(t, ci.Success, s[0].Results())
	assert.False(t, s[0].Record.StartedAt.Before(p[0].Record.CompleteAt), "one build at a time")
}

// TestLocks_Config: locks are checked with the configuration.
func TestLocks_Config(t *testing.T) {
	l := ci.MasterLock("l", 1)
	for name, tc := range map[string]struct {
		builders []ci.BuilderConfig
		want     string
	}{
		"BuilderAndStep": {
			builders: []ci.BuilderConfig{
				{Name: "a", Workers: []string{"w"}, Locks: []ci.LockAccess{l.Counting()}, Steps: []ci.Step{shell("s", "true")}},
				{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "s", Locks: []ci.LockAccess{l.Exclusive()}}, Command: []string{"true"}}}},
			},
			want: `lock "l" is a builder lock of "a" and a step lock in "b"`,
		},
		"SameName": {
			builders: []ci.BuilderConfig{
				{Name: "a", Workers: []string{"w"}, Locks: []ci.LockAccess{l.Counting()}, Steps: []ci.Step{shell("s", "true")}},
				{Name: "b", Workers: []string{"w"}, Locks: []ci.LockAccess{ci.WorkerLock("l", 1).Counting()}, Steps: []ci.Step{shell("s", "true")}},
			},
			want: `builder "b": two different locks are called "l"`,
		},
		"NoName": {
			builders: []ci.BuilderConfig{
				{Name: "a", Workers: []string{"w"}, Locks: []ci.LockAccess{ci.MasterLock("", 1).Counting()}, Steps: []ci.Step{shell("s", "true")}},
			},
			want: `builder "a": a lock has no name`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ci.NewMaster(ci.MasterConfig{BaseDir: t.TempDir(), Workers: []ci.WorkerConfig{{Name: "w"}}, Builders: tc.builders})
			assert.ErrorContains(t, err, tc.want)
		})
	}
}
