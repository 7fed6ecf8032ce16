package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci"
)

// LogBytes returns the space the stored log lines take (their compressed
// size), kept as a running total.
func (s *Store) LogBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.read(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT COALESCE(SUM(value), 0)::bigint FROM log_bytes`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: log bytes: %w", err)
	}
	return n, nil
}

// BuildsWithLogs returns finished builds whose logs are still stored,
// oldest first.
func (s *Store) BuildsWithLogs(ctx context.Context, q ci.RetentionQuery) ([]int64, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("postgres: builds with logs: no limit given")
	}
	var conds []string
	var a args
	if q.BuilderID != 0 {
		conds = append(conds, "builder_id = "+a.add(q.BuilderID))
	}
	if !q.CompletedBefore.IsZero() {
		conds = append(conds, "complete_at < "+a.add(q.CompletedBefore))
	}
	if q.KeepLast > 0 {
		if q.BuilderID == 0 {
			return nil, fmt.Errorf("postgres: builds with logs: KeepLast needs a builder")
		}
		// Older than the builder's KeepLast-th newest build.
		conds = append(conds, fmt.Sprintf(`id < COALESCE((SELECT id FROM builds WHERE builder_id = %s ORDER BY id DESC LIMIT 1 OFFSET %s), 0)`,
			a.add(q.BuilderID), a.add(q.KeepLast-1)))
	}
	query := `SELECT id FROM builds WHERE complete AND NOT logs_deleted`
	if len(conds) > 0 {
		query += " AND " + strings.Join(conds, " AND ")
	}
	query += ` ORDER BY complete_at, id LIMIT ` + a.add(q.Limit)
	ids, err := s.readIDs(ctx, query, a...)
	if err != nil {
		return nil, fmt.Errorf("postgres: builds with logs: %w", err)
	}
	return ids, nil
}

// readIDs returns the IDs a query selects.
func (s *Store) readIDs(ctx context.Context, query string, args ...any) ([]int64, error) {
	var ids []int64
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		ids, err = scanAll(rows, func(row scanner) (id int64, err error) { return id, row.Scan(&id) })
		return err
	})
	return ids, err
}

// buildLogBytesQuery selects the space the stored lines of a build's logs
// take.
const buildLogBytesQuery = `SELECT COALESCE(SUM(octet_length(c.content)), 0)::bigint FROM logchunks c
	JOIN logs l ON l.id = c.log_id JOIN steps s ON s.id = l.step_id WHERE s.build_id = $1`

// BuildLogBytes returns the space the stored lines of the builds' logs
// take.
func (s *Store) BuildLogBytes(ctx context.Context, buildIDs []int64) (int64, error) {
	var total int64
	err := s.read(ctx, func(tx pgx.Tx) error {
		total = 0
		for _, id := range buildIDs {
			var n int64
			if err := tx.QueryRow(ctx, buildLogBytesQuery, id).Scan(&n); err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: build log bytes: %w", err)
	}
	return total, nil
}

// deleteLogsTx deletes the chunks of a build's logs and returns their
// size, taken off the running total log by log.
func deleteLogsTx(ctx context.Context, tx pgx.Tx, id int64) (int64, error) {
	rows, err := tx.Query(ctx, `WITH gone AS (
			DELETE FROM logchunks WHERE log_id IN
				(SELECT l.id FROM logs l JOIN steps s ON s.id = l.step_id WHERE s.build_id = $1)
			RETURNING log_id, octet_length(content) AS size)
		SELECT log_id % $2, SUM(size)::bigint FROM gone GROUP BY 1 ORDER BY 1`, id, logBytesShards)
	if err != nil {
		return 0, err
	}
	type shard struct{ shard, size int64 }
	shards, err := scanAll(rows, func(row scanner) (s shard, err error) { return s, row.Scan(&s.shard, &s.size) })
	if err != nil {
		return 0, err
	}
	var size int64
	for _, sh := range shards {
		if _, err := tx.Exec(ctx, `UPDATE log_bytes SET value = value - $1 WHERE shard = $2`, sh.size, sh.shard); err != nil {
			return 0, err
		}
		size += sh.size
	}
	return size, nil
}

// DeleteBuildLogs deletes the lines of the builds' logs, keeping the logs
// listed with type ci.LogDeleted.
func (s *Store) DeleteBuildLogs(ctx context.Context, buildIDs []int64) (int64, error) {
	var freed int64
	err := s.write(ctx, func(tx pgx.Tx) error {
		freed = 0
		for _, id := range buildIDs {
			n, err := deleteLogsTx(ctx, tx, id)
			if err != nil {
				return err
			}
			freed += n
			if _, err := tx.Exec(ctx, `UPDATE logs SET type = $1 WHERE step_id IN (SELECT id FROM steps WHERE build_id = $2)`, ci.LogDeleted, id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE builds SET logs_deleted = true WHERE id = $1 AND complete`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: delete build logs: %w", err)
	}
	return freed, nil
}

// FinishedBuildsBefore returns finished builds that completed before t,
// oldest first.
func (s *Store) FinishedBuildsBefore(ctx context.Context, t time.Time, limit int) ([]int64, error) {
	ids, err := s.readIDs(ctx, `SELECT id FROM builds WHERE complete AND complete_at < $1
		ORDER BY complete_at, id LIMIT $2`, t, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: finished builds: %w", err)
	}
	return ids, nil
}

// DeleteBuilds deletes finished builds with their steps and logs, then the
// complete requests and buildsets no build refers to any more.
func (s *Store) DeleteBuilds(ctx context.Context, buildIDs []int64) (int64, error) {
	var freed int64
	err := s.write(ctx, func(tx pgx.Tx) error {
		freed = 0
		for _, id := range buildIDs {
			var complete bool
			var request int64
			err := tx.QueryRow(ctx, `SELECT complete, buildrequest_id FROM builds WHERE id = $1 FOR UPDATE`, id).Scan(&complete, &request)
			if noRows(err) {
				return notFound("build", id)
			}
			if err != nil {
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
				`DELETE FROM test_results WHERE test_result_set_id IN (SELECT id FROM test_result_sets WHERE build_id = $1)`,
				`DELETE FROM test_result_sets WHERE build_id = $1`,
				`DELETE FROM logs WHERE step_id IN (SELECT id FROM steps WHERE build_id = $1)`,
				`DELETE FROM steps WHERE build_id = $1`,
				`UPDATE buildrequests SET build_id = NULL WHERE build_id = $1`,
				`UPDATE buildsets SET parent_build_id = NULL WHERE parent_build_id = $1`,
				`DELETE FROM builds WHERE id = $1`,
			} {
				if _, err := tx.Exec(ctx, q, id); err != nil {
					return err
				}
			}
			// The request and its buildset go when nothing needs them.
			var bsid int64
			err = tx.QueryRow(ctx, `SELECT buildset_id FROM buildrequests r WHERE id = $1 AND complete
				AND NOT EXISTS (SELECT 1 FROM builds b WHERE b.buildrequest_id = r.id)`, request).Scan(&bsid)
			if noRows(err) {
				continue // still needed (or already gone)
			}
			if err != nil {
				return err
			}
			var open int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM buildrequests r WHERE buildset_id = $1
				AND (NOT complete OR EXISTS (SELECT 1 FROM builds b WHERE b.buildrequest_id = r.id))`, bsid).Scan(&open); err != nil {
				return err
			}
			if open > 0 {
				continue
			}
			for _, q := range []string{
				`DELETE FROM buildrequests WHERE buildset_id = $1`,
				`DELETE FROM buildset_sourcestamps WHERE buildset_id = $1`,
				`DELETE FROM buildsets WHERE id = $1`,
			} {
				if _, err := tx.Exec(ctx, q, bsid); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: delete builds: %w", err)
	}
	return freed, nil
}

// compactTables are the tables the janitor deletes from, those Compact
// vacuums.
var compactTables = []string{"logchunks", "logs", "steps", "builds", "buildrequests", "buildset_sourcestamps", "buildsets"}

// pageSize is PostgreSQL's page size (BLCKSZ), in which Compact counts.
const pageSize = 8192

// Compact vacuums the tables the janitor deletes from, and returns how
// many pages of the files (with their TOAST tables and indexes) were
// given back to the file system. VACUUM cannot be cut short, so pages
// does not bound the work: the whole tables are vacuumed, without
// blocking readers or writers (a plain VACUUM, not VACUUM FULL), and
// only the empty pages at their ends are given back; space freed inside
// the files is reused by later rows. Autovacuum does the same on its own
// schedule.
func (s *Store) Compact(ctx context.Context, pages int) (int, error) {
	size := func() (int64, error) {
		var n int64
		err := s.pool.QueryRow(ctx, `SELECT SUM(pg_total_relation_size(t::regclass))::bigint FROM unnest($1::text[]) AS t`,
			compactTables).Scan(&n)
		return n, err
	}
	before, err := size()
	if err != nil {
		return 0, fmt.Errorf("postgres: compact: %w", err)
	}
	// VACUUM runs outside a transaction, one statement each.
	if _, err := s.pool.Exec(ctx, `VACUUM `+strings.Join(compactTables, ", ")); err != nil {
		return 0, fmt.Errorf("postgres: compact: %w", err)
	}
	after, err := size()
	if err != nil {
		return 0, fmt.Errorf("postgres: compact: %w", err)
	}
	return int(max(before-after, 0) / pageSize), nil
}
