package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/propjson"
)

// StartBuild claims the requests for b and stores it, numbered after the
// last build of its builder, in one transaction. If a request is not
// pending, it returns an error wrapping ci.ErrConflict (ci.ErrNotFound if it
// does not exist) and stores nothing.
//
// The requests are claimed with SELECT ... FOR UPDATE SKIP LOCKED: a
// request another transaction (another master) is claiming or cancelling
// is not waited for but reported as a conflict at once, and the claim of
// a pending request is decided by whichever transaction locks it first.
// The builder's row is then locked (FOR NO KEY UPDATE, which does not
// stop others referring to it) while the next number is taken, so that
// builds of one builder started at once get numbers that follow each
// other, as they do with SQLite.
func (s *Store) StartBuild(ctx context.Context, b *ci.Build, requestIDs []int64) error {
	if len(requestIDs) == 0 {
		return errors.New("postgres: start build: no build requests given")
	}
	propsJSON, err := propjson.Marshal(b.Properties)
	if err != nil {
		return fmt.Errorf("postgres: start build: properties: %w", err)
	}
	var id int64
	var number int
	err = s.write(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM buildrequests WHERE id = ANY($1) AND NOT claimed AND NOT complete
			ORDER BY id FOR UPDATE SKIP LOCKED`, requestIDs)
		if err != nil {
			return err
		}
		locked, err := scanAll(rows, func(row scanner) (id int64, err error) { return id, row.Scan(&id) })
		if err != nil {
			return err
		}
		for i, rid := range requestIDs {
			if !slices.Contains(locked, rid) || slices.Contains(requestIDs[:i], rid) {
				return startConflict(ctx, tx, rid)
			}
		}
		err = tx.QueryRow(ctx, `SELECT id FROM builders WHERE id = $1 FOR NO KEY UPDATE`, b.BuilderID).Scan(new(int64))
		if noRows(err) {
			return notFound("builder", b.BuilderID)
		}
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE builder_id = $1`, b.BuilderID).Scan(&number)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `INSERT INTO builds (number, builder_id, buildrequest_id, worker_id, started_at,
			state_string, properties, master_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			number, b.BuilderID, requestIDs[0], idArg(b.WorkerID), timeArg(b.StartedAt), b.StateString, propsJSON,
			idArg(b.MasterID)).Scan(&id)
		if err != nil {
			return refErr(err)
		}
		_, err = tx.Exec(ctx, `UPDATE buildrequests SET claimed = true, claimed_at = $1, build_id = $2
			WHERE id = ANY($3)`, timeArg(b.StartedAt), id, requestIDs)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: start build: %w", err)
	}
	b.ID, b.Number, b.BuildRequestID = id, number, requestIDs[0]
	b.Complete = false
	return nil
}

// startConflict explains why StartBuild cannot claim request rid: it does
// not exist, or it is claimed, complete, listed twice or being claimed by
// another transaction.
func startConflict(ctx context.Context, tx pgx.Tx, rid int64) error {
	if _, err := getRequest(ctx, tx, rid, ""); err != nil {
		return err
	}
	return fmt.Errorf("build request %d is not pending: %w", rid, ci.ErrConflict)
}

// FinishBuild records the end of b, closes its open steps and logs,
// completes its requests (or makes them pending again, when resubmit is
// true) and completes the buildsets that are now done. The build's row is
// locked first, so that it is finished once.
func (s *Store) FinishBuild(ctx context.Context, b *ci.Build, resubmit bool) ([]int64, error) {
	propsJSON, err := propjson.Marshal(b.Properties)
	if err != nil {
		return nil, fmt.Errorf("postgres: finish build: properties: %w", err)
	}
	var done []int64
	err = s.write(ctx, func(tx pgx.Tx) error {
		var err error
		done, err = finishBuild(ctx, tx, b, &propsJSON, resubmit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: finish build: %w", err)
	}
	b.Complete = true
	return done, nil
}

// finishBuild is FinishBuild in transaction tx; props nil keeps the
// stored properties.
func finishBuild(ctx context.Context, tx pgx.Tx, b *ci.Build, props *string, resubmit bool) ([]int64, error) {
	var done []int64
	var complete bool
	err := tx.QueryRow(ctx, `SELECT complete FROM builds WHERE id = $1 FOR NO KEY UPDATE`, b.ID).Scan(&complete)
	if noRows(err) {
		return nil, notFound("build", b.ID)
	}
	if err != nil {
		return nil, err
	}
	if complete {
		return nil, fmt.Errorf("build %d is already finished: %w", b.ID, ci.ErrConflict)
	}
	at, results := timeArg(b.CompleteAt), int64(b.Results)
	_, err = tx.Exec(ctx, `UPDATE builds SET complete = true, complete_at = $1, results = $2, state_string = $3,
		properties = COALESCE($4, properties) WHERE id = $5`, at, results, b.StateString, props, b.ID)
	if err != nil {
		return nil, err
	}
	_, err = tx.Exec(ctx, `UPDATE logs SET complete = true
		WHERE NOT complete AND step_id IN (SELECT id FROM steps WHERE build_id = $1)`, b.ID)
	if err != nil {
		return nil, err
	}
	_, err = tx.Exec(ctx, `UPDATE steps SET complete = true, complete_at = $1, results = $2
		WHERE build_id = $3 AND NOT complete`, at, results, b.ID)
	if err != nil {
		return nil, err
	}
	if resubmit {
		_, err = tx.Exec(ctx, `UPDATE buildrequests SET claimed = false, claimed_at = NULL, build_id = NULL
			WHERE build_id = $1 AND NOT complete`, b.ID)
		return nil, err
	}
	rows, err := tx.Query(ctx, `UPDATE buildrequests SET complete = true, complete_at = $1, results = $2
		WHERE build_id = $3 AND NOT complete RETURNING buildset_id`, at, results, b.ID)
	if err != nil {
		return nil, err
	}
	buildsets, err := scanAll(rows, func(row scanner) (id int64, err error) { return id, row.Scan(&id) })
	if err != nil {
		return nil, err
	}
	slices.Sort(buildsets)
	for _, id := range slices.Compact(buildsets) {
		ok, err := completeBuildset(ctx, tx, id, b.CompleteAt)
		if err != nil {
			return nil, err
		}
		if ok {
			done = append(done, id)
		}
	}
	return done, nil
}

// SetBuildState stores the state string of a build.
func (s *Store) SetBuildState(ctx context.Context, id int64, state string) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE builds SET state_string = $1 WHERE id = $2`, state, id)
		if err != nil {
			return err
		}
		return mustAffect(tag, "build", id)
	})
	if err != nil {
		return fmt.Errorf("postgres: set build state: %w", err)
	}
	return nil
}

const buildCols = `id, number, builder_id, buildrequest_id, worker_id, started_at, complete_at, complete,
	state_string, results, properties, master_id`

func scanBuild(row scanner) (*ci.Build, error) {
	b := &ci.Build{}
	err := row.Scan(&b.ID, &b.Number, &b.BuilderID, &b.BuildRequestID, nullInt[int64]{&b.WorkerID},
		timeCol{&b.StartedAt}, timeCol{&b.CompleteAt}, &b.Complete, &b.StateString,
		nullInt[ci.Result]{&b.Results}, propjson.Col(&b.Properties), nullInt[int64]{&b.MasterID})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// GetBuild returns the build with the given ID.
func (s *Store) GetBuild(ctx context.Context, id int64) (*ci.Build, error) {
	return s.getBuild(ctx, fmt.Sprintf("build %d", id), `id = $1`, id)
}

// FindBuild returns the build of a builder by number.
func (s *Store) FindBuild(ctx context.Context, builderID int64, number int) (*ci.Build, error) {
	return s.getBuild(ctx, fmt.Sprintf("build %d of builder %d", number, builderID), `builder_id = $1 AND number = $2`, builderID, number)
}

func (s *Store) getBuild(ctx context.Context, what, cond string, args ...any) (*ci.Build, error) {
	var b *ci.Build
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		b, err = scanBuild(tx.QueryRow(ctx, `SELECT `+buildCols+` FROM builds WHERE `+cond, args...))
		if noRows(err) {
			return ci.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get %s: %w", what, err)
	}
	return b, nil
}

// ListBuilds returns a page of the builds q selects, by ID, and how many it
// selects in all.
func (s *Store) ListBuilds(ctx context.Context, q ci.BuildQuery) ([]*ci.Build, int, error) {
	var conds []string
	var a args
	if q.BuilderID != 0 {
		conds = append(conds, "builder_id = "+a.add(q.BuilderID))
	}
	if q.WorkerID != 0 {
		conds = append(conds, "worker_id = "+a.add(q.WorkerID))
	}
	if q.Complete != nil {
		conds = append(conds, flagCond("complete", *q.Complete))
	}
	if q.ChangeID != 0 {
		conds = append(conds, fmt.Sprintf(changeBuilds, a.add(q.ChangeID)))
	}
	var list []*ci.Build
	var total int
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := count(ctx, tx, q.Query, `SELECT count(*) FROM builds`+where(conds), &total, a...); err != nil {
			return err
		}
		pa := slices.Clone(a)
		clause := page(q.Query, "id", &pa)
		rows, err := tx.Query(ctx, `SELECT `+buildCols+` FROM builds`+where(conds)+clause, pa...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanBuild)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list builds: %w", err)
	}
	return list, total, nil
}

// changeBuilds selects the builds made for a change (%s: its ID's
// placeholder): those whose first request, or any request they serve,
// belongs to a buildset whose source stamps list the change.
const changeBuilds = `id IN (
	WITH reqs AS (SELECT br.id, br.build_id FROM sourcestamp_changes AS sc
		JOIN buildset_sourcestamps AS bss ON bss.sourcestamp_id = sc.sourcestamp_id
		JOIN buildrequests AS br ON br.buildset_id = bss.buildset_id
		WHERE sc.change_id = %s)
	SELECT builds.id FROM builds WHERE buildrequest_id IN (SELECT id FROM reqs)
	UNION SELECT build_id FROM reqs WHERE build_id IS NOT NULL)`

// UnfinishedBuilds returns the builds started and not finished, by ID.
func (s *Store) UnfinishedBuilds(ctx context.Context) ([]*ci.Build, error) {
	var list []*ci.Build
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+buildCols+` FROM builds WHERE NOT complete ORDER BY id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanBuild)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: unfinished builds: %w", err)
	}
	return list, nil
}

// AddStep stores s, setting its ID.
func (s *Store) AddStep(ctx context.Context, st *ci.StepRecord) error {
	urls, err := urlsArg(st.URLs)
	if err != nil {
		return fmt.Errorf("postgres: add step: %w", err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error { return addStepTx(ctx, tx, st, urls) })
	if err != nil {
		return fmt.Errorf("postgres: add step: %w", err)
	}
	return nil
}

func addStepTx(ctx context.Context, tx pgx.Tx, st *ci.StepRecord, urls string) error {
	err := tx.QueryRow(ctx, `INSERT INTO steps (build_id, number, name, started_at, complete_at, complete,
		state_string, results, hidden, urls) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		st.BuildID, st.Number, st.Name, timeArg(st.StartedAt), timeArg(st.CompleteAt), st.Complete,
		st.StateString, int64(st.Results), st.Hidden, urls).Scan(&st.ID)
	return refErr(err)
}

// UpdateStep stores the state string, results, completion (flag and time),
// hidden flag and URLs of st.
func (s *Store) UpdateStep(ctx context.Context, st *ci.StepRecord) error {
	urls, err := urlsArg(st.URLs)
	if err != nil {
		return fmt.Errorf("postgres: update step: %w", err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error { return updateStepTx(ctx, tx, st, urls) })
	if err != nil {
		return fmt.Errorf("postgres: update step: %w", err)
	}
	return nil
}

func updateStepTx(ctx context.Context, tx pgx.Tx, st *ci.StepRecord, urls string) error {
	tag, err := tx.Exec(ctx, `UPDATE steps SET state_string = $1, results = $2, complete = $3, complete_at = $4,
		hidden = $5, urls = $6 WHERE id = $7`,
		st.StateString, int64(st.Results), st.Complete, timeArg(st.CompleteAt), st.Hidden, urls, st.ID)
	if err != nil {
		return err
	}
	return mustAffect(tag, "step", st.ID)
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
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		st, err = scanStep(tx.QueryRow(ctx, `SELECT `+stepCols+` FROM steps WHERE id = $1`, id))
		if noRows(err) {
			return notFound("step", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get step: %w", err)
	}
	return st, nil
}

// ListSteps returns the steps of a build, by number.
func (s *Store) ListSteps(ctx context.Context, buildID int64) ([]*ci.StepRecord, error) {
	var list []*ci.StepRecord
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+stepCols+` FROM steps WHERE build_id = $1 ORDER BY number, id`, buildID)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanStep)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list steps: %w", err)
	}
	return list, nil
}
