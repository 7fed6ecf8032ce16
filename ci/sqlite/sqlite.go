package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnci/kiln/ci"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"
)

func init() {
	ci.RegisterStoreDriver("sqlite", func(ctx context.Context, dsn string) (ci.Store, error) {
		s, err := Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

//go:embed migrations/*.sql
var migrationFS embed.FS

var (
	_ ci.Store           = (*Store)(nil)
	_ ci.StepFinishStore = (*Store)(nil)
	_ ci.StepLogStore    = (*Store)(nil)
)

// BusyTimeout is how long a connection waits for a lock held by another
// process (another program opening the same file) before giving up.
const BusyTimeout = 10 * time.Second

// A Store keeps a master's records in one SQLite file. It is safe for
// concurrent use: writes go through a single connection, one transaction
// at a time (the writes that arrive together share one, see write), while
// reads use a pool of their own.
type Store struct {
	// Now returns the current time, used to date the records the store
	// creates by itself (the source stamp of a change). time.Now if nil.
	// Set it before the store is used.
	Now func() time.Time
	// Logger receives what the store reports outside of any call's
	// error: progress writes lost to a failed commit (see writeSoon).
	// slog.Default() if nil. Set it before the store is used.
	Logger *slog.Logger

	path  string
	dsn   string  // the file's name and pragmas, for extra connections
	db    *sql.DB // the write connection
	rdb   *sql.DB // the read pool
	wstmt stmtCache
	rstmt stmtCache

	// wconn is the write connection, taken from db by the writer
	// goroutine and used by it alone: its statements run in transactions
	// begun and ended by SQL (BEGIN IMMEDIATE, COMMIT), on statements
	// prepared on it, without the per-statement wrapping of a *sql.Tx.
	wconn *sql.Conn
	// wctl holds BEGIN IMMEDIATE, COMMIT and ROLLBACK prepared on wconn.
	wctl map[string]*sql.Stmt
	// logBytes is the size of the log chunks the writer's transaction
	// stored so far: the stored total (store_stats) grows by it once, as
	// the transaction commits, rather than at each append. The writer
	// alone uses it.
	logBytes int64

	writes  chan *writeOp // to the writer goroutine
	waiting atomic.Int64  // writes waiting for the writer to take them
	grouped atomic.Int64  // writes committed in a group of several
	// open counts the progress writes (writeSoon) returned but not
	// committed yet: the writer's transaction is open while it is not 0.
	// Set by the writer alone; read by reads, which commit them first.
	open atomic.Int64
	// soonWindow is how long the writer keeps progress writes uncommitted
	// at most; defaultSoonWindow unless a test sets it before the writes.
	soonWindow time.Duration
	// testHookAnswered, if set, runs in the writer once it has answered
	// the progress writes of a group, before it commits anything.
	testHookAnswered func()
	closing          chan struct{} // closed by Close
	writerEnd        chan struct{} // closed when the writer returns
	closeOnce        sync.Once
}

// Open opens the database file at path, creating it if needed, and applies
// the migrations it lacks. The context bounds the opening and migrating.
// A database file (or its -wal or -shm file) that this process may not
// read and write, or a folder it may not write, is an error that wraps
// fs.ErrPermission and names the file, its owner and its mode.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: no path given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := checkAccess(abs); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// A file: URI, so that any character may appear in the path; the
	// pragmas are in the DSN so that every connection of a pool gets them.
	name := "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath()
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(ON)&_pragma=synchronous(NORMAL)", BusyTimeout.Milliseconds())

	s := &Store{path: path, dsn: name + "?" + pragmas, soonWindow: defaultSoonWindow}
	s.wstmt.stmts = map[string]*sql.Stmt{}
	s.rstmt.stmts = map[string]*sql.Stmt{}
	s.db, err = sql.Open("sqlite", name+"?"+pragmas+"&_pragma=journal_mode(WAL)&_pragma=temp_store(MEMORY)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.wstmt.prep = func(ctx context.Context, q string) (*sql.Stmt, error) { return s.wconn.PrepareContext(ctx, q) }
	// One writer: transactions queue in the pool instead of failing with
	// SQLITE_BUSY. The connection is kept open for the store's life.
	s.db.SetMaxOpenConns(1)
	s.db.SetMaxIdleConns(1)
	s.db.SetConnMaxLifetime(0)
	s.db.SetConnMaxIdleTime(0)
	s.writes = make(chan *writeOp)
	s.closing = make(chan struct{})
	s.writerEnd = make(chan struct{})
	go s.writer()
	if err := s.incrementalVacuum(ctx); err != nil {
		s.stopWriter()
		s.db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.stopWriter()
		s.db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	// The readers are opened once the file is in WAL mode, which is
	// persistent, so that they never take the write lock.
	s.rdb, err = sql.Open("sqlite", name+"?"+pragmas+"&_pragma=query_only(ON)")
	if err != nil {
		s.db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.rstmt.prep = s.rdb.PrepareContext
	n := max(4, runtime.GOMAXPROCS(0))
	s.rdb.SetMaxOpenConns(n)
	s.rdb.SetMaxIdleConns(n)
	if err := s.rdb.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database. The last connection to close checkpoints
// the write-ahead log into the database file.
func (s *Store) Close() error {
	s.stopWriter()
	var errs []error
	s.wstmt.close()
	s.rstmt.close()
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	errs = append(errs, s.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Path returns the path the store was opened with.
func (s *Store) Path() string { return s.path }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// incrementalVacuum makes the file give space back a little at a time
// (Compact): auto_vacuum INCREMENTAL, which an existing file only takes
// with a VACUUM, done once.
func (s *Store) incrementalVacuum(ctx context.Context) error {
	return s.rawWrite(ctx, func(conn *sql.Conn) error {
		var mode int
		if err := conn.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&mode); err != nil {
			return fmt.Errorf("read auto_vacuum: %w", err)
		}
		if mode == 2 {
			return nil
		}
		if _, err := conn.ExecContext(ctx, `PRAGMA auto_vacuum = INCREMENTAL`); err != nil {
			return fmt.Errorf("set auto_vacuum: %w", err)
		}
		if _, err := conn.ExecContext(ctx, `VACUUM`); err != nil {
			return fmt.Errorf("vacuum: %w", err)
		}
		return nil
	})
}

// migrate applies, in name order, the embedded migrations not yet recorded
// in the migrations table, each in its own transaction with its record.
func (s *Store) migrate(ctx context.Context) error {
	err := s.rawWrite(ctx, func(conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (
			name       TEXT PRIMARY KEY,
			applied_at INTEGER NOT NULL
		)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.migrateFile(ctx, name); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	return nil
}

func (s *Store) migrateFile(ctx context.Context, name string) error {
	return s.write(ctx, func(tx *txn) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM migrations WHERE name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		text, err := fs.ReadFile(migrationFS, name)
		if err != nil {
			return err
		}
		// A script of several statements: run as it is, not prepared.
		if _, err := tx.q.ExecContext(tx.ctx, string(text)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO migrations (name, applied_at) VALUES (?, ?)`, name, s.now().UnixMicro())
		return err
	})
}

// maxGroup is the most writes committed together.
const maxGroup = 64

// defaultSoonWindow is the longest a progress write (writeSoon) stays
// returned but uncommitted, waiting for another write to share its
// commit: a build's start, its steps and their logs are then committed
// with its end or with another build's write, in one commit instead of
// several.
const defaultSoonWindow = 10 * time.Millisecond

// errClosed is the error of a write after Close.
var errClosed = errors.New("the store is closed")

// A writeOp is a write waiting for the writer: f, run in a transaction,
// and where its outcome goes.
type writeOp struct {
	ctx  context.Context
	f    func(tx *txn) error
	raw  func(conn *sql.Conn) error // instead of f: run outside a transaction
	soon bool                       // a progress write: answered once run (writeSoon)
	sync bool                       // no f: commit the progress writes run (a read's)
	done chan error
}

// write runs f in a write transaction (BEGIN IMMEDIATE on the single write
// connection) and returns once its changes are committed, or nothing of
// them is stored: f's error, or the transaction's.
//
// The writes are made by one goroutine, the writer (group commit). Writes
// that arrive while it commits others wait and are then run together in
// one transaction, each in a savepoint of its own: a write whose f fails
// is rolled back to its savepoint, alone, and the others are committed. A
// write returns nil only once the transaction holding it is committed,
// so that what the Store doc promises of a method that returns nil holds.
// A commit of several writes costs little more than one of a single write
// (the transaction's begin and commit, the pages written to the log, are
// the same), so concurrent builds share the cost of their commits.
//
// A write whose ctx ends while it waits is not run. Once run, a write of a
// group is not interrupted by its ctx (interrupting a statement would roll
// back the whole transaction, and the others' writes with it); a write run
// alone is, as f's statements use ctx.
func (s *Store) write(ctx context.Context, f func(tx *txn) error) error {
	return s.send(&writeOp{ctx: ctx, f: f, done: make(chan error, 1)})
}

// writeSoon runs f as write does, but returns once f has run, before its
// transaction is committed: a progress write, the record of a running
// build's progress (its start, its steps, their logs). The writer keeps
// the transaction open for at most soonWindow, so that the next writes
// share its commit: the next write that returns only once committed (a
// build's end, a new buildset), or a read, which commits the progress
// writes before it reads, so that every read sees every write that
// returned. A crash can lose the progress writes of the last soonWindow,
// as if they had not been made: a build whose start is lost is built
// again, as its request is still unclaimed.
//
// Progress writes are run without their ctx, in a savepoint when they
// join other writes; f's error is returned as write returns it.
func (s *Store) writeSoon(ctx context.Context, f func(tx *txn) error) error {
	return s.send(&writeOp{ctx: ctx, f: f, soon: true, done: make(chan error, 1)})
}

// Sync commits the progress writes that returned and are not committed
// yet, if any (see the package doc, Durability), and returns once they
// are. Reads through the Store need not call it: they see every write
// that returned. Another connection to the file, or another process,
// sees progress writes once they are committed: after Sync, or within
// the window the package doc gives.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.sync(ctx); err != nil {
		return fmt.Errorf("sqlite: sync: %w", err)
	}
	return nil
}

// sync commits the progress writes that returned and are not committed
// yet, if any, so that a read sees them.
func (s *Store) sync(ctx context.Context) error {
	if s.open.Load() == 0 {
		return nil
	}
	return s.send(&writeOp{ctx: ctx, sync: true, done: make(chan error, 1)})
}

// rawWrite runs f on the write connection, outside a transaction (a
// VACUUM, a pragma), when the writer is free, and returns its error.
func (s *Store) rawWrite(ctx context.Context, f func(conn *sql.Conn) error) error {
	return s.send(&writeOp{ctx: ctx, raw: f, done: make(chan error, 1)})
}

// send hands op to the writer and waits for its outcome.
func (s *Store) send(op *writeOp) error {
	ctx := op.ctx
	s.waiting.Add(1)
	select {
	case s.writes <- op:
	case <-s.closing:
		s.waiting.Add(-1)
		return errClosed
	case <-ctx.Done():
		s.waiting.Add(-1)
		return ctx.Err()
	}
	s.waiting.Add(-1)
	return <-op.done
}

// writer runs the writes, a group at a time, until Close.
func (s *Store) writer() {
	defer close(s.writerEnd)
	defer func() {
		if s.wconn != nil {
			s.wstmt.close()
			for _, st := range s.wctl {
				st.Close()
			}
			s.wconn.Close()
		}
	}()
	// window ends the wait of the progress writes run and not committed.
	window := time.NewTimer(time.Hour)
	window.Stop()
	defer window.Stop()
	group := make([]*writeOp, 0, maxGroup)
	for {
		var op *writeOp
		if s.open.Load() > 0 {
			select {
			case op = <-s.writes:
			case <-window.C:
				s.commitOpen()
				continue
			case <-s.closing:
				s.commitOpen()
				return
			}
		} else {
			select {
			case op = <-s.writes:
			case <-s.closing:
				return
			}
		}
		group = append(group[:0], op)
		if s.wconn == nil {
			// Taken at the first write, so that opening the file fails
			// that write rather than the writer.
			conn, err := s.db.Conn(context.Background())
			if err != nil {
				group[0].done <- fmt.Errorf("open the write connection: %w", err)
				continue
			}
			s.wconn = conn
			s.wctl = map[string]*sql.Stmt{}
			for _, q := range []string{`BEGIN IMMEDIATE`, `COMMIT`, `ROLLBACK`} {
				if st, err := conn.PrepareContext(context.Background(), q); err == nil {
					s.wctl[q] = st
				}
			}
		}
		if op := group[0]; op.raw != nil {
			s.commitOpen()
			op.done <- op.raw(s.wconn)
			continue
		}
		// The writes already waiting join this one.
	more:
		for len(group) < maxGroup {
			select {
			case op := <-s.writes:
				if op.raw != nil {
					// Not in a transaction: after this group.
					s.commitGroup(group)
					s.commitOpen()
					clear(group)
					group = group[:0]
					op.done <- op.raw(s.wconn)
					break more
				}
				group = append(group, op)
			default:
				break more
			}
		}
		wasOpen := s.open.Load() > 0
		s.commitGroup(group)
		clear(group)
		if !wasOpen && s.open.Load() > 0 {
			window.Reset(s.soonWindow)
		}
	}
}

// stopWriter ends the writer goroutine, which first commits the progress
// writes it holds; writes after it fail.
func (s *Store) stopWriter() {
	s.closeOnce.Do(func() { close(s.closing) })
	<-s.writerEnd
}

// commitOpen commits the open transaction of progress writes, if any.
func (s *Store) commitOpen() {
	if s.open.Load() == 0 {
		return
	}
	if err := s.commit(context.Background()); err != nil {
		s.lost(err)
	}
	s.open.Store(0)
}

// lost reports that the progress writes of the open transaction, which
// returned nil, were not committed: err, a failure of the disk.
func (s *Store) lost(err error) {
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	l.Error("sqlite: progress writes lost: their commit failed",
		"file", s.path, "writes", s.open.Load(), "err", err)
}

// commitGroup runs a group of writes in one transaction, with the
// progress writes already run if the transaction is open, and tells each
// its outcome. A group of progress writes alone leaves the transaction
// open.
func (s *Store) commitGroup(group []*writeOp) {
	open := s.open.Load()
	// Writes whose callers gave up are not run; a sync with nothing to
	// commit is done.
	live := group[:0]
	for _, op := range group {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		if op.sync && open == 0 {
			op.done <- nil
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return
	}
	if open == 0 && len(live) == 1 && !live[0].soon {
		op := live[0]
		op.done <- s.writeAlone(op.ctx, op.f)
		return
	}
	ctx := context.Background()
	errs := make([]error, len(live))
	durable := false
	err := func() error {
		if open == 0 {
			if _, err := s.begin(ctx); err != nil {
				return err
			}
		}
		// empty: the transaction holds no write yet. Its first write needs
		// no savepoint: if it fails, the transaction is rolled back whole
		// and begun again. (A savepoint copies each page its write changes
		// to a journal, in memory, at some cost.)
		empty := open == 0
		t := &txn{ctx: ctx, q: s.wconn, stmts: &s.wstmt, logBytes: &s.logBytes}
		defer func() { s.wstmt.prepare(t.missed) }()
		for i, op := range live {
			if !op.soon {
				durable = true
			}
			if op.sync {
				continue
			}
			logBytes := s.logBytes
			if empty {
				if errs[i] = op.f(t); errs[i] == nil {
					empty = false
					continue
				}
				s.rollback()
				if _, err := s.begin(ctx); err != nil {
					return err
				}
				continue
			}
			if _, err := t.ExecContext(ctx, `SAVEPOINT write`); err != nil {
				return err
			}
			if errs[i] = op.f(t); errs[i] != nil {
				if _, err := t.ExecContext(ctx, `ROLLBACK TO write`); err != nil {
					return fmt.Errorf("%w (and rolling back: %v)", errs[i], err)
				}
				s.logBytes = logBytes
			}
			if _, err := t.ExecContext(ctx, `RELEASE write`); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		// Nothing of the transaction is stored.
		if open > 0 {
			s.lost(err)
		}
		s.rollback()
		s.open.Store(0)
		for _, op := range live {
			op.done <- fmt.Errorf("commit: %w", err)
		}
		return
	}
	// The progress writes are answered now, and wait for a commit. They
	// are counted open before their callers hear of them: a read that
	// follows one (after an event the caller published) must find them
	// open, to commit them first.
	for i, op := range live {
		if op.soon && errs[i] == nil {
			open++
		}
	}
	s.open.Store(open)
	for i, op := range live {
		if op.soon {
			op.done <- errs[i]
		}
	}
	if s.testHookAnswered != nil {
		s.testHookAnswered()
	}
	if !durable {
		if open == 0 {
			// All failed: nothing to keep.
			s.rollback()
		}
		return
	}
	if err = s.commit(ctx); err != nil && open > 0 {
		s.lost(err)
	}
	s.open.Store(0)
	if err == nil && len(live) > 1 {
		s.grouped.Add(int64(len(live)))
	}
	for i, op := range live {
		if op.soon {
			continue
		}
		if err != nil {
			// Nothing of the group is stored.
			op.done <- fmt.Errorf("commit: %w", err)
			continue
		}
		op.done <- errs[i]
	}
}

// writeAlone runs f in a transaction of its own and commits it if f
// returns nil. A write interrupted by the end of ctx (the transaction is
// rolled back) returns an error wrapping ctx's.
func (s *Store) writeAlone(ctx context.Context, f func(tx *txn) error) error {
	err := func() error {
		t, err := s.begin(ctx)
		if err != nil {
			return err
		}
		defer func() { s.wstmt.prepare(t.missed) }()
		if err := f(t); err != nil {
			s.rollback()
			return err
		}
		return s.commit(ctx)
	}()
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// begin begins a write transaction on the write connection, taking the
// write lock at once (BEGIN IMMEDIATE), and returns it. The writer
// goroutine alone calls it.
func (s *Store) begin(ctx context.Context) (*txn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Not run with ctx: a BEGIN that ctx interrupts may have begun the
	// transaction all the same, and the next write's BEGIN would fail.
	// It waits at most BusyTimeout for another process's write lock.
	if _, err := s.control(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		s.rollback()
		return nil, err
	}
	return &txn{ctx: ctx, q: s.wconn, stmts: &s.wstmt, logBytes: &s.logBytes}, nil
}

// commit commits the write transaction, unless ctx ended meanwhile: then
// it is rolled back and ctx's error returned.
func (s *Store) commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		s.rollback()
		return err
	}
	if s.logBytes != 0 {
		t := &txn{ctx: context.Background(), q: s.wconn, stmts: &s.wstmt}
		if _, err := t.ExecContext(t.ctx, `UPDATE store_stats SET value = value + ? WHERE key = 'log_bytes'`, s.logBytes); err != nil {
			s.rollback()
			return err
		}
		s.wstmt.prepare(t.missed)
	}
	if _, err := s.control(context.Background(), `COMMIT`); err != nil {
		s.rollback()
		return err
	}
	s.logBytes = 0
	return nil
}

// rollback ends the write transaction, storing nothing of it. SQLite may
// have rolled it back already (an interrupted statement does): the error
// of a ROLLBACK with no transaction is of no interest.
func (s *Store) rollback() {
	s.control(context.Background(), `ROLLBACK`)
	s.logBytes = 0
}

// control runs one of the statements that begin and end the writer's
// transactions, prepared if it could be.
func (s *Store) control(ctx context.Context, q string) (sql.Result, error) {
	if st := s.wctl[q]; st != nil {
		return st.ExecContext(ctx)
	}
	return s.wconn.ExecContext(ctx, q)
}

// read runs f in a read transaction, which sees one snapshot of the
// database, so that a page and its total count agree. Progress writes
// that returned are committed first (sync), so that f sees them.
func (s *Store) read(ctx context.Context, f func(tx *txn) error) error {
	if err := s.sync(ctx); err != nil {
		return err
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	t := &txn{ctx: ctx, q: tx, tx: tx, stmts: &s.rstmt}
	err = f(t)
	tx.Rollback()
	s.rstmt.prepare(t.missed)
	return err
}

// A txn is a transaction whose queries use statements prepared once per
// connection, so that SQLite parses each query text once rather than at
// every call. A query not prepared yet runs unprepared and is prepared
// after the transaction, when a connection is free: preparing needs one,
// and the write pool has a single connection, held by the transaction.
//
// Its statements run with its own context, not the one each call is given:
// the context of the write, or none in a group of writes (see write).
type txn struct {
	ctx    context.Context
	q      querier // the write connection, or the read transaction
	tx     *sql.Tx // the read transaction, nil for a write
	stmts  *stmtCache
	missed []string
	// logBytes, in a write transaction, counts the bytes of log chunks it
	// stored (see Store.logBytes).
	logBytes *int64
}

// insert runs an INSERT of one row and returns the row's ID (its rowid):
// cheaper than RETURNING id, whose rows SQLite gathers in a temporary
// table (3 µs a statement against 1 µs for the insert itself).
func (t *txn) insert(query string, args ...any) (int64, error) {
	res, err := t.ExecContext(t.ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// A querier runs queries: a *sql.Conn or a *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// stmt returns the transaction's form of the prepared statement for
// query, or nil if it is not prepared yet.
func (t *txn) stmt(query string) *sql.Stmt {
	if st := t.stmts.get(query); st != nil {
		if t.tx == nil {
			// Prepared on the write connection itself.
			return st
		}
		return t.tx.StmtContext(t.ctx, st)
	}
	t.missed = append(t.missed, query)
	return nil
}

func (t *txn) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(query); st != nil {
		return st.ExecContext(t.ctx, args...)
	}
	return t.q.ExecContext(t.ctx, query, args...)
}

func (t *txn) QueryContext(_ context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(query); st != nil {
		return st.QueryContext(t.ctx, args...)
	}
	return t.q.QueryContext(t.ctx, query, args...)
}

func (t *txn) QueryRowContext(_ context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(query); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.q.QueryRowContext(t.ctx, query, args...)
}

// stmtCache holds the statements prepared on a database, by query text.
// Queries are texts of this package (with a bounded number of variants),
// so the cache stays small.
type stmtCache struct {
	prep   func(ctx context.Context, query string) (*sql.Stmt, error)
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	closed bool
}

func (c *stmtCache) get(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stmts[query]
}

// prepare prepares the queries not cached yet. Failures are ignored: the
// queries then keep running unprepared.
func (c *stmtCache) prepare(queries []string) {
	for _, q := range queries {
		if c.get(q) != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), BusyTimeout)
		st, err := c.prep(ctx, q)
		cancel()
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, dup := c.stmts[q]; dup || c.closed {
			st.Close()
		} else {
			c.stmts[q] = st
		}
		c.mu.Unlock()
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
}

// notFound is the error for a missing record.
func notFound(what string, id int64) error {
	return fmt.Errorf("%s %d: %w", what, id, ci.ErrNotFound)
}

// isConstraint reports whether err is a violation of the constraint code
// says (SQLITE_CONSTRAINT_FOREIGNKEY, say).
func isConstraint(err error, code int) bool {
	var e *sqlite3.Error
	return errors.As(err, &e) && e.Code() == code
}

const (
	errForeignKey = sqlite3lib.SQLITE_CONSTRAINT_FOREIGNKEY
	errUnique     = sqlite3lib.SQLITE_CONSTRAINT_UNIQUE
)

// refErr turns a foreign key violation (a record naming another that does
// not exist) into an error wrapping ci.ErrNotFound.
func refErr(err error) error {
	if isConstraint(err, errForeignKey) {
		return fmt.Errorf("%w: a referenced record does not exist (%v)", ci.ErrNotFound, err)
	}
	return err
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// Column codecs.

// timeArg returns t as integer microseconds since the epoch, or nil (NULL)
// for the zero time.
func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// timeCol scans a column written by timeArg: NULL is the zero time, others
// come back in UTC.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(x).UTC()
	default:
		return fmt.Errorf("time column holds %T", v)
	}
	return nil
}

// idArg returns id, or nil (NULL) for 0, for optional references.
func idArg(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// nullInt scans an integer column where NULL means 0.
type nullInt[T ~int | ~int64] struct{ p *T }

func (c nullInt[T]) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.p = 0
	case int64:
		*c.p = T(x)
	default:
		return fmt.Errorf("integer column holds %T", v)
	}
	return nil
}

// jsonArg encodes v for a JSON column.
func jsonArg(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// jsonCol scans a JSON column into v.
type jsonCol struct{ v any }

func (c jsonCol) Scan(v any) error {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		return fmt.Errorf("JSON column holds %T", v)
	}
	return json.Unmarshal(b, c.v)
}

// page returns the ORDER BY, LIMIT and OFFSET clauses of q, ordering by
// col.
func page(q ci.Query, col string) (string, []any) {
	dir := "ASC"
	if q.Desc {
		dir = "DESC"
	}
	limit := int64(-1)
	if q.Limit > 0 {
		limit = int64(q.Limit)
	}
	return fmt.Sprintf(" ORDER BY %s %s LIMIT ? OFFSET ?", col, dir), []any{limit, max(q.Offset, 0)}
}

// count sets total to the result of query, a COUNT, or to -1 when q asks
// for no total.
// idsCond is the condition that a record's ID is in a list given as one
// argument, a JSON array (idsArg): one statement text, prepared once,
// whatever the number of IDs.
const idsCond = "id IN (SELECT value FROM json_each(?))"

// idsArg is the argument of idsCond.
func idsArg(ids []int64) string {
	b := make([]byte, 0, 1+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

func count(ctx context.Context, tx *txn, q ci.Query, query string, total *int, args ...any) error {
	if q.NoTotal {
		*total = -1
		return nil
	}
	return tx.QueryRowContext(ctx, query, args...).Scan(total)
}

// flagCond is the condition that a flag column is set (or not), written
// with a literal so that SQLite can use the partial indexes defined on it
// ("WHERE complete = 0"), which it cannot prove match a bound parameter.
func flagCond(col string, set bool) string {
	if set {
		return col + " = 1"
	}
	return col + " = 0"
}

// where joins conditions into a WHERE clause ("" when there are none).
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}
