package sqlite_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ci.Store {
		return MustOpen(t, filepath.Join(t.TempDir(), "state.sqlite"))
	})
}

// MustOpen opens the store at path and closes it when the test ends.
func MustOpen(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), path)
	require.NoError(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
}

// inspect opens the database file beside the store, to look at its tables.
func inspect(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(ON)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpen_Driver(t *testing.T) {
	// The driver is registered under the name the master uses; a master
	// opens it through MasterConfig.Database. Opening through the package
	// is enough here: registering twice would have panicked at init.
	path := filepath.Join(t.TempDir(), "state.sqlite")
	s := MustOpen(t, path)
	assert.Equal(t, path, s.Path())
}

func TestOpen_Restart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.sqlite")
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)

	b, err := s.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	c := &ci.Change{Revision: "abc", DedupKey: "d1", When: time.Now()}
	_, err = s.AddChange(ctx, c)
	require.NoError(t, err)
	_, reqs, err := addBuildset(ctx, s, b.ID)
	require.NoError(t, err)
	build := &ci.Build{BuilderID: b.ID, StartedAt: time.Now()}
	require.NoError(t, s.StartBuild(ctx, build, []int64{reqs[0].ID}))
	st := &ci.StepRecord{BuildID: build.ID, Name: "shell"}
	require.NoError(t, s.AddStep(ctx, st))
	l := &ci.Log{StepID: st.ID, Name: "stdio", Type: ci.LogStream}
	require.NoError(t, s.AddLog(ctx, l))
	_, _, err = s.AppendLog(ctx, l.ID, strings.Repeat("ocompiling the frobnicator\n", 100))
	require.NoError(t, err)
	require.NoError(t, s.SetState(ctx, "o", "k", []byte("v")))
	require.NoError(t, s.Close())

	s = MustOpen(t, path)
	got, err := s.GetBuild(ctx, build.ID)
	require.NoError(t, err)
	assert.Equal(t, build.Number, got.Number)
	unfinished, err := s.UnfinishedBuilds(ctx)
	require.NoError(t, err)
	require.Len(t, unfinished, 1, "a build running when the master stopped is found again")
	assert.Equal(t, build.ID, unfinished[0].ID)
	text, err := s.LogLines(ctx, l.ID, 99, 99)
	require.NoError(t, err)
	assert.Equal(t, "ocompiling the frobnicator\n", text)
	v, err := s.GetState(ctx, "o", "k")
	require.NoError(t, err)
	assert.Equal(t, []byte("v"), v)
	added, err := s.AddChange(ctx, &ci.Change{DedupKey: "d1"})
	require.NoError(t, err)
	assert.False(t, added, "dedup keys are remembered")

	_, err = s.FinishBuild(ctx, unfinished[0], true)
	require.NoError(t, err)
	pending, err := s.PendingRequests(ctx)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	next := &ci.Build{BuilderID: b.ID}
	require.NoError(t, s.StartBuild(ctx, next, []int64{pending[0].ID}))
	assert.Equal(t, 2, next.Number)
}

func addBuildset(ctx context.Context, s ci.Store, builderIDs ...int64) (*ci.Buildset, []*ci.BuildRequest, error) {
	bs := &ci.Buildset{SubmittedAt: time.Now(), SourceStamps: []ci.SourceStamp{{Branch: "main"}}}
	reqs, err := s.AddBuildset(ctx, bs, builderIDs, 0)
	return bs, reqs, err
}

func TestOpen_Migrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.sqlite")
	s := MustOpen(t, path)
	db := inspect(t, path)
	migrations := func() []string {
		rows, err := db.Query(`SELECT name FROM migrations ORDER BY name`)
		require.NoError(t, err)
		defer rows.Close()
		var names []string
		for rows.Next() {
			var name string
			require.NoError(t, rows.Scan(&name))
			names = append(names, name)
		}
		require.NoError(t, rows.Err())
		return names
	}
	applied := migrations()
	require.NotEmpty(t, applied)
	assert.Equal(t, "migrations/0001_init.sql", applied[0])
	require.NoError(t, s.Close())

	// Reopening applies nothing again (a second CREATE TABLE would fail).
	s2 := MustOpen(t, path)
	assert.Equal(t, applied, migrations())
	_, err := s2.EnsureBuilder(t.Context(), "b", "", nil)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
	MustOpen(t, path)
	assert.Equal(t, applied, migrations())
}

func TestOpen_Pragmas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.sqlite")
	MustOpen(t, path)
	db := inspect(t, path)
	var mode string
	require.NoError(t, db.QueryRow(`PRAGMA journal_mode`).Scan(&mode))
	assert.Equal(t, "wal", mode, "WAL mode is a property of the file")
}

func TestOpen_Errors(t *testing.T) {
	_, err := sqlite.Open(t.Context(), "")
	assert.Error(t, err)
	_, err = sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "missing", "dir", "state.sqlite"))
	assert.Error(t, err)
}

func TestOpen_OddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "state.sqlite")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	s := MustOpen(t, path)
	require.NoError(t, s.SetState(t.Context(), "o", "k", []byte("v")))
	require.NoError(t, s.Close())
	s = MustOpen(t, path)
	v, err := s.GetState(t.Context(), "o", "k")
	require.NoError(t, err)
	assert.Equal(t, []byte("v"), v)
}

// newLog makes the records a log needs and the log.
func newLog(t *testing.T, s *sqlite.Store) *ci.Log {
	t.Helper()
	ctx := t.Context()
	b, err := s.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	_, reqs, err := addBuildset(ctx, s, b.ID)
	require.NoError(t, err)
	build := &ci.Build{BuilderID: b.ID}
	require.NoError(t, s.StartBuild(ctx, build, []int64{reqs[0].ID}))
	st := &ci.StepRecord{BuildID: build.ID, Name: "shell"}
	require.NoError(t, s.AddStep(ctx, st))
	l := &ci.Log{StepID: st.ID, Name: "stdio", Type: ci.LogStream}
	require.NoError(t, s.AddLog(ctx, l))
	return l
}

type chunkRow struct {
	first, last int
	size        int
	compressed  bool
}

func chunks(t *testing.T, db *sql.DB, logID int64) []chunkRow {
	t.Helper()
	rows, err := db.Query(`SELECT first_line, last_line, length(content), compressed FROM logchunks
		WHERE log_id = ? ORDER BY first_line`, logID)
	require.NoError(t, err)
	defer rows.Close()
	var list []chunkRow
	for rows.Next() {
		var c chunkRow
		require.NoError(t, rows.Scan(&c.first, &c.last, &c.size, &c.compressed))
		list = append(list, c)
	}
	require.NoError(t, rows.Err())
	return list
}

func TestStore_AppendLog(t *testing.T) {
	t.Run("Chunks", func(t *testing.T) {
		ctx := t.Context()
		path := filepath.Join(t.TempDir(), "state.sqlite")
		s := MustOpen(t, path)
		db := inspect(t, path)
		l := newLog(t, s)

		_, _, err := s.AppendLog(ctx, l.ID, "oshort\n")
		require.NoError(t, err)
		big := strings.Repeat("otest_frobnicator.go:12: PASS TestFrobnicate (0.00s)\n", 4000) // ~200 KiB
		first, last, err := s.AppendLog(ctx, l.ID, big)
		require.NoError(t, err)
		assert.Equal(t, 1, first)
		assert.Equal(t, 4000, last)

		require.NoError(t, s.Sync(ctx))
		cs := chunks(t, db, l.ID)
		require.Greater(t, len(cs), 3, "a big append is cut into chunks of at most 64 KiB")
		assert.Equal(t, chunkRow{0, 0, len("oshort\n"), false}, cs[0], "a short chunk is not compressed")
		next := 1
		for _, c := range cs[1:] {
			assert.Equal(t, next, c.first, "chunks follow each other")
			next = c.last + 1
			assert.True(t, c.compressed)
			assert.Less(t, c.size, 64<<10/10, "log text compresses well")
		}
		assert.Equal(t, 4001, next)

		text, err := s.LogLines(ctx, l.ID, 0, -1)
		require.NoError(t, err)
		assert.Equal(t, "oshort\n"+big, text)
	})
	t.Run("LongLine", func(t *testing.T) {
		ctx := t.Context()
		path := filepath.Join(t.TempDir(), "state.sqlite")
		s := MustOpen(t, path)
		db := inspect(t, path)
		l := newLog(t, s)
		long := "o" + strings.Repeat("x", 100<<10) + "\n"
		_, _, err := s.AppendLog(ctx, l.ID, "oa\n"+long+"ob\n")
		require.NoError(t, err)
		require.NoError(t, s.Sync(ctx))
		cs := chunks(t, db, l.ID)
		require.Len(t, cs, 3, "a line longer than a chunk is a chunk of its own")
		assert.Equal(t, []int{0, 1, 2}, []int{cs[0].first, cs[1].first, cs[2].first})
		text, err := s.LogLines(ctx, l.ID, 1, 1)
		require.NoError(t, err)
		assert.Equal(t, long, text)
	})
	t.Run("NotWholeLines", func(t *testing.T) {
		s := MustOpen(t, filepath.Join(t.TempDir(), "state.sqlite"))
		l := newLog(t, s)
		for _, text := range []string{"", "no newline", "a\nb"} {
			_, _, err := s.AppendLog(t.Context(), l.ID, text)
			assert.Error(t, err, "%q", text)
		}
		got, err := s.GetLog(t.Context(), l.ID)
		require.NoError(t, err)
		assert.Zero(t, got.NumLines)
	})
}

// TestStore_LogFormat checks that chunks compressed by the standard
// library's compress/zlib, as earlier versions stored them (at its
// default level, and at BestSpeed), read as they were written, and that
// the chunks stored now are zlib that compress/zlib reads.
func TestStore_LogFormat(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.sqlite")
	s := MustOpen(t, path)
	l := newLog(t, s)
	// Another connection writes, once the log's record is committed.
	require.NoError(t, s.Sync(ctx))
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })

	var old []string
	for i, level := range []int{zlib.DefaultCompression, zlib.BestSpeed} {
		text := strings.Repeat(fmt.Sprintf("ook %d: --- PASS: TestFrobnicate (0.00s)\n", i), 300)
		var z bytes.Buffer
		w, err := zlib.NewWriterLevel(&z, level)
		require.NoError(t, err)
		_, err = w.Write([]byte(text))
		require.NoError(t, err)
		require.NoError(t, w.Close())
		_, err = db.Exec(`INSERT INTO logchunks (log_id, first_line, last_line, content, compressed) VALUES (?, ?, ?, ?, 1)`,
			l.ID, 300*i, 300*i+299, z.Bytes())
		require.NoError(t, err)
		old = append(old, text)
	}
	_, err = db.Exec(`UPDATE logs SET num_lines = 600 WHERE id = ?`, l.ID)
	require.NoError(t, err)

	got, err := s.LogLines(ctx, l.ID, 0, -1)
	require.NoError(t, err)
	assert.Equal(t, old[0]+old[1], got, "chunks stored by earlier versions")
	got, err = s.LogLines(ctx, l.ID, 299, 300)
	require.NoError(t, err)
	assert.Equal(t, "ook 0: --- PASS: TestFrobnicate (0.00s)\nook 1: --- PASS: TestFrobnicate (0.00s)\n", got)

	text := strings.Repeat("oa line of the log written now\n", 1000)
	first, last, err := s.AppendLog(ctx, l.ID, text)
	require.NoError(t, err)
	assert.Equal(t, []int{600, 1599}, []int{first, last})
	require.NoError(t, s.Sync(ctx))
	var content []byte
	var compressed bool
	require.NoError(t, db.QueryRow(`SELECT content, compressed FROM logchunks WHERE log_id = ? AND first_line = 600`, l.ID).Scan(&content, &compressed))
	require.True(t, compressed)
	r, err := zlib.NewReader(bytes.NewReader(content))
	require.NoError(t, err)
	plain, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, text, string(plain), "compress/zlib reads the chunks stored now")
	got, err = s.LogLines(ctx, l.ID, 0, -1)
	require.NoError(t, err)
	assert.Equal(t, old[0]+old[1]+text, got)
}

func TestStore_LiveLog(t *testing.T) {
	// Another connection to the file (another process) sees each append
	// once it is committed (Sync), while the log is not complete; the
	// store's own reads see it as soon as it returns.
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.sqlite")
	s := MustOpen(t, path)
	db := inspect(t, path)
	l := newLog(t, s)
	for i := range 5 {
		_, last, err := s.AppendLog(ctx, l.ID, "oline\n")
		require.NoError(t, err)
		require.NoError(t, s.Sync(ctx))
		var n int
		var complete bool
		require.NoError(t, db.QueryRow(`SELECT num_lines, complete FROM logs WHERE id = ?`, l.ID).Scan(&n, &complete))
		assert.Equal(t, i+1, n)
		assert.False(t, complete)
		assert.Equal(t, i, last)
		text, err := s.LogLines(ctx, l.ID, i, -1)
		require.NoError(t, err)
		assert.Equal(t, "oline\n", text)
	}
}

func TestStore_Now(t *testing.T) {
	s := MustOpen(t, filepath.Join(t.TempDir(), "state.sqlite"))
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Now = func() time.Time { return now }
	c := &ci.Change{Revision: "abc"}
	_, err := s.AddChange(t.Context(), c)
	require.NoError(t, err)
	b, err := s.EnsureBuilder(t.Context(), "b", "", nil)
	require.NoError(t, err)
	bs := &ci.Buildset{SourceStamps: []ci.SourceStamp{{ID: c.SourceStampID}, {Branch: "x"}}}
	_, err = s.AddBuildset(t.Context(), bs, []int64{b.ID}, 0)
	require.NoError(t, err)
	got, err := s.GetBuildset(t.Context(), bs.ID)
	require.NoError(t, err)
	assert.Equal(t, now, got.SourceStamps[0].CreatedAt, "the source stamp of a change is dated by the store")
	assert.Equal(t, now, got.SourceStamps[1].CreatedAt)
}

func TestStore_References(t *testing.T) {
	s := MustOpen(t, filepath.Join(t.TempDir(), "state.sqlite"))
	ctx := t.Context()
	_, err := s.AddBuildset(ctx, &ci.Buildset{}, []int64{42}, 0)
	assert.ErrorIs(t, err, ci.ErrNotFound, "no builder 42")
	err = s.StartBuild(ctx, &ci.Build{BuilderID: 1}, []int64{42})
	assert.ErrorIs(t, err, ci.ErrNotFound, "no request 42")
	err = s.AddStep(ctx, &ci.StepRecord{BuildID: 42})
	assert.ErrorIs(t, err, ci.ErrNotFound, "no build 42")
	err = s.AddLog(ctx, &ci.Log{StepID: 42, Name: "stdio"})
	assert.ErrorIs(t, err, ci.ErrNotFound, "no step 42")
	list, total, err := s.ListBuilds(ctx, ci.BuildQuery{})
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.Zero(t, total)
}

func TestStore_Backup(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "state.sqlite"))
	require.NoError(t, err)
	defer s.Close()
	b, err := s.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	reqs, err := s.AddBuildset(ctx, &ci.Buildset{SubmittedAt: time.Now(), Properties: ci.Properties{}}, []int64{b.ID}, 0)
	require.NoError(t, err)
	// Writes go on while the backup is taken.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			s.AddChange(ctx, &ci.Change{Branch: "main", When: time.Now()})
		}
	}()
	backup := filepath.Join(dir, "backup.sqlite")
	require.NoError(t, s.Backup(ctx, backup))
	<-done
	copy, err := sqlite.Open(ctx, backup)
	require.NoError(t, err)
	defer copy.Close()
	got, err := copy.GetRequest(ctx, reqs[0].ID)
	require.NoError(t, err)
	assert.Equal(t, b.ID, got.BuilderID)
	assert.Error(t, s.Backup(ctx, backup), "an existing file is not overwritten")
}

// A builder's build count (the total of its page of builds) is kept as
// builds are started and deleted, and made from the builds a file holds
// when it gets the count (a file of an older version).
func TestBuilderBuildCount(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.sqlite")
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	b1, err := s.EnsureBuilder(ctx, "b1", "", nil)
	require.NoError(t, err)
	b2, err := s.EnsureBuilder(ctx, "b2", "", nil)
	require.NoError(t, err)
	var ids []int64
	for i := range 5 {
		builder := b1.ID
		if i == 4 {
			builder = b2.ID
		}
		_, reqs, err := addBuildset(ctx, s, builder)
		require.NoError(t, err)
		build := &ci.Build{BuilderID: builder, StartedAt: time.Now()}
		require.NoError(t, s.StartBuild(ctx, build, []int64{reqs[0].ID}))
		build.Complete, build.CompleteAt = true, time.Now()
		_, err = s.FinishBuild(ctx, build, false)
		require.NoError(t, err)
		ids = append(ids, build.ID)
	}
	total := func(s *sqlite.Store, builder int64) int {
		t.Helper()
		list, total, err := s.ListBuilds(ctx, ci.BuildQuery{BuilderID: builder, Query: ci.Query{Limit: 1}})
		require.NoError(t, err)
		require.NotEmpty(t, list)
		return total
	}
	assert.Equal(t, 4, total(s, b1.ID))
	assert.Equal(t, 1, total(s, b2.ID))
	_, err = s.DeleteBuilds(ctx, ids[:2])
	require.NoError(t, err)
	assert.Equal(t, 2, total(s, b1.ID), "deleted builds are no longer counted")
	require.NoError(t, s.Close())

	// A file without the count: it is made from the builds there are.
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	for _, q := range []string{
		`DROP TRIGGER builds_counted`, `DROP TRIGGER builds_uncounted`, `DROP TRIGGER builds_recounted`,
		`DROP TABLE builder_build_counts`, `DELETE FROM migrations WHERE name = 'migrations/0007_build_counts.sql'`,
	} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	require.NoError(t, db.Close())
	s = MustOpen(t, path)
	assert.Equal(t, 2, total(s, b1.ID))
	assert.Equal(t, 1, total(s, b2.ID))
}
