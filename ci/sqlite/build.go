package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/propjson"
)

// StartBuild claims the requests for b and stores it, numbered after the
// last build of its builder, in one transaction. If a request is not
// pending, it returns an error wrapping ci.ErrConflict (ci.ErrNotFound if it
// does not exist) and stores nothing.
func (s *Store) StartBuild(ctx context.Context, b *ci.Build, requestIDs []int64) error {
	if len(requestIDs) == 0 {
		return errors.New("sqlite: start build: no build requests given")
	}
	propsJSON, err := propjson.Marshal(b.Properties)
	if err != nil {
		return fmt.Errorf("sqlite: start build: properties: %w", err)
	}
	var id int64
	var number int
	err = s.writeSoon(ctx, func(tx *txn) error {
		// Numbered after the builder's last build, in the same statement;
		// the number read back by the row's ID (cheaper than RETURNING).
		var err error
		id, err = tx.insert(`INSERT INTO builds (number, builder_id, buildrequest_id, worker_id, started_at,
			complete_at, complete, state_string, results, properties)
			SELECT COALESCE(MAX(number), 0) + 1, ?, ?, ?, ?, NULL, 0, ?, NULL, ? FROM builds WHERE builder_id = ?`,
			b.BuilderID, requestIDs[0], idArg(b.WorkerID), timeArg(b.StartedAt), b.StateString, propsJSON, b.BuilderID)
		if err != nil {
			if isConstraint(err, errForeignKey) {
				return startConflict(ctx, tx, requestIDs, err)
			}
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT number FROM builds WHERE id = ?`, id).Scan(&number); err != nil {
			return err
		}
		for _, rid := range requestIDs {
			res, err := tx.ExecContext(ctx, `UPDATE buildrequests SET claimed = 1, claimed_at = ?, build_id = ?
				WHERE id = ? AND claimed = 0 AND complete = 0`, timeArg(b.StartedAt), id, rid)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return startConflict(ctx, tx, requestIDs, nil)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: start build: %w", err)
	}
	b.ID, b.Number, b.BuildRequestID = id, number, requestIDs[0]
	b.Complete = false
	return nil
}

// startConflict explains why StartBuild cannot claim requestIDs: a request
// that does not exist, one claimed or complete (perhaps listed twice), or
// else cause, a missing builder or worker.
func startConflict(ctx context.Context, tx *txn, requestIDs []int64, cause error) error {
	for i, rid := range requestIDs {
		r, err := getRequest(ctx, tx, rid)
		if err != nil {
			return err
		}
		if r.Claimed || r.Complete || slices.Contains(requestIDs[:i], rid) {
			return fmt.Errorf("build request %d is not pending: %w", rid, ci.ErrConflict)
		}
	}
	if cause == nil {
		return errors.New("a build request could not be claimed")
	}
	return refErr(cause)
}

// FinishBuild records the end of b, closes its open steps and logs,
// completes its requests (or makes them pending again, when resubmit is
// true) and completes the buildsets that are now done.
func (s *Store) FinishBuild(ctx context.Context, b *ci.Build, resubmit bool) ([]int64, error) {
	done, err := s.FinishBuildResults(ctx, b, resubmit)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, d := range done {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

var _ ci.BuildsetResultStore = (*Store)(nil)

// FinishBuildResults is FinishBuild, giving the results of the buildsets
// it completes (ci.BuildsetResultStore).
func (s *Store) FinishBuildResults(ctx context.Context, b *ci.Build, resubmit bool) ([]ci.BuildsetResult, error) {
	propsJSON, err := propjson.Marshal(b.Properties)
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish build: properties: %w", err)
	}
	var done []ci.BuildsetResult
	err = s.write(ctx, func(tx *txn) (err error) {
		done, err = finishBuildTx(ctx, tx, b, propsJSON, resubmit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish build: %w", err)
	}
	b.Complete = true
	return done, nil
}

// finishBuildTx records the end of b in tx (see FinishBuild) and returns
// the buildsets it completes.
func finishBuildTx(ctx context.Context, tx *txn, b *ci.Build, propsJSON string, resubmit bool) ([]ci.BuildsetResult, error) {
	at, results := timeArg(b.CompleteAt), int64(b.Results)
	res, err := tx.ExecContext(ctx, `UPDATE builds SET complete = 1, complete_at = ?, results = ?, state_string = ?,
		properties = ? WHERE id = ? AND complete = 0`, at, results, b.StateString, propsJSON, b.ID)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n == 0 {
		// Missing, or finished already.
		var complete bool
		err := tx.QueryRowContext(ctx, `SELECT complete FROM builds WHERE id = ?`, b.ID).Scan(&complete)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, notFound("build", b.ID)
		}
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("build %d is already finished: %w", b.ID, ci.ErrConflict)
	}
	_, err = tx.ExecContext(ctx, `UPDATE logs SET complete = 1
		WHERE complete = 0 AND step_id IN (SELECT id FROM steps WHERE build_id = ?)`, b.ID)
	if err != nil {
		return nil, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE steps SET complete = 1, complete_at = ?, results = ?
		WHERE build_id = ? AND complete = 0`, at, results, b.ID)
	if err != nil {
		return nil, err
	}
	if resubmit {
		_, err = tx.ExecContext(ctx, `UPDATE buildrequests SET claimed = 0, claimed_at = NULL, build_id = NULL
			WHERE build_id = ? AND complete = 0`, b.ID)
		return nil, err
	}
	var buildsets []int64
	var done []ci.BuildsetResult
	rows, err := tx.QueryContext(ctx, `UPDATE buildrequests SET complete = 1, complete_at = ?, results = ?
		WHERE build_id = ? AND complete = 0 RETURNING buildset_id`, at, results, b.ID)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		buildsets = append(buildsets, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(buildsets)
	for _, id := range slices.Compact(buildsets) {
		ok, results, err := completeBuildset(ctx, tx, id, b.CompleteAt)
		if err != nil {
			return nil, err
		}
		if ok {
			done = append(done, ci.BuildsetResult{ID: id, Results: results})
		}
	}
	return done, nil
}

// SetBuildState stores the state string of a build.
func (s *Store) SetBuildState(ctx context.Context, id int64, state string) error {
	err := s.writeSoon(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE builds SET state_string = ? WHERE id = ?`, state, id)
		if err != nil {
			return err
		}
		return mustAffect(res, "build", id)
	})
	if err != nil {
		return fmt.Errorf("sqlite: set build state: %w", err)
	}
	return nil
}

const buildCols = `id, number, builder_id, buildrequest_id, worker_id, started_at, complete_at, complete,
	state_string, results, properties`

func scanBuild(row scanner) (*ci.Build, error) {
	b := &ci.Build{}
	err := row.Scan(&b.ID, &b.Number, &b.BuilderID, &b.BuildRequestID, nullInt[int64]{&b.WorkerID},
		timeCol{&b.StartedAt}, timeCol{&b.CompleteAt}, &b.Complete, &b.StateString,
		nullInt[ci.Result]{&b.Results}, propjson.Col(&b.Properties))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// GetBuild returns the build with the given ID.
func (s *Store) GetBuild(ctx context.Context, id int64) (*ci.Build, error) {
	return s.getBuild(ctx, fmt.Sprintf("build %d", id), `id = ?`, id)
}

// FindBuild returns the build of a builder by number.
func (s *Store) FindBuild(ctx context.Context, builderID int64, number int) (*ci.Build, error) {
	return s.getBuild(ctx, fmt.Sprintf("build %d of builder %d", number, builderID), `builder_id = ? AND number = ?`, builderID, number)
}

func (s *Store) getBuild(ctx context.Context, what, cond string, args ...any) (*ci.Build, error) {
	var b *ci.Build
	err := s.read(ctx, func(tx *txn) (err error) {
		b, err = scanBuild(tx.QueryRowContext(ctx, `SELECT `+buildCols+` FROM builds WHERE `+cond, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return ci.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get %s: %w", what, err)
	}
	return b, nil
}

// ListBuilds returns a page of the builds q selects, by ID, and how many it
// selects in all.
func (s *Store) ListBuilds(ctx context.Context, q ci.BuildQuery) ([]*ci.Build, int, error) {
	var conds []string
	var args []any
	if q.BuilderID != 0 {
		conds, args = append(conds, "builder_id = ?"), append(args, q.BuilderID)
	}
	if q.WorkerID != 0 {
		conds, args = append(conds, "worker_id = ?"), append(args, q.WorkerID)
	}
	if q.Complete != nil {
		conds = append(conds, flagCond("complete", *q.Complete))
	}
	if q.ChangeID != 0 {
		conds, args = append(conds, changeBuilds), append(args, q.ChangeID)
	}
	var list []*ci.Build
	var total int
	countQuery := `SELECT COUNT(*) FROM builds` + where(conds)
	if len(conds) == 1 && q.BuilderID != 0 {
		// The builder's builds, counted as they come and go.
		countQuery = `SELECT COALESCE((SELECT builds FROM builder_build_counts WHERE builder_id = ?), 0)`
	}
	err := s.read(ctx, func(tx *txn) error {
		if err := count(ctx, tx, q.Query, countQuery, &total, args...); err != nil {
			return err
		}
		clause, pargs := page(q.Query, "id")
		rows, err := tx.QueryContext(ctx, `SELECT `+buildCols+` FROM builds`+where(conds)+clause, append(args, pargs...)...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanBuild)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list builds: %w", err)
	}
	return list, total, nil
}

// changeBuilds selects the builds made for a change: those
// whose first request, or any request they serve, belongs to a buildset
// whose source stamps list the change.
const changeBuilds = `id IN (
	WITH reqs AS (SELECT br.id, br.build_id FROM sourcestamp_changes AS sc
		JOIN buildset_sourcestamps AS bss ON bss.sourcestamp_id = sc.sourcestamp_id
		JOIN buildrequests AS br ON br.buildset_id = bss.buildset_id
		WHERE sc.change_id = ?)
	SELECT builds.id FROM builds WHERE buildrequest_id IN (SELECT id FROM reqs)
	UNION SELECT build_id FROM reqs WHERE build_id IS NOT NULL)`

// UnfinishedBuilds returns the builds started and not finished, by ID.
func (s *Store) UnfinishedBuilds(ctx context.Context) ([]*ci.Build, error) {
	var list []*ci.Build
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+buildCols+` FROM builds WHERE complete = 0 ORDER BY id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanBuild)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: unfinished builds: %w", err)
	}
	return list, nil
}

// AddStep stores s, setting its ID.
func (s *Store) AddStep(ctx context.Context, st *ci.StepRecord) error {
	urls, err := urlsArg(st.URLs)
	if err != nil {
		return fmt.Errorf("sqlite: add step: %w", err)
	}
	err = s.writeSoon(ctx, func(tx *txn) error { return addStepTx(ctx, tx, st, urls) })
	if err != nil {
		return fmt.Errorf("sqlite: add step: %w", err)
	}
	return nil
}

func addStepTx(ctx context.Context, tx *txn, st *ci.StepRecord, urls string) error {
	var err error
	st.ID, err = tx.insert(`INSERT INTO steps (build_id, number, name, started_at, complete_at, complete,
		state_string, results, hidden, urls) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		st.BuildID, st.Number, st.Name, timeArg(st.StartedAt), timeArg(st.CompleteAt), st.Complete,
		st.StateString, int64(st.Results), st.Hidden, urls)
	return refErr(err)
}

// UpdateStep stores the state string, results, completion (flag and time),
// hidden flag and URLs of st.
func (s *Store) UpdateStep(ctx context.Context, st *ci.StepRecord) error {
	urls, err := urlsArg(st.URLs)
	if err != nil {
		return fmt.Errorf("sqlite: update step: %w", err)
	}
	err = s.writeSoon(ctx, func(tx *txn) error { return updateStepTx(ctx, tx, st, urls) })
	if err != nil {
		return fmt.Errorf("sqlite: update step: %w", err)
	}
	return nil
}

func updateStepTx(ctx context.Context, tx *txn, st *ci.StepRecord, urls string) error {
	res, err := tx.ExecContext(ctx, `UPDATE steps SET state_string = ?, results = ?, complete = ?, complete_at = ?,
		hidden = ?, urls = ? WHERE id = ?`,
		st.StateString, int64(st.Results), st.Complete, timeArg(st.CompleteAt), st.Hidden, urls, st.ID)
	if err != nil {
		return err
	}
	return mustAffect(res, "step", st.ID)
}

func urlsArg(urls []ci.StepURL) (string, error) {
	if urls == nil {
		urls = []ci.StepURL{}
	}
	return jsonArg(urls)
}

const stepCols = `id, build_id, number, name, started_at, complete_at, complete, state_string, results, hidden, urls`

func scanStep(row scanner) (*ci.StepRecord, error) {
	st := &ci.StepRecord{}
	err := row.Scan(&st.ID, &st.BuildID, &st.Number, &st.Name, timeCol{&st.StartedAt}, timeCol{&st.CompleteAt},
		&st.Complete, &st.StateString, nullInt[ci.Result]{&st.Results}, &st.Hidden, jsonCol{&st.URLs})
	if err != nil {
		return nil, err
	}
	if len(st.URLs) == 0 {
		st.URLs = nil
	}
	return st, nil
}

// GetStep returns the step with the given ID.
func (s *Store) GetStep(ctx context.Context, id int64) (*ci.StepRecord, error) {
	var st *ci.StepRecord
	err := s.read(ctx, func(tx *txn) (err error) {
		st, err = scanStep(tx.QueryRowContext(ctx, `SELECT `+stepCols+` FROM steps WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("step", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get step: %w", err)
	}
	return st, nil
}

// ListSteps returns the steps of a build, by number.
func (s *Store) ListSteps(ctx context.Context, buildID int64) ([]*ci.StepRecord, error) {
	var list []*ci.StepRecord
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+stepCols+` FROM steps WHERE build_id = ? ORDER BY number, id`, buildID)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanStep)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list steps: %w", err)
	}
	return list, nil
}
