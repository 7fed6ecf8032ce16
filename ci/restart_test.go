package ci_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/worker/local"
)

// restartConfig is a master whose one step waits for the file "release"
// in dir after creating the file "started".
func restartConfig(dir string) ci.MasterConfig {
	cfg := oneBuilder(&steps.ShellCommand{
		StepOptions: ci.StepOptions{Name: "wait"},
		Command:     []string{"sh", "-c", `touch "$1/started"; while [ ! -e "$1/release" ]; do sleep 0.01; done; echo released`, "sh", dir},
	})
	cfg.BaseDir = filepath.Join(dir, "master")
	return cfg
}

// leavePending runs a master of cfg without workers, which accepts a
// request for b1 and stops, and returns the request's buildset.
func leavePending(t *testing.T, cfg ci.MasterConfig) int64 {
	t.Helper()
	var bs int64
	t.Run("first", func(t *testing.T) {
		m := citest.Start(t, cfg, citest.Options{NoWorkers: true})
		bs = m.Submit(t, citest.Request{Builder: "b1"})
	})
	return bs
}

func TestMaster_PendingSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := restartConfig(dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "release"), nil, 0o644))

	bs := leavePending(t, cfg)
	// A master still without workers loads them, counted by builder.
	t.Run("loaded", func(t *testing.T) {
		m := citest.Start(t, cfg, citest.Options{NoWorkers: true})
		counted, listed := ci.PendingCounts(m.Master)
		assert.Equal(t, map[string]int{"b1": 1}, counted)
		assert.Equal(t, listed, counted)
	})
	// The next master builds them.
	m := citest.Start(t, cfg)
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, "released\n", builds[0].Log("wait", "stdio"))
}

func TestMaster_GracefulStopRetries(t *testing.T) {
	dir := t.TempDir()
	cfg := restartConfig(dir)
	var bs int64
	t.Run("first", func(t *testing.T) {
		m := citest.Start(t, cfg)
		bs = m.Submit(t, citest.Request{Builder: "b1"})
		m.WaitRunning(t, "b1")
		// The test ends: the master stops at once (citest's shutdown
		// timeout is negative) and interrupts the build.
	})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "release"), nil, 0o644))
	m := citest.Start(t, cfg)
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, 2, builds[0].Record.Number)
	first, err := m.Store.FindBuild(context.Background(), builds[0].Record.BuilderID, 1)
	require.NoError(t, err)
	assert.Equal(t, ci.Retry, first.Results)
	assert.Equal(t, builds[0].Record.BuildRequestID, first.BuildRequestID, "the same request is built again")
}

// TestMaster_CrashRecovery kills a master process in the middle of a build
// and checks that the next master closes that build as RETRY and builds its
// request again.
func TestMaster_CrashRecovery(t *testing.T) {
	if os.Getenv("KILN_TEST_CRASH_DIR") != "" {
		crashingMaster(t)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMaster_CrashRecovery$", "-test.v")
	cmd.Env = append(os.Environ(), "KILN_TEST_CRASH_DIR="+dir)
	out, err := os.Create(filepath.Join(dir, "child.log"))
	require.NoError(t, err)
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	// Wait for the build to be running in the child, and stored.
	started := filepath.Join(dir, "committed")
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("the child master never started its build:\n%s", log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "release"), nil, 0o644))

	m := citest.Start(t, restartConfig(dir))
	ctx := context.Background()
	bid, _ := m.BuilderID("b1")
	first, err := m.Store.FindBuild(ctx, bid, 1)
	require.NoError(t, err)
	assert.True(t, first.Complete)
	assert.Equal(t, ci.Retry, first.Results)
	assert.Contains(t, first.StateString, "interrupted")
	steps, err := m.Store.ListSteps(ctx, first.ID)
	require.NoError(t, err)
	require.Len(t, steps, 1)
	assert.True(t, steps[0].Complete, "the interrupted step is closed too")

	builds := m.WaitBuildset(t, mustRequest(t, m, first.BuildRequestID).BuildsetID)
	require.Len(t, builds, 1)
	assert.Equal(t, 2, builds[0].Record.Number)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, first.BuildRequestID, builds[0].Record.BuildRequestID)
}

func mustRequest(t *testing.T, m *citest.Master, id int64) *ci.BuildRequest {
	r, err := m.Store.GetRequest(context.Background(), id)
	require.NoError(t, err)
	return r
}

// crashingMaster runs in the child process: it starts a build that waits
// forever and blocks until killed.
func crashingMaster(t *testing.T) {
	dir := os.Getenv("KILN_TEST_CRASH_DIR")
	m := citest.Start(t, restartConfig(dir))
	m.Submit(t, citest.Request{Builder: "b1"})
	// The build and its step are read back through the store, which
	// commits them (the store commits a build's progress within a few
	// milliseconds, or before a read): the crash comes after.
	id := m.WaitRunning(t, "b1")
	m.WaitStep(t, id, "wait")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "committed"), nil, 0o644))
	select {} // killed by the parent
}

func TestMaster_WorkerLost(t *testing.T) {
	dir := t.TempDir()
	cfg := restartConfig(dir)
	m := citest.Start(t, cfg, citest.Options{NoWorkers: true})
	ctx := context.Background()
	conn, err := local.NewConn("w1", filepath.Join(m.Dir, "w1"))
	require.NoError(t, err)
	require.NoError(t, m.AttachWorker(ctx, conn))
	bs := m.Submit(t, citest.Request{Builder: "b1"})
	id := m.WaitRunning(t, "b1")
	for {
		if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, conn.Close())
	lost := m.WaitBuild(t, id)
	assert.Equal(t, ci.Retry, lost.Results())
	assert.Equal(t, ci.Retry, lost.Step("wait").Results)
	// The request waits for a worker, then is built again.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "release"), nil, 0o644))
	conn2, err := local.NewConn("w1", filepath.Join(m.Dir, "w1"))
	require.NoError(t, err)
	require.NoError(t, m.AttachWorker(ctx, conn2))
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, 2, builds[0].Record.Number)

	// A second connection under the same name is refused.
	conn3, err := local.NewConn("w1", filepath.Join(m.Dir, "w1"))
	require.NoError(t, err)
	assert.ErrorIs(t, m.AttachWorker(ctx, conn3), ci.ErrWorkerAttached)
	conn4, err := local.NewConn("ghost", filepath.Join(m.Dir, "ghost"))
	require.NoError(t, err)
	assert.ErrorIs(t, m.AttachWorker(ctx, conn4), ci.ErrUnknownWorker)
}

// onNewTag submits a build of b1 for every change of category new-tag,
// with the change's ExternalID as schedulers do.
type onNewTag struct{ calls int }

func (s *onNewTag) SchedulerName() string  { return "tags" }
func (s *onNewTag) BuilderNames() []string { return []string{"b1"} }
func (s *onNewTag) OnChange(ctx context.Context, m *ci.Master, c *ci.Change) error {
	s.calls++
	if c.Category != "new-tag" {
		return nil
	}
	_, _, err := m.Submit(ctx, ci.Submission{Builders: []string{"b1"}, SourceStamps: []ci.SourceStamp{c.SourceStamp()},
		ExternalID: fmt.Sprintf("tags:change:%d", c.ID), Scheduler: "tags"})
	return err
}

// TestMaster_ChangesNotScheduled: a change stored by a master that stopped
// before its schedulers had it is given to them by the next start, or by a
// redelivery of the same change, and built once.
func TestMaster_ChangesNotScheduled(t *testing.T) {
	ctx := context.Background()
	t.Run("AtStart", func(t *testing.T) {
		dir := t.TempDir()
		cfg := oneBuilder(shell("s", "true"))
		cfg.BaseDir = dir
		// A first master runs and stops; then the change is stored in its
		// database directly, as a master that died right after storing
		// it would leave it. (Stored while that master ran, the change
		// could be seen by the scheduling pass it makes once started.)
		t.Run("first", func(t *testing.T) {
			cfg := cfg
			cfg.Schedulers = []ci.Scheduler{&onNewTag{}}
			citest.Start(t, cfg, citest.Options{NoWorkers: true})
		})
		st, err := sqlite.Open(ctx, cfg.DatabasePath())
		require.NoError(t, err)
		stored := ci.Change{Category: "new-tag", Branch: "0.9.1", Revision: "0.9.1", When: time.Now()}
		added, err := st.AddChange(ctx, &stored)
		require.NoError(t, err)
		require.True(t, added)
		require.NoError(t, st.Close())
		sched := &onNewTag{}
		cfg.Schedulers = []ci.Scheduler{sched}
		m := citest.Start(t, cfg)
		bss, _, err := m.Store.ListBuildsets(ctx, ci.BuildsetQuery{})
		require.NoError(t, err)
		require.Len(t, bss, 1, "the next master built the change")
		builds := m.WaitBuildset(t, bss[0].ID)
		require.Len(t, builds, 1)
		assert.Equal(t, "0.9.1", builds[0].Property("branch"))
		assert.Equal(t, 1, sched.calls)
	})
	t.Run("Redelivered", func(t *testing.T) {
		cfg := oneBuilder(shell("s", "true"))
		sched := &onNewTag{}
		cfg.Schedulers = []ci.Scheduler{sched}
		m := citest.Start(t, cfg)
		// Stored, but the schedulers were not told (a crash between the two).
		c := ci.Change{Category: "new-tag", Branch: "1.0", DedupKey: "github:delivery-1:0", When: time.Now()}
		_, err := m.Store.AddChange(ctx, &c)
		require.NoError(t, err)
		// The sender, having had no answer, delivers it again.
		again := ci.Change{Category: "new-tag", Branch: "1.0", DedupKey: "github:delivery-1:0"}
		added, err := m.Master.AddChange(ctx, &again)
		require.NoError(t, err)
		assert.False(t, added)
		assert.Equal(t, c.ID, again.ID)
		// And again: the schedulers are not told twice.
		_, err = m.Master.AddChange(ctx, &ci.Change{Category: "new-tag", Branch: "1.0", DedupKey: "github:delivery-1:0"})
		require.NoError(t, err)
		assert.Equal(t, 1, sched.calls)
		bss, _, err := m.Store.ListBuildsets(ctx, ci.BuildsetQuery{})
		require.NoError(t, err)
		require.Len(t, bss, 1)
		assert.Equal(t, ci.Success, m.WaitBuildset(t, bss[0].ID)[0].Results())
	})
	t.Run("SubmittedTwice", func(t *testing.T) {
		m := citest.Start(t, oneBuilder(shell("s", "true")))
		sub := ci.Submission{Builders: []string{"b1"}, ExternalID: "tags:change:77"}
		first, reqs, err := m.Master.Submit(ctx, sub)
		require.NoError(t, err)
		second, reqs2, err := m.Master.Submit(ctx, sub)
		require.NoError(t, err)
		assert.Equal(t, first.ID, second.ID)
		assert.Equal(t, reqs[0].ID, reqs2[0].ID)
		m.WaitBuildset(t, first.ID)
		builds, total, err := m.Store.ListBuilds(ctx, ci.BuildQuery{})
		require.NoError(t, err)
		assert.Equal(t, 1, total, "one build for the two submissions: %v", builds)
	})
}

// A preparedRecorder is a service that subscribes to the master's events
// in Prepare and records the order of its calls.
type preparedRecorder struct {
	mu    sync.Mutex
	calls []string
	sub   *ci.Subscription
}

func (r *preparedRecorder) Prepare(m *ci.Master) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "prepare")
	r.sub = m.Subscribe(1000)
}

func (r *preparedRecorder) Run(ctx context.Context, m *ci.Master) error {
	r.mu.Lock()
	r.calls = append(r.calls, "run")
	r.mu.Unlock()
	<-ctx.Done()
	return nil
}

// TestMaster_Preparer: a service's Prepare is called before its Run and
// before the master starts a build, so that a subscription it takes there
// sees the start of a request left pending by the last run, which the
// master builds as soon as a worker attaches.
func TestMaster_Preparer(t *testing.T) {
	dir := t.TempDir()
	cfg := restartConfig(dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "release"), nil, 0o644))
	bs := leavePending(t, cfg)

	rec := &preparedRecorder{}
	cfg.Services = append(cfg.Services, rec)
	m := citest.Start(t, cfg)
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	id := builds[0].Record.ID

	rec.mu.Lock()
	sub := rec.sub
	assert.Equal(t, "prepare", rec.calls[0])
	rec.mu.Unlock()
	require.NotNil(t, sub)
	defer sub.Close()
	var seen []ci.EventType
	deadline := time.After(time.Minute)
	for len(seen) == 0 || seen[len(seen)-1] != ci.EventBuildFinished {
		select {
		case e := <-sub.C:
			if e.BuildID == id && (e.Type == ci.EventBuildStarted || e.Type == ci.EventBuildFinished) {
				seen = append(seen, e.Type)
			}
		case <-deadline:
			t.Fatalf("the build's end never came; seen %v", seen)
		}
	}
	assert.Equal(t, []ci.EventType{ci.EventBuildStarted, ci.EventBuildFinished}, seen)
	assert.Zero(t, sub.Dropped())
	m.WaitFor(t, "the service to run", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.calls) == 2 && rec.calls[1] == "run"
	})
}
