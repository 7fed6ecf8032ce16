package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// LogBytes returns the space the stored log lines take (their compressed
// size), kept as a running total.
func (s *Store) LogBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.read(ctx, func(tx *txn) error {
		return tx.QueryRowContext(ctx, `SELECT value FROM store_stats WHERE key = 'log_bytes'`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: log bytes: %w", err)
	}
	return n, nil
}

// BuildsWithLogs returns finished builds whose logs are still stored,
// oldest first.
func (s *Store) BuildsWithLogs(ctx context.Context, q ci.RetentionQuery) ([]int64, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("sqlite: builds with logs: no limit given")
	}
	var conds []string
	var args []any
	if q.BuilderID != 0 {
		conds = append(conds, "builder_id = ?")
		args = append(args, q.BuilderID)
	}
	if !q.CompletedBefore.IsZero() {
		conds = append(conds, "complete_at < ?")
		args = append(args, timeArg(q.CompletedBefore))
	}
	if q.KeepLast > 0 {
		if q.BuilderID == 0 {
			return nil, fmt.Errorf("sqlite: builds with logs: KeepLast needs a builder")
		}
		// Older than the builder's KeepLast-th newest build.
		conds = append(conds, `id < COALESCE((SELECT id FROM builds WHERE builder_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?), 0)`)
		args = append(args, q.BuilderID, q.KeepLast-1)
	}
	query := `SELECT id FROM builds WHERE complete = 1 AND logs_deleted = 0`
	if len(conds) > 0 {
		query += " AND " + strings.Join(conds, " AND ")
	}
	query += ` ORDER BY complete_at, id LIMIT ?`
	args = append(args, q.Limit)
	ids, err := s.readIDs(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: builds with logs: %w", err)
	}
	return ids, nil
}

// readIDs returns the IDs a query selects.
func (s *Store) readIDs(ctx context.Context, query string, args ...any) ([]int64, error) {
	var ids []int64
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

// buildLogBytesQuery selects the space the stored lines of a build's logs
// take.
const buildLogBytesQuery = `SELECT COALESCE(SUM(LENGTH(c.content)), 0) FROM logchunks c
	JOIN logs l ON l.id = c.log_id JOIN steps s ON s.id = l.step_id WHERE s.build_id = ?`

// BuildLogBytes returns the space the stored lines of the builds' logs
// take.
func (s *Store) BuildLogBytes(ctx context.Context, buildIDs []int64) (int64, error) {
	var total int64
	err := s.read(ctx, func(tx *txn) error {
		for _, id := range buildIDs {
			var n int64
			if err := tx.QueryRowContext(ctx, buildLogBytesQuery, id).Scan(&n); err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: build log bytes: %w", err)
	}
	return total, nil
}

// deleteLogsTx deletes the chunks of the builds' logs and returns their
// size.
func deleteLogsTx(ctx context.Context, tx *txn, id int64) (int64, error) {
	var size int64
	err := tx.QueryRowContext(ctx, buildLogBytesQuery, id).Scan(&size)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM logchunks WHERE log_id IN
		(SELECT l.id FROM logs l JOIN steps s ON s.id = l.step_id WHERE s.build_id = ?)`, id); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE store_stats SET value = value - ? WHERE key = 'log_bytes'`, size); err != nil {
		return 0, err
	}
	return size, nil
}

// DeleteBuildLogs deletes the lines of the builds' logs, keeping the logs
// listed with type ci.LogDeleted.
func (s *Store) DeleteBuildLogs(ctx context.Context, buildIDs []int64) (int64, error) {
	var freed int64
	err := s.write(ctx, func(tx *txn) error {
		freed = 0
		for _, id := range buildIDs {
			n, err := deleteLogsTx(ctx, tx, id)
			if err != nil {
				return err
			}
			freed += n
			if _, err := tx.ExecContext(ctx, `UPDATE logs SET type = ? WHERE step_id IN (SELECT id FROM steps WHERE build_id = ?)`, ci.LogDeleted, id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE builds SET logs_deleted = 1 WHERE id = ? AND complete = 1`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete build logs: %w", err)
	}
	return freed, nil
}

// FinishedBuildsBefore returns finished builds that completed before t,
// oldest first.
func (s *Store) FinishedBuildsBefore(ctx context.Context, t time.Time, limit int) ([]int64, error) {
	ids, err := s.readIDs(ctx, `SELECT id FROM builds WHERE complete = 1 AND complete_at < ?
		ORDER BY complete_at, id LIMIT ?`, timeArg(t), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: finished builds: %w", err)
	}
	return ids, nil
}

// DeleteBuilds deletes finished builds with their steps and logs, then the
// complete requests and buildsets no build refers to any more.
func (s *Store) DeleteBuilds(ctx context.Context, buildIDs []int64) (int64, error) {
	var freed int64
	err := s.write(ctx, func(tx *txn) error {
		freed = 0
		for _, id := range buildIDs {
			var complete bool
			var request int64
			if err := tx.QueryRowContext(ctx, `SELECT complete, buildrequest_id FROM builds WHERE id = ?`, id).Scan(&complete, &request); err != nil {
				return fmt.Errorf("build %d: %w", id, err)
			}
			if !complete {
				return fmt.Errorf("build %d is running: %w", id, ci.ErrConflict)
			}
			n, err := deleteLogsTx(ctx, tx, id)
			if err != nil {
				return err
			}
			freed += n
			for _, q := range []string{
				`DELETE FROM test_results WHERE test_result_set_id IN (SELECT id FROM test_result_sets WHERE build_id = ?)`,
				`DELETE FROM test_result_sets WHERE build_id = ?`,
				`DELETE FROM logs WHERE step_id IN (SELECT id FROM steps WHERE build_id = ?)`,
				`DELETE FROM steps WHERE build_id = ?`,
				`UPDATE buildrequests SET build_id = NULL WHERE build_id = ?`,
				`UPDATE buildsets SET parent_build_id = NULL WHERE parent_build_id = ?`,
				`DELETE FROM builds WHERE id = ?`,
			} {
				if _, err := tx.ExecContext(ctx, q, id); err != nil {
					return err
				}
			}
			// The request and its buildset go when nothing needs them.
			var bsid int64
			err = tx.QueryRowContext(ctx, `SELECT buildset_id FROM buildrequests r WHERE id = ? AND complete = 1
				AND NOT EXISTS (SELECT 1 FROM builds b WHERE b.buildrequest_id = r.id)`, request).Scan(&bsid)
			if err != nil {
				continue // still needed (or already gone)
			}
			var open int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM buildrequests r WHERE buildset_id = ?
				AND (complete = 0 OR EXISTS (SELECT 1 FROM builds b WHERE b.buildrequest_id = r.id))`, bsid).Scan(&open); err != nil {
				return err
			}
			if open > 0 {
				continue
			}
			for _, q := range []string{
				`DELETE FROM buildrequests WHERE buildset_id = ?`,
				`DELETE FROM buildset_sourcestamps WHERE buildset_id = ?`,
				`DELETE FROM buildsets WHERE id = ?`,
			} {
				if _, err := tx.ExecContext(ctx, q, bsid); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete builds: %w", err)
	}
	return freed, nil
}

// Compact runs an incremental vacuum of up to pages pages.
func (s *Store) Compact(ctx context.Context, pages int) (int, error) {
	var before, after int
	err := s.rawWrite(ctx, func(conn *sql.Conn) error {
		if err := conn.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&before); err != nil {
			return err
		}
		if before == 0 {
			return nil
		}
		rows, err := conn.QueryContext(ctx, fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, max(pages, 1)))
		if err != nil {
			return err
		}
		for rows.Next() {
		}
		rows.Close()
		return conn.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&after)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: compact: %w", err)
	}
	return before - after, nil
}

// Backup writes a consistent copy of the database to path (which must not
// exist), while the master runs: SQLite's VACUUM INTO reads one snapshot,
// so writers carry on and the copy is compact and whole.
func (s *Store) Backup(ctx context.Context, path string) error {
	// A connection of its own: the readers are read-only, and the writer
	// must stay free for the master.
	db, err := sql.Open("sqlite", s.dsn)
	if err != nil {
		return fmt.Errorf("sqlite: backup to %s: %w", path, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("sqlite: backup to %s: %w", path, err)
	}
	return nil
}
