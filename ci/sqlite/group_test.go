package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// TestWrite_Group makes writes wait while the writer is busy, so that they
// are committed together: the one that fails (a build claiming a request
// already claimed, after inserting its build) is rolled back alone, the
// others are stored, and each caller gets its own outcome.
func TestWrite_Group(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	b, err := s.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	reqs, err := s.AddBuildset(ctx, &ci.Buildset{SubmittedAt: time.Now()}, []int64{b.ID}, 0)
	require.NoError(t, err)
	first := &ci.Build{BuilderID: b.ID, StartedAt: time.Now()}
	require.NoError(t, s.StartBuild(ctx, first, []int64{reqs[0].ID}))

	// Hold the writer.
	release := holdWriter(t, s)

	const n = 8
	var wg sync.WaitGroup
	stateErrs := make([]error, n)
	for i := range n {
		wg.Go(func() { stateErrs[i] = s.SetState(ctx, "o", fmt.Sprint("k", i), []byte(fmt.Sprint("v", i))) })
	}
	var conflict error
	second := &ci.Build{BuilderID: b.ID, StartedAt: time.Now()}
	wg.Go(func() { conflict = s.StartBuild(ctx, second, []int64{reqs[0].ID}) })
	waitWaiting(s, n+1)
	release()
	wg.Wait()

	assert.Equal(t, int64(n+1), s.grouped.Load(), "the waiting writes were committed together")
	assert.ErrorIs(t, conflict, ci.ErrConflict)
	for i := range n {
		require.NoError(t, stateErrs[i])
		v, err := s.GetState(ctx, "o", fmt.Sprint("k", i))
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint("v", i), string(v))
	}
	builds, total, err := s.ListBuilds(ctx, ci.BuildQuery{})
	require.NoError(t, err)
	assert.Equal(t, 1, total, "the failed write's build is rolled back")
	require.Len(t, builds, 1)
	assert.Equal(t, first.ID, builds[0].ID)
	r, err := s.GetRequest(ctx, reqs[0].ID)
	require.NoError(t, err)
	assert.Equal(t, first.ID, r.BuildID)

	// The store goes on writing after the group.
	require.NoError(t, s.SetState(ctx, "o", "after", []byte("x")))
}

// TestWrite_Cancelled: a write whose context ends while it waits for the
// writer is not run, and says so.
func TestWrite_Cancelled(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)

	release := holdWriter(t, s)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.SetState(wctx, "o", "k", []byte("v")) }()
	waitWaiting(s, 1)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	release()
	_, err := s.GetState(ctx, "o", "k")
	assert.ErrorIs(t, err, ci.ErrNotFound)
}

// TestWrite_Concurrent: writes from many goroutines, some of them given
// up by their callers (before they run, or while they run alone), each
// return their own outcome: every write that returned nil is stored, and
// every other returned its context's error and is not stored.
func TestWrite_Concurrent(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	const goroutines, each = 8, 40
	errs := make([][]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		errs[g] = make([]error, each)
		wg.Go(func() {
			for i := range each {
				wctx, cancel := ctx, context.CancelFunc(func() {})
				if i%5 == 4 {
					wctx, cancel = context.WithTimeout(ctx, time.Duration(i%3)*50*time.Microsecond)
				}
				errs[g][i] = s.SetState(wctx, "o", fmt.Sprint(g, "-", i), []byte("v"))
				cancel()
			}
		})
	}
	wg.Wait()
	for g := range goroutines {
		for i := range each {
			_, err := s.GetState(ctx, "o", fmt.Sprint(g, "-", i))
			if errs[g][i] == nil {
				assert.NoError(t, err, "write %d-%d returned nil", g, i)
				continue
			}
			assert.Equal(t, 4, i%5, "write %d-%d had no deadline, yet failed: %v", g, i, errs[g][i])
			assert.ErrorIs(t, errs[g][i], context.DeadlineExceeded, "write %d-%d", g, i)
			assert.ErrorIs(t, err, ci.ErrNotFound, "write %d-%d failed (%v) but is stored", g, i, errs[g][i])
		}
	}
	assert.Zero(t, s.waiting.Load())
}

// TestWrite_RawAmongWrites queues an operation on the write connection
// outside a transaction (a VACUUM, which fails inside one) among writes
// waiting for the writer: it runs between their groups, and every write
// is committed.
func TestWrite_RawAmongWrites(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)

	release := holdWriter(t, s)

	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Go(func() { errs[i] = s.SetState(ctx, "o", fmt.Sprint("k", i), []byte("v")) })
	}
	waitWaiting(s, n)
	var vacuum error
	wg.Go(func() {
		vacuum = s.rawWrite(ctx, func(conn *sql.Conn) error {
			_, err := conn.ExecContext(ctx, `VACUUM`)
			return err
		})
	})
	waitWaiting(s, n+1)
	for i := n; i < 2*n; i++ {
		wg.Go(func() { errs[i] = s.SetState(ctx, "o", fmt.Sprint("k", i), []byte("v")) })
	}
	waitWaiting(s, 2*n+1)
	release()
	wg.Wait()
	require.NoError(t, vacuum, "VACUUM ran outside the writes' transactions")
	for i := range 2 * n {
		require.NoError(t, errs[i])
		v, err := s.GetState(ctx, "o", fmt.Sprint("k", i))
		require.NoError(t, err)
		assert.Equal(t, "v", string(v))
	}
	assert.Positive(t, s.grouped.Load(), "writes waiting together were committed together")
}

// openStore opens a store in a new file, closed at the end of the test.
func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "state.sqlite"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// holdWriter keeps the writer busy with a write of its own until the
// function it returns is called, which then checks that write's outcome.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, done := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.write(t.Context(), func(tx *txn) error {
			close(started)
			<-done
			return nil
		})
	}()
	<-started
	return func() {
		close(done)
		require.NoError(t, <-held)
	}
}

// waitWaiting returns once n writes wait for the writer. A write is
// counted just before it offers itself to the writer: the pause lets
// those counted make the offer, so that the writer, once free, finds
// them all waiting.
func waitWaiting(s *Store, n int64) {
	for s.waiting.Load() < n {
		runtime.Gosched()
	}
	time.Sleep(20 * time.Millisecond)
}
