package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kilnci/kiln/ci"
)

func init() {
	open := func(ctx context.Context, dsn string) (ci.Store, error) {
		s, err := Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	ci.RegisterStoreDriver("postgres", open)
}

//go:embed migrations/*.sql
var migrationFS embed.FS

var (
	_ ci.Store           = (*Store)(nil)
	_ ci.StepFinishStore = (*Store)(nil)
	_ ci.StepLogStore    = (*Store)(nil)
)

// Advisory locks the store takes, in the two-key form
// pg_advisory_xact_lock(class, key). The classes spell "KILN" and "KILB"
// so that they do not meet an application's own locks.
const (
	lockClass         = 0x4b494c4e
	lockMigrate       = 1          // applying migrations
	lockChanges       = 2          // numbering changes: IDs in commit order
	lockClassExternal = 0x4b494c42 // key: hashtext(external ID) of a buildset
)

// logBytesShards is how many rows the running total of log space is kept
// in (see migrations/0001_init.sql).
const logBytesShards = 16

// A Store keeps a master's records in a PostgreSQL database. It is safe
// for concurrent use: each method runs in one transaction on a pool of
// connections.
type Store struct {
	// Now returns the current time, used to date the records the store
	// creates by itself (the source stamp of a change). time.Now if nil.
	// Set it before the store is used.
	Now func() time.Time
	// Logger receives what the store has to say outside a method's
	// error: the connection receiving other masters' events lost and
	// made again (see RelayEvents). slog.Default() if nil. Set it before
	// the store is used.
	Logger *slog.Logger

	pool *pgxpool.Pool
	url  string // redacted
	dsn  string // as given, to take its password out of errors

	listenerMu sync.Mutex
	listener   *pgx.Conn // RelayEvents' connection, while it has one
}

// Open connects to the database at url (postgres://user:password@host/db
// or postgresql://..., with any of libpq's parameters) and applies the
// migrations it lacks. The context bounds the connecting and migrating.
// Errors never show the URL's password.
func Open(ctx context.Context, url string) (*Store, error) {
	s, err := open(ctx, url)
	if err != nil {
		return nil, redact(fmt.Errorf("postgres: open %s: %w", Redact(url), err), url)
	}
	return s, nil
}

func open(ctx context.Context, dsn string) (*Store, error) {
	if dsn == "" {
		return nil, errors.New("no URL given")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, url: Redact(dsn), dsn: dsn}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the connections to the database.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// URL returns the URL the store was opened with, without its password.
func (s *Store) URL() string { return s.url }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Redact returns a database URL with its password replaced by "xxxxx",
// for messages and logs. A string that is not a URL (a "key=value"
// connection string) comes back with its password= value hidden.
func Redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	for _, pw := range passwords(dsn) {
		dsn = strings.ReplaceAll(dsn, pw, "xxxxx")
	}
	return dsn
}

// passwords returns the passwords a connection string holds, as written
// and decoded, found without parsing it as a whole, so that a string
// that does not parse is hidden too.
func passwords(dsn string) []string {
	var pws []string
	add := func(pw string) {
		if pw == "" {
			return
		}
		pws = append(pws, pw)
		if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
			pws = append(pws, dec)
		}
		if dec, err := url.QueryUnescape(pw); err == nil && dec != pw {
			pws = append(pws, dec)
		}
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		// user:password@ before the host.
		auth := rest
		if i := strings.IndexAny(auth, "/?#"); i >= 0 {
			auth = auth[:i]
		}
		if i := strings.LastIndex(auth, "@"); i >= 0 {
			if _, pw, ok := strings.Cut(auth[:i], ":"); ok {
				add(pw)
			}
		}
		// ?password=... among the parameters.
		if _, query, ok := strings.Cut(rest, "?"); ok {
			for _, kv := range strings.Split(query, "&") {
				if k, v, ok := strings.Cut(kv, "="); ok && k == "password" {
					add(v)
				}
			}
		}
		return pws
	}
	// password=... among keywords; a quoted value may hold spaces.
	for rest := dsn; ; {
		i := strings.Index(rest, "password")
		if i < 0 {
			break
		}
		rest = strings.TrimLeft(rest[i+len("password"):], " \t")
		if !strings.HasPrefix(rest, "=") {
			continue
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		var pw string
		if strings.HasPrefix(rest, "'") {
			end := strings.Index(rest[1:], "'")
			if end < 0 {
				end = len(rest) - 1
			}
			pw = rest[1 : 1+end]
		} else {
			pw, _, _ = strings.Cut(rest, " ")
		}
		add(pw)
	}
	return pws
}

// A redactedError is an error whose message had a password taken out. It
// unwraps to the original error, for errors.Is and errors.As, whose
// message may still hold the password: only its Error is for showing.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with the passwords of dsn taken out of its message:
// the driver's errors may quote the connection string.
func redact(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, pw := range passwords(dsn) {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return &redactedError{msg: msg, err: err}
}

// migrate applies, in name order, the embedded migrations not yet
// recorded in the migrations table, each in its own transaction with its
// record. An advisory lock makes masters opening the database at once
// apply each migration once.
func (s *Store) migrate(ctx context.Context) error {
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
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, lockMigrate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS migrations (
			name       text PRIMARY KEY,
			applied_at timestamptz NOT NULL
		)`); err != nil {
			return fmt.Errorf("create migrations table: %w", err)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM migrations WHERE name = $1`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		text, err := fs.ReadFile(migrationFS, name)
		if err != nil {
			return err
		}
		// A script of several statements: sent as it is (Exec without
		// arguments uses the simple protocol).
		if _, err := tx.Exec(ctx, string(text)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO migrations (name, applied_at) VALUES ($1, $2)`, name, s.now())
		return err
	})
}

// write runs f in a read-committed transaction and commits it if f
// returns nil. Methods that read before they write lock the rows they
// read (SELECT ... FOR UPDATE), as the comments there say.
func (s *Store) write(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}

// read runs f in a read-only repeatable-read transaction, which sees one
// snapshot of the database, so that a page and its total count agree.
func (s *Store) read(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	err = f(tx)
	tx.Rollback(context.WithoutCancel(ctx))
	return err
}

// notFound is the error for a missing record.
func notFound(what string, id int64) error {
	return fmt.Errorf("%s %d: %w", what, id, ci.ErrNotFound)
}

// PostgreSQL's error codes the store tells apart.
const (
	codeForeignKey = "23503"
)

func isCode(err error, code string) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == code
}

// refErr turns a foreign key violation (a record naming another that does
// not exist) into an error wrapping ci.ErrNotFound.
func refErr(err error) error {
	if isCode(err, codeForeignKey) {
		return fmt.Errorf("%w: a referenced record does not exist (%v)", ci.ErrNotFound, err)
	}
	return err
}

// Column codecs.

// timeArg returns t, or nil (NULL) for the zero time.
func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// timeCol scans a timestamptz column: NULL is the zero time, others come
// back in UTC.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case time.Time:
		*c.t = x.UTC()
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
	case int32:
		*c.p = T(x)
	default:
		return fmt.Errorf("integer column holds %T", v)
	}
	return nil
}

// jsonArg encodes v for a jsonb column.
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

// args collects the arguments of a query built piece by piece; add
// returns the placeholder of the argument it adds ($1, $2...).
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// page returns the ORDER BY, LIMIT and OFFSET clauses of q, ordering by
// col, adding their arguments to a.
func page(q ci.Query, col string, a *args) string {
	dir := "ASC"
	if q.Desc {
		dir = "DESC"
	}
	clause := fmt.Sprintf(" ORDER BY %s %s", col, dir)
	if q.Limit > 0 {
		clause += " LIMIT " + a.add(int64(q.Limit))
	}
	return clause + " OFFSET " + a.add(int64(max(q.Offset, 0)))
}

// count sets total to the result of query, a count, or to -1 when q asks
// for no total.
func count(ctx context.Context, tx pgx.Tx, q ci.Query, query string, total *int, args ...any) error {
	if q.NoTotal {
		*total = -1
		return nil
	}
	return tx.QueryRow(ctx, query, args...).Scan(total)
}

// flagCond is the condition that a boolean column is set (or not), in the
// form of the partial indexes' predicates.
func flagCond(col string, set bool) string {
	if set {
		return col
	}
	return "NOT " + col
}

// where joins conditions into a WHERE clause ("" when there are none).
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// scanner is a pgx.Row or pgx.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanAll scans every row with scan and closes rows.
func scanAll[T any](rows pgx.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var list []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	return list, rows.Err()
}

// mustAffect returns a not-found error if tag says no row changed.
func mustAffect(tag pgconn.CommandTag, what string, id int64) error {
	if tag.RowsAffected() == 0 {
		return notFound(what, id)
	}
	return nil
}

// noRows reports whether err says a query returned no row.
func noRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// DatabaseSize returns the space the database takes on the server
// (pg_database_size), for the master's metrics.
func (s *Store) DatabaseSize(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: database size: %w", err)
	}
	return n, nil
}
