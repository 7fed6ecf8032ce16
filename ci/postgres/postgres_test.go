package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/postgres"
	"github.com/kilnci/kiln/ci/storetest"
	"github.com/kilnci/kiln/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// migrated is a database with the store's schema, copied for each test.
var migrated = &pgtest.Template{Prepare: func(ctx context.Context, url string) error {
	s, err := postgres.Open(ctx, url)
	if err != nil {
		return err
	}
	return s.Close()
}}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ci.Store {
		return MustOpen(t, migrated.NewDatabase(t))
	})
}

// MustOpen opens the store at url and closes it when the test ends.
func MustOpen(tb testing.TB, url string) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), url)
	require.NoError(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
}

// inspect connects to the store's database, to look at its tables.
func inspect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func addBuildset(ctx context.Context, s ci.Store, builderIDs ...int64) (*ci.Buildset, []*ci.BuildRequest, error) {
	bs := &ci.Buildset{SubmittedAt: time.Now(), SourceStamps: []ci.SourceStamp{{Branch: "main"}}}
	reqs, err := s.AddBuildset(ctx, bs, builderIDs, 0)
	return bs, reqs, err
}

func TestOpen_Migrations(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := MustOpen(t, url)
	db := inspect(t, url)
	migrations := func() []string {
		rows, err := db.Query(t.Context(), `SELECT name FROM migrations ORDER BY name`)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}
	applied := migrations()
	require.NotEmpty(t, applied)
	assert.Equal(t, "migrations/0001_init.sql", applied[0])
	require.NoError(t, s.Close())

	// Reopening applies nothing again (a second CREATE TABLE would fail).
	s2 := MustOpen(t, url)
	assert.Equal(t, applied, migrations())
	_, err := s2.EnsureBuilder(t.Context(), "b", "", nil)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

func TestOpen_Concurrent(t *testing.T) {
	// Masters starting at once on an empty database: one applies the
	// migrations, the others wait for it and apply nothing.
	url := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), url)
			if err == nil {
				_, err = s.EnsureBuilder(t.Context(), "b", "", nil)
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

func TestOpen_Errors(t *testing.T) {
	_, err := postgres.Open(t.Context(), "")
	assert.Error(t, err)

	good, err := url.Parse(pgtest.NewDatabase(t))
	require.NoError(t, err)
	const pw = "s3cr3t-Passw0rd"
	with := func(f func(u *url.URL)) string {
		u := *good
		u.User = url.UserPassword("postgres", pw)
		f(&u)
		return u.String()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for name, dsn := range map[string]string{
		"NoDatabase": with(func(u *url.URL) { u.Path = "/nosuchdb" }),
		"NoServer":   with(func(u *url.URL) { u.Host = "127.0.0.1:1" }),
		"BadPort":    "postgres://postgres:" + pw + "@127.0.0.1:notaport/db",
		"BadOption":  with(func(u *url.URL) { u.RawQuery = "sslmode=bogus" }),
		"Keywords":   "host=127.0.0.1 port=1 user=postgres password=" + pw + " dbname=x",
		"QueryPW":    with(func(u *url.URL) { u.User = url.User("postgres"); u.RawQuery = "password=" + pw + "&sslmode=bogus" }),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := postgres.Open(ctx, dsn)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), pw, "the password is never shown")
			assert.NotContains(t, fmt.Sprintf("%+v", err), pw)
			assert.Contains(t, err.Error(), "postgres: open")
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://kiln:pw@db.example.org:5432/kiln?sslmode=require": "postgres://kiln:xxxxx@db.example.org:5432/kiln?sslmode=require",
		"postgresql://kiln@db/kiln?password=pw":                       "postgresql://kiln@db/kiln?password=xxxxx",
		"postgres:///kiln?host=/run/postgresql":                       "postgres:///kiln?host=/run/postgresql",
		"host=db user=kiln password=pw dbname=kiln":                   "host=db user=kiln password=xxxxx dbname=kiln",
		"host=db password = 'p w' dbname=kiln":                        "host=db password = 'xxxxx' dbname=kiln",
		"postgres://kiln:pw@db:port/kiln":                             "postgres://kiln:xxxxx@db:port/kiln",
	} {
		assert.Equal(t, want, postgres.Redact(in), in)
	}
}

func TestStore_URL(t *testing.T) {
	s := MustOpen(t, migrated.NewDatabase(t))
	assert.True(t, strings.HasPrefix(s.URL(), "postgres://postgres:xxxxx@"), s.URL())
	assert.NotContains(t, s.URL(), pgtest.Password)
}

func TestOpen_Restart(t *testing.T) {
	ctx := t.Context()
	url := migrated.NewDatabase(t)
	s, err := postgres.Open(ctx, url)
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

	s = MustOpen(t, url)
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

// TestStore_SharedDatabase runs two stores on one database, as two
// masters would: each request is claimed once, build numbers follow each
// other, and changes are numbered in the order they become visible.
func TestStore_SharedDatabase(t *testing.T) {
	ctx := t.Context()
	url := migrated.NewDatabase(t)
	a, b := MustOpen(t, url), MustOpen(t, url)
	builder, err := a.EnsureBuilder(ctx, "b", "", nil)
	require.NoError(t, err)
	const n = 30
	var ids []int64
	for range n {
		_, reqs, err := addBuildset(ctx, a, builder.ID)
		require.NoError(t, err)
		ids = append(ids, reqs[0].ID)
	}
	var mu sync.Mutex
	claimed := map[int64]int{}
	numbers := map[int]bool{}
	var wg sync.WaitGroup
	for _, s := range []*postgres.Store{a, b, a, b} {
		wg.Go(func() {
			for _, id := range ids {
				build := &ci.Build{BuilderID: builder.ID}
				err := s.StartBuild(ctx, build, []int64{id})
				if err != nil {
					assert.ErrorIs(t, err, ci.ErrConflict)
					continue
				}
				mu.Lock()
				claimed[id]++
				numbers[build.Number] = true
				mu.Unlock()
			}
		})
	}
	// Changes added through both stores at once.
	for _, s := range []*postgres.Store{a, b} {
		wg.Go(func() {
			for i := range n {
				_, err := s.AddChange(ctx, &ci.Change{Revision: fmt.Sprint(i), DedupKey: fmt.Sprint("k", i%10)})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.Len(t, claimed, n)
	for id, k := range claimed {
		assert.Equal(t, 1, k, "request %d claimed once", id)
	}
	for i := 1; i <= n; i++ {
		assert.True(t, numbers[i], "build number %d given", i)
	}
	changes, total, err := b.ListChanges(ctx, ci.Query{})
	require.NoError(t, err)
	assert.Equal(t, 10, total, "a dedup key is stored once across masters")
	for i := 1; i < len(changes); i++ {
		assert.Greater(t, changes[i].ID, changes[i-1].ID)
	}
}
