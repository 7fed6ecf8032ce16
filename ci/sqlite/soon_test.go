package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// A soonFixture is a store whose progress writes stay uncommitted until
// something commits them (soonWindow of an hour), with a builder, a
// pending request and a second connection to the file, which sees only
// what is committed.
type soonFixture struct {
	s       *Store
	builder int64
	request int64
	other   *sql.DB
}

func newSoonFixture(t *testing.T, window time.Duration) *soonFixture {
	t.Helper()
	ctx := t.Context()
	s := openStore(t)
	s.soonWindow = window
	b, err := s.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	reqs, err := s.AddBuildset(ctx, &ci.Buildset{SubmittedAt: time.Now()}, []int64{b.ID}, 0)
	require.NoError(t, err)
	other, err := sql.Open("sqlite", s.path+"?_pragma=query_only(ON)")
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	return &soonFixture{s: s, builder: b.ID, request: reqs[0].ID, other: other}
}

// count returns how many rows of table another connection sees.
func (f *soonFixture) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	require.NoError(t, f.other.QueryRow(`SELECT COUNT(*) FROM `+table).Scan(&n))
	return n
}

func (f *soonFixture) start(t *testing.T) *ci.Build {
	t.Helper()
	b := &ci.Build{BuilderID: f.builder, StartedAt: time.Now()}
	require.NoError(t, f.s.StartBuild(t.Context(), b, []int64{f.request}))
	return b
}

// TestWriteSoon_ReadCommits: a progress write (a build's start) returns
// before it is committed; a read through the store commits it first, and
// sees it.
func TestWriteSoon_ReadCommits(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	b := f.start(t)
	assert.Equal(t, 1, b.Number)
	assert.Zero(t, f.count(t, "builds"), "another connection sees only what is committed")
	assert.Equal(t, int64(1), f.s.open.Load())

	got, err := f.s.GetBuild(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, got.Number)
	assert.Equal(t, 1, f.count(t, "builds"), "the read committed the build's start")
	assert.Zero(t, f.s.open.Load())
}

// TestWriteSoon_Window: progress writes are committed at the end of the
// window, with nothing else happening.
func TestWriteSoon_Window(t *testing.T) {
	f := newSoonFixture(t, time.Millisecond)
	f.start(t)
	deadline := time.Now().Add(10 * time.Second)
	for f.count(t, "builds") == 0 {
		require.True(t, time.Now().Before(deadline), "the build's start was never committed")
		time.Sleep(time.Millisecond)
	}
	assert.Zero(t, f.s.open.Load())
}

// TestWriteSoon_DurableWriteCommits: a write that returns once committed
// commits the progress writes before it in the same transaction.
func TestWriteSoon_DurableWriteCommits(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	b := f.start(t)
	st := &ci.StepRecord{BuildID: b.ID, Name: "compile", StartedAt: time.Now()}
	require.NoError(t, f.s.AddStep(ctx, st))
	assert.Equal(t, int64(2), f.s.open.Load())
	assert.Zero(t, f.count(t, "steps"))

	require.NoError(t, f.s.SetState(ctx, "o", "k", []byte("v")))
	assert.Equal(t, 1, f.count(t, "builds"))
	assert.Equal(t, 1, f.count(t, "steps"))
	assert.Equal(t, 1, f.count(t, "object_state"))
	assert.Zero(t, f.s.open.Load())
}

// TestWriteSoon_FailsAlone: a progress write that fails is undone alone,
// whether it joins others or not, and its caller gets its error.
func TestWriteSoon_FailsAlone(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)

	// Alone: nothing stays open.
	err := f.s.StartBuild(ctx, &ci.Build{BuilderID: f.builder, StartedAt: time.Now()}, []int64{f.request + 100})
	assert.ErrorIs(t, err, ci.ErrNotFound)
	assert.Zero(t, f.s.open.Load())

	// Among others: the others stay, to be committed.
	first := f.start(t)
	err = f.s.StartBuild(ctx, &ci.Build{BuilderID: f.builder, StartedAt: time.Now()}, []int64{f.request})
	assert.ErrorIs(t, err, ci.ErrConflict, "the request is claimed by the first build")
	st := &ci.StepRecord{BuildID: first.ID, Name: "compile", StartedAt: time.Now()}
	require.NoError(t, f.s.AddStep(ctx, st))
	assert.Equal(t, int64(2), f.s.open.Load())

	require.NoError(t, f.s.Sync(ctx))
	assert.Equal(t, 1, f.count(t, "builds"), "the failed start is not stored")
	assert.Equal(t, 1, f.count(t, "steps"))
	r, err := f.s.GetRequest(ctx, f.request)
	require.NoError(t, err)
	assert.Equal(t, first.ID, r.BuildID)
}

// TestWriteSoon_Close: closing the store commits its progress writes.
func TestWriteSoon_Close(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	b := f.start(t)
	require.NoError(t, f.s.Close())

	s, err := Open(ctx, f.s.path)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.GetBuild(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, got.Number)
}

// TestWriteSoon_RawCommitsFirst: an operation outside a transaction (a
// VACUUM) commits the progress writes before it runs.
func TestWriteSoon_RawCommitsFirst(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	f.start(t)
	err := f.s.rawWrite(ctx, func(conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, `VACUUM`)
		return err
	})
	require.NoError(t, err, "VACUUM ran outside a transaction")
	assert.Equal(t, 1, f.count(t, "builds"))
	assert.Zero(t, f.s.open.Load())
}

// TestWriteSoon_CommitFails: when the commit that carries progress writes
// fails, the write that asked for it gets the error, the progress writes
// are lost and reported to the store's logger, and the store goes on.
// The commit is made to fail by a progress write that breaks a foreign
// key checked only at commit (defer_foreign_keys).
func TestWriteSoon_CommitFails(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	var logged bytes.Buffer
	f.s.Logger = slog.New(slog.NewTextHandler(&logged, nil))

	f.start(t)
	err := f.s.writeSoon(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO steps (build_id, number, name) VALUES (?, 0, 'orphan')`, 999999)
		return err
	})
	require.NoError(t, err, "the broken key is found only at commit")
	assert.Equal(t, int64(2), f.s.open.Load())

	err = f.s.SetState(ctx, "o", "k", []byte("v"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "FOREIGN KEY")
	assert.Zero(t, f.s.open.Load())
	assert.Contains(t, logged.String(), "progress writes lost")
	assert.Contains(t, logged.String(), "writes=2")

	// Nothing of that transaction is stored, and the store goes on.
	assert.Zero(t, f.count(t, "builds"))
	_, err = f.s.GetState(ctx, "o", "k")
	assert.ErrorIs(t, err, ci.ErrNotFound)
	b := f.start(t)
	assert.Equal(t, 1, b.Number)
	require.NoError(t, f.s.SetState(ctx, "o", "k", []byte("v")))
	assert.Equal(t, 1, f.count(t, "builds"))
}

// TestWriteSoon_CancelledContext: a progress write whose caller gave up
// before it ran is not run; one run is not undone by its context ending.
func TestWriteSoon_CancelledContext(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err := f.s.StartBuild(cctx, &ci.Build{BuilderID: f.builder, StartedAt: time.Now()}, []int64{f.request})
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	assert.Zero(t, f.s.open.Load())

	cctx, cancel = context.WithCancel(ctx)
	b := &ci.Build{BuilderID: f.builder, StartedAt: time.Now()}
	require.NoError(t, f.s.StartBuild(cctx, b, []int64{f.request}))
	cancel()
	require.NoError(t, f.s.Sync(ctx))
	assert.Equal(t, 1, f.count(t, "builds"))
}

// TestWrite_GroupFirstFails: the first write of a group runs without a
// savepoint; when it fails, the transaction is rolled back and begun
// again, and the writes after it are committed, progress writes or not.
func TestWrite_GroupFirstFails(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	release := holdWriter(t, f.s)

	errs := make([]error, 4)
	done := make(chan struct{})
	go func() {
		// Fails after its first statement: nothing of it may stay.
		errs[0] = f.s.write(ctx, func(tx *txn) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO object_state (object, key, value) VALUES ('o', 'half', '1')`); err != nil {
				return err
			}
			return errors.New("second statement failed")
		})
		done <- struct{}{}
	}()
	waitWaiting(f.s, 1)
	b := &ci.Build{BuilderID: f.builder, StartedAt: time.Now()}
	go func() { errs[1] = f.s.StartBuild(ctx, b, []int64{f.request}); done <- struct{}{} }()
	waitWaiting(f.s, 2)
	go func() { errs[2] = f.s.SetState(ctx, "o", "k", []byte("v")); done <- struct{}{} }()
	waitWaiting(f.s, 3)
	release()
	for range 3 {
		<-done
	}
	assert.EqualError(t, errs[0], "second statement failed")
	require.NoError(t, errs[1])
	require.NoError(t, errs[2])
	assert.Equal(t, 1, f.count(t, "builds"), "committed with the durable write after it")
	var n int
	require.NoError(t, f.other.QueryRow(`SELECT COUNT(*) FROM object_state WHERE key = 'half'`).Scan(&n))
	assert.Zero(t, n, "the failed write's first statement is undone")
	v, err := f.s.GetState(ctx, "o", "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(v))
	assert.Equal(t, int64(3), f.s.grouped.Load(), "the three writes were committed together")
}

// TestWriteSoon_ReadAfterReturn: a read that follows a progress write's
// return sees it, however soon: the write is counted open before its
// caller hears of it. (Counted after, a read on another goroutine could
// find nothing open, not commit, and miss it.)
func TestWriteSoon_ReadAfterReturn(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	// The writer lingers after answering, as a busy machine may make it.
	f.s.testHookAnswered = func() { time.Sleep(time.Millisecond) }
	for i := range 100 {
		reqs, err := f.s.AddBuildset(ctx, &ci.Buildset{SubmittedAt: time.Now()}, []int64{f.builder}, 0)
		require.NoError(t, err)
		b := &ci.Build{BuilderID: f.builder, StartedAt: time.Now()}
		started := make(chan struct{})
		read := make(chan error, 1)
		go func() {
			<-started
			_, err := f.s.GetBuild(ctx, b.ID)
			read <- err
		}()
		require.NoError(t, f.s.StartBuild(ctx, b, []int64{reqs[0].ID}))
		close(started)
		require.NoError(t, <-read, "build %d, round %d", b.ID, i)
	}
}

// TestLogBytes_FailedWrites: the stored total of log bytes, kept in memory
// while the writer's transaction is open and added as it commits, counts
// the chunks of the writes that are stored, and nothing of a write that
// failed after storing a log's lines: alone (its transaction rolled
// back), or among others (rolled back to its savepoint).
func TestLogBytes_FailedWrites(t *testing.T) {
	ctx := t.Context()
	f := newSoonFixture(t, time.Hour)
	b := f.start(t)
	st := &ci.StepRecord{BuildID: b.ID, Name: "compile", StartedAt: time.Now()}
	require.NoError(t, f.s.AddStep(ctx, st))
	var logs []*ci.Log
	for _, name := range []string{"a", "b", "c"} {
		l := &ci.Log{StepID: st.ID, Name: name, Type: ci.LogStream}
		require.NoError(t, f.s.AddLog(ctx, l))
		logs = append(logs, l)
	}
	stored := func() (total, chunks int64) {
		t.Helper()
		total, err := f.s.LogBytes(ctx) // commits the progress writes first
		require.NoError(t, err)
		require.NoError(t, f.other.QueryRow(`SELECT COALESCE(SUM(LENGTH(content)), 0) FROM logchunks`).Scan(&chunks))
		return total, chunks
	}
	// failing finishes st with its logs' last lines: log a's are stored,
	// then log 1<<40 is not found and the write fails.
	failing := func() error {
		next := &ci.StepRecord{BuildID: b.ID, Number: 1, Name: "test", StartedAt: time.Now()}
		return f.s.AddStepLogs(ctx, st, []ci.LogEnd{{LogID: logs[0].ID, Text: "never stored\n"}, {LogID: 1 << 40, Text: "x\n"}}, next, nil)
	}

	// Alone.
	require.NoError(t, f.s.Sync(ctx))
	require.ErrorIs(t, failing(), ci.ErrNotFound)
	require.Zero(t, f.s.open.Load())
	total, chunks := stored()
	assert.Zero(t, chunks)
	assert.Zero(t, total)

	// Among others: log b's lines are stored and open when the failing
	// write joins them; log c's come after it, in the same transaction.
	_, _, err := f.s.AppendLog(ctx, logs[1].ID, "ohello\n")
	require.NoError(t, err)
	require.Equal(t, int64(1), f.s.open.Load())
	require.ErrorIs(t, failing(), ci.ErrNotFound)
	_, _, err = f.s.AppendLog(ctx, logs[2].ID, "oworld, again\n")
	require.NoError(t, err)
	require.Equal(t, int64(2), f.s.open.Load())
	total, chunks = stored()
	assert.Positive(t, chunks)
	assert.Equal(t, chunks, total)
	text, err := f.s.LogLines(ctx, logs[0].ID, 0, -1)
	require.NoError(t, err)
	assert.Empty(t, text)
}
