package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/propjson"
)

// AddBuildset stores bs, its source stamps and one pending request per
// builder, in one transaction. A source stamp with no ID is stored (and
// its ID set); one with an ID refers to a stored source stamp, and is
// filled from it.
func (s *Store) AddBuildset(ctx context.Context, bs *ci.Buildset, builderIDs []int64, priority int) ([]*ci.BuildRequest, error) {
	propsJSON, err := propjson.Marshal(bs.Properties)
	if err != nil {
		return nil, fmt.Errorf("sqlite: add buildset: properties: %w", err)
	}
	sourceStamps := slices.Clone(bs.SourceStamps)
	var reqs []*ci.BuildRequest
	var existing *ci.Buildset
	err = s.write(ctx, func(tx *txn) error {
		reqs = nil
		if bs.ExternalID != "" {
			var id int64
			err := tx.QueryRowContext(ctx, `SELECT id FROM buildsets WHERE external_id = ? ORDER BY id LIMIT 1`, bs.ExternalID).Scan(&id)
			if err == nil {
				if existing, err = getBuildset(ctx, tx, id); err != nil {
					return err
				}
				rows, err := tx.QueryContext(ctx, `SELECT `+requestCols+` FROM buildrequests WHERE buildset_id = ? ORDER BY id`, id)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					r, err := scanRequest(rows)
					if err != nil {
						return err
					}
					reqs = append(reqs, r)
				}
				return rows.Err()
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		var err error
		bs.ID, err = tx.insert(`INSERT INTO buildsets (external_id, reason, submitted_at, complete,
			complete_at, results, properties, parent_build_id, scheduler)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			bs.ExternalID, bs.Reason, timeArg(bs.SubmittedAt), false, nil, nil, propsJSON,
			idArg(bs.ParentBuildID), bs.Scheduler)
		if err != nil {
			return refErr(err)
		}
		for i := range sourceStamps {
			ss := &sourceStamps[i]
			if ss.ID != 0 {
				if *ss, err = getSourceStamp(ctx, tx, ss.ID); err != nil {
					return err
				}
			} else {
				ss.Changes = slices.Clone(ss.Changes)
				if ss.CreatedAt.IsZero() {
					ss.CreatedAt = s.now()
				}
				if err := insertSourceStamp(ctx, tx, ss); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO buildset_sourcestamps (buildset_id, ord, sourcestamp_id) VALUES (?, ?, ?)`,
				bs.ID, i, ss.ID)
			if err != nil {
				return err
			}
		}
		for _, builderID := range builderIDs {
			r := &ci.BuildRequest{
				BuildsetID:  bs.ID,
				BuilderID:   builderID,
				Priority:    priority,
				SubmittedAt: bs.SubmittedAt,
			}
			var err error
			r.ID, err = tx.insert(`INSERT INTO buildrequests (buildset_id, builder_id, priority, submitted_at)
				VALUES (?, ?, ?, ?)`, r.BuildsetID, r.BuilderID, r.Priority, timeArg(r.SubmittedAt))
			if err != nil {
				return refErr(err)
			}
			reqs = append(reqs, r)
		}
		return nil
	})
	if err != nil {
		bs.ID = 0
		return nil, fmt.Errorf("sqlite: add buildset: %w", err)
	}
	if existing != nil {
		*bs = *existing
		return reqs, fmt.Errorf("sqlite: add buildset %q: %w", bs.ExternalID, ci.ErrDuplicate)
	}
	bs.SourceStamps = sourceStamps
	bs.Complete, bs.CompleteAt, bs.Results = false, time.Time{}, ci.Success
	return reqs, nil
}

const buildsetCols = `id, external_id, reason, submitted_at, complete, complete_at, results, properties,
	parent_build_id, scheduler`

func scanBuildset(row scanner) (*ci.Buildset, error) {
	bs := &ci.Buildset{}
	err := row.Scan(&bs.ID, &bs.ExternalID, &bs.Reason, timeCol{&bs.SubmittedAt}, &bs.Complete, timeCol{&bs.CompleteAt},
		nullInt[ci.Result]{&bs.Results}, propjson.Col(&bs.Properties), nullInt[int64]{&bs.ParentBuildID}, &bs.Scheduler)
	return bs, err
}

// keyedScanner scans a row whose first column is a key, then the columns
// a scan function of the record reads.
type keyedScanner struct {
	row scanner
	key *int64
}

func (k keyedScanner) Scan(dest ...any) error { return k.row.Scan(append([]any{k.key}, dest...)...) }

func getBuildset(ctx context.Context, tx *txn, id int64) (*ci.Buildset, error) {
	bs, err := scanBuildset(tx.QueryRowContext(ctx, `SELECT `+buildsetCols+` FROM buildsets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("buildset", id)
	}
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+sourceStampCols+` FROM buildset_sourcestamps AS b
		JOIN sourcestamps ON sourcestamps.id = b.sourcestamp_id WHERE b.buildset_id = ? ORDER BY b.ord`, id)
	if err != nil {
		return nil, err
	}
	bs.SourceStamps, err = scanAll(rows, scanSourceStamp)
	return bs, err
}

// ListBuildsets returns a page of the buildsets q selects, by ID, with
// their source stamps, and how many it selects in all.
func (s *Store) ListBuildsets(ctx context.Context, q ci.BuildsetQuery) ([]*ci.Buildset, int, error) {
	var conds []string
	var args []any
	if len(q.IDs) > 0 {
		conds, args = append(conds, idsCond), append(args, idsArg(q.IDs))
	}
	if q.Complete != nil {
		conds = append(conds, flagCond("complete", *q.Complete))
	}
	var list []*ci.Buildset
	var total int
	err := s.read(ctx, func(tx *txn) error {
		if err := count(ctx, tx, q.Query, `SELECT COUNT(*) FROM buildsets`+where(conds), &total, args...); err != nil {
			return err
		}
		clause, pargs := page(q.Query, "id")
		rows, err := tx.QueryContext(ctx, `SELECT `+buildsetCols+` FROM buildsets`+where(conds)+clause, append(args, pargs...)...)
		if err != nil {
			return err
		}
		if list, err = scanAll(rows, scanBuildset); err != nil || len(list) == 0 {
			return err
		}
		// The source stamps of the whole page, in one query.
		byID := make(map[int64]*ci.Buildset, len(list))
		ids := make([]int64, len(list))
		for i, bs := range list {
			byID[bs.ID], ids[i] = bs, bs.ID
		}
		rows, err = tx.QueryContext(ctx, `SELECT b.buildset_id, `+sourceStampCols+` FROM buildset_sourcestamps AS b
			JOIN sourcestamps ON sourcestamps.id = b.sourcestamp_id
			WHERE b.buildset_id IN (SELECT value FROM json_each(?)) ORDER BY b.buildset_id, b.ord`, idsArg(ids))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			ss, err := scanSourceStamp(keyedScanner{rows, &id})
			if err != nil {
				return err
			}
			byID[id].SourceStamps = append(byID[id].SourceStamps, ss)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list buildsets: %w", err)
	}
	return list, total, nil
}

// GetBuildset returns the buildset with the given ID, with its source
// stamps.
func (s *Store) GetBuildset(ctx context.Context, id int64) (*ci.Buildset, error) {
	var bs *ci.Buildset
	err := s.read(ctx, func(tx *txn) (err error) {
		bs, err = getBuildset(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get buildset: %w", err)
	}
	return bs, nil
}

const requestCols = `id, buildset_id, builder_id, priority, submitted_at, claimed, claimed_at, complete,
	complete_at, results, waited_for, build_id`

func scanRequest(row scanner) (*ci.BuildRequest, error) {
	r := &ci.BuildRequest{}
	err := row.Scan(&r.ID, &r.BuildsetID, &r.BuilderID, &r.Priority, timeCol{&r.SubmittedAt}, &r.Claimed,
		timeCol{&r.ClaimedAt}, &r.Complete, timeCol{&r.CompleteAt}, nullInt[ci.Result]{&r.Results},
		&r.WaitedFor, nullInt[int64]{&r.BuildID})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func getRequest(ctx context.Context, tx *txn, id int64) (*ci.BuildRequest, error) {
	r, err := scanRequest(tx.QueryRowContext(ctx, `SELECT `+requestCols+` FROM buildrequests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("build request", id)
	}
	return r, err
}

// GetRequest returns the build request with the given ID.
func (s *Store) GetRequest(ctx context.Context, id int64) (*ci.BuildRequest, error) {
	var r *ci.BuildRequest
	err := s.read(ctx, func(tx *txn) (err error) {
		r, err = getRequest(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get request: %w", err)
	}
	return r, nil
}

// ListRequests returns a page of the requests q selects, by ID, and how
// many it selects in all.
func (s *Store) ListRequests(ctx context.Context, q ci.RequestQuery) ([]*ci.BuildRequest, int, error) {
	var conds []string
	var args []any
	if len(q.IDs) > 0 {
		conds, args = append(conds, idsCond), append(args, idsArg(q.IDs))
	}
	if q.BuilderID != 0 {
		conds, args = append(conds, "builder_id = ?"), append(args, q.BuilderID)
	}
	if q.BuildsetID != 0 {
		conds, args = append(conds, "buildset_id = ?"), append(args, q.BuildsetID)
	}
	if q.Complete != nil {
		conds = append(conds, flagCond("complete", *q.Complete))
	}
	if q.Claimed != nil {
		conds = append(conds, flagCond("claimed", *q.Claimed))
	}
	var list []*ci.BuildRequest
	var total int
	err := s.read(ctx, func(tx *txn) error {
		if err := count(ctx, tx, q.Query, `SELECT COUNT(*) FROM buildrequests`+where(conds), &total, args...); err != nil {
			return err
		}
		clause, pargs := page(q.Query, "id")
		rows, err := tx.QueryContext(ctx, `SELECT `+requestCols+` FROM buildrequests`+where(conds)+clause, append(args, pargs...)...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanRequest)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list requests: %w", err)
	}
	return list, total, nil
}

// PendingRequests returns the unclaimed, incomplete requests, highest
// priority first, then oldest first (then by ID).
func (s *Store) PendingRequests(ctx context.Context) ([]*ci.BuildRequest, error) {
	var list []*ci.BuildRequest
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+requestCols+` FROM buildrequests
			WHERE claimed = 0 AND complete = 0 ORDER BY priority DESC, submitted_at, id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanRequest)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending requests: %w", err)
	}
	return list, nil
}

// CancelRequest completes a pending request as CANCELLED, and its buildset
// if no other request of it is incomplete.
func (s *Store) CancelRequest(ctx context.Context, id int64, at time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		r, err := getRequest(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.Claimed || r.Complete {
			return fmt.Errorf("build request %d is claimed or complete: %w", id, ci.ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `UPDATE buildrequests SET complete = 1, complete_at = ?, results = ? WHERE id = ?`,
			timeArg(at), int64(ci.Cancelled), id)
		if err != nil {
			return err
		}
		_, _, err = completeBuildset(ctx, tx, r.BuildsetID, at)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: cancel request: %w", err)
	}
	return nil
}

// completeBuildset completes buildset id, with the worst result of its
// requests, if it is incomplete and all its requests are complete. It
// reports whether it did.
func completeBuildset(ctx context.Context, tx *txn, id int64, at time.Time) (bool, ci.Result, error) {
	rows, err := tx.QueryContext(ctx, `SELECT complete, results FROM buildrequests WHERE buildset_id = ?`, id)
	if err != nil {
		return false, 0, err
	}
	defer rows.Close()
	results, first := ci.Success, true
	for rows.Next() {
		var done bool
		var r ci.Result
		if err := rows.Scan(&done, nullInt[ci.Result]{&r}); err != nil {
			return false, 0, err
		}
		if !done {
			return false, 0, nil
		}
		if first {
			results, first = r, false
		} else {
			results = ci.Worst(results, r)
		}
	}
	if err := rows.Err(); err != nil {
		return false, 0, err
	}
	rows.Close()
	res, err := tx.ExecContext(ctx, `UPDATE buildsets SET complete = 1, complete_at = ?, results = ?
		WHERE id = ? AND complete = 0`, timeArg(at), int64(results), id)
	if err != nil {
		return false, 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, 0, err
	}
	return n == 1, results, nil
}
