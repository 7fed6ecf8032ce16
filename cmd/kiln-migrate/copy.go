package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci/postgres"
	"github.com/kilnci/kiln/ci/sqlite"
)

// A table is copied as it is, column by column: ci/postgres's schema has
// ci/sqlite's tables and columns, with PostgreSQL's types.
type table struct {
	name string
	// later are columns referring to a table copied after this one:
	// copied as NULL, then set once that table is there.
	later []string
	// id is true for a table whose identity column "id" needs its
	// sequence moved past the copied IDs.
	id bool
	// only are PostgreSQL's own columns, which SQLite lacks: left to
	// their default.
	only []string
}

// tables are copied in this order, so that references are to rows
// already copied (but for the later columns).
var tables = []table{
	{name: "builders", id: true},
	{name: "workers", id: true},
	{name: "sourcestamps", id: true},
	{name: "changes", id: true},
	{name: "change_files"},
	{name: "sourcestamp_changes"},
	{name: "buildsets", id: true, later: []string{"parent_build_id"}},
	{name: "buildset_sourcestamps"},
	{name: "buildrequests", id: true, later: []string{"build_id"}},
	// The master running a build, among several on one database: NULL,
	// a build of the single master the SQLite file served.
	{name: "builds", id: true, only: []string{"master_id"}},
	{name: "steps", id: true},
	{name: "logs", id: true},
	{name: "logchunks", id: true},
	{name: "test_result_sets", id: true},
	{name: "test_results", id: true},
	{name: "object_state"},
}

// Copy copies the records of the SQLite database at src into the empty
// PostgreSQL database at dst, in one transaction, and returns how many
// rows each table got. Errors never show dst's password.
func Copy(ctx context.Context, src, dst string) (map[string]int64, error) {
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	// Bring the file's schema up to date, as the master would.
	ss, err := sqlite.Open(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if err := ss.Close(); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	// Make the target's schema.
	ps, err := postgres.Open(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	ps.Close()

	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, err
	}
	sdb, err := sql.Open("sqlite", "file:"+(&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath()+"?_pragma=query_only(ON)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer sdb.Close()
	// One read transaction: one snapshot of the file.
	stx, err := sdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer stx.Rollback()

	conn, err := pgx.Connect(ctx, dst)
	if err != nil {
		return nil, hide(fmt.Errorf("target: %w", err), dst)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	counts, err := copyAll(ctx, stx, conn)
	if err != nil {
		return nil, hide(err, dst)
	}
	return counts, nil
}

// hide takes the password of the URL dst out of err's message: the
// driver's messages may quote the URL. (postgres.Open's errors are
// already without it.)
func hide(err error, dst string) error {
	msg := err.Error()
	if u, perr := url.Parse(dst); perr == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

func copyAll(ctx context.Context, stx *sql.Tx, conn *pgx.Conn) (map[string]int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Nothing may be written into the tables while they are copied.
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.name
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(names, ", ")+` IN EXCLUSIVE MODE`); err != nil {
		return nil, err
	}
	for _, t := range tables {
		var n int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+t.name).Scan(&n); err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, fmt.Errorf("the target database is not empty: %s has %d rows", t.name, n)
		}
	}
	counts := map[string]int64{}
	for _, t := range tables {
		n, err := copyTable(ctx, stx, tx, t)
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", t.name, err)
		}
		counts[t.name] = n
	}
	// The columns copied as NULL, now that builds are there.
	for _, t := range tables {
		for _, col := range t.later {
			if err := copyLater(ctx, stx, tx, t.name, col); err != nil {
				return nil, fmt.Errorf("copy %s.%s: %w", t.name, col, err)
			}
		}
	}
	// New records get IDs after the copied ones.
	for _, t := range tables {
		if !t.id {
			continue
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%[1]s', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM %[1]s`, t.name))
		if err != nil {
			return nil, fmt.Errorf("sequence of %s: %w", t.name, err)
		}
	}
	// The running total of log space, from the chunks copied.
	_, err = tx.Exec(ctx, `UPDATE log_bytes SET value = COALESCE((SELECT SUM(octet_length(content))
		FROM logchunks WHERE log_id % 16 = shard), 0)`)
	if err != nil {
		return nil, fmt.Errorf("log bytes: %w", err)
	}
	// Count again on both sides.
	for _, t := range tables {
		var src, dst int64
		if err := stx.QueryRowContext(ctx, `SELECT count(*) FROM `+t.name).Scan(&src); err != nil {
			return nil, err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+t.name).Scan(&dst); err != nil {
			return nil, err
		}
		if src != dst || dst != counts[t.name] {
			return nil, fmt.Errorf("%s: %d rows in SQLite, %d in PostgreSQL: nothing copied", t.name, src, dst)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return counts, nil
}

// column is a column of the target, with its PostgreSQL type.
type column struct{ name, typ string }

func columns(ctx context.Context, tx pgx.Tx, name string) ([]column, error) {
	rows, err := tx.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (c column, err error) {
		return c, row.Scan(&c.name, &c.typ)
	})
}

// copyTable copies a table's rows with COPY, converting each value from
// SQLite's storage to the column's type.
func copyTable(ctx context.Context, stx *sql.Tx, tx pgx.Tx, t table) (int64, error) {
	cols, err := columns(ctx, tx, t.name)
	if err != nil {
		return 0, err
	}
	cols = slices.DeleteFunc(cols, func(c column) bool { return slices.Contains(t.only, c.name) })
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	rows, err := stx.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+t.name)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	out := make([]any, len(cols))
	n, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, names, pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, c := range cols {
			if isLater(t, c.name) {
				out[i] = nil
				continue
			}
			v, err := convert(vals[i], c.typ)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", c.name, err)
			}
			out[i] = v
		}
		return out, nil
	}))
	return n, err
}

func isLater(t table, col string) bool {
	for _, c := range t.later {
		if c == col {
			return true
		}
	}
	return false
}

// copyLater sets a column copied as NULL, for the rows where it is not.
func copyLater(ctx context.Context, stx *sql.Tx, tx pgx.Tx, name, col string) error {
	rows, err := stx.QueryContext(ctx, `SELECT id, `+col+` FROM `+name+` WHERE `+col+` IS NOT NULL`)
	if err != nil {
		return err
	}
	var ids, vals []int64
	for rows.Next() {
		var id, v int64
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return err
		}
		ids, vals = append(ids, id), append(vals, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	tag, err := tx.Exec(ctx, `UPDATE `+name+` AS t SET `+col+` = v.val
		FROM unnest($1::bigint[], $2::bigint[]) AS v(id, val) WHERE t.id = v.id`, ids, vals)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(ids)) {
		return fmt.Errorf("set %d rows of %d", tag.RowsAffected(), len(ids))
	}
	return nil
}

// convert turns a value as SQLite stores it (see ci/sqlite's migrations)
// into a value of the PostgreSQL type typ.
func convert(v any, typ string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "timestamp with time zone":
		// Integer microseconds since the epoch.
		if x, ok := v.(int64); ok {
			return time.UnixMicro(x).UTC(), nil
		}
	case "boolean":
		if x, ok := v.(int64); ok {
			return x != 0, nil
		}
	case "bigint", "integer":
		if x, ok := v.(int64); ok {
			return x, nil
		}
	case "text", "jsonb":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case "bytea":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("a %T for a %s column", v, typ)
}
