package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci"
)

const testResultSetCols = `id, builder_id, build_id, step_id, description, category, value_unit,
	tests_passed, tests_failed, complete`

func scanTestResultSet(sc scanner) (*ci.TestResultSet, error) {
	var set ci.TestResultSet
	err := sc.Scan(&set.ID, &set.BuilderID, &set.BuildID, &set.StepID, &set.Description, &set.Category,
		&set.ValueUnit, &set.TestsPassed, &set.TestsFailed, &set.Complete)
	if err != nil {
		return nil, err
	}
	return &set, nil
}

const testResultCols = `id, test_result_set_id, builder_id, test_name, test_code_path, line, duration_ns, value`

func scanTestResult(sc scanner) (*ci.TestResult, error) {
	var r ci.TestResult
	var name, path *string
	var line *int
	if err := sc.Scan(&r.ID, &r.SetID, &r.BuilderID, &name, &path, &line, &r.DurationNS, &r.Value); err != nil {
		return nil, err
	}
	if name != nil {
		r.TestName = *name
	}
	if path != nil {
		r.TestCodePath = *path
	}
	if line != nil {
		r.Line = *line
	}
	return &r, nil
}

// strArg returns s, or nil (NULL) for "".
func strArg(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// AddTestResultSet stores set, incomplete, with the builder of its build.
func (s *Store) AddTestResultSet(ctx context.Context, set *ci.TestResultSet) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		var builderID int64
		err := tx.QueryRow(ctx, `SELECT b.builder_id FROM steps AS st JOIN builds AS b ON b.id = st.build_id
			WHERE st.id = $1 AND b.id = $2`, set.StepID, set.BuildID).Scan(&builderID)
		if noRows(err) {
			return fmt.Errorf("step %d of build %d: %w", set.StepID, set.BuildID, ci.ErrNotFound)
		}
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `INSERT INTO test_result_sets (builder_id, build_id, step_id, description,
			category, value_unit, tests_passed, tests_failed, complete) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false) RETURNING id`,
			builderID, set.BuildID, set.StepID, set.Description, set.Category, set.ValueUnit,
			set.TestsPassed, set.TestsFailed).Scan(&set.ID)
		if err != nil {
			return refErr(err)
		}
		set.BuilderID, set.Complete = builderID, false
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: add test result set: %w", err)
	}
	return nil
}

// lockSet locks an incomplete set's row and returns its builder; a
// complete set is a conflict.
func lockSet(ctx context.Context, tx pgx.Tx, setID int64) (int64, error) {
	var builderID int64
	var complete bool
	err := tx.QueryRow(ctx, `SELECT builder_id, complete FROM test_result_sets WHERE id = $1 FOR UPDATE`, setID).Scan(&builderID, &complete)
	if noRows(err) {
		return 0, notFound("test result set", setID)
	}
	if err != nil {
		return 0, err
	}
	if complete {
		return 0, fmt.Errorf("test result set %d is complete: %w", setID, ci.ErrConflict)
	}
	return builderID, nil
}

// AddTestResults stores results in an incomplete set, sent in one batch.
func (s *Store) AddTestResults(ctx context.Context, setID int64, results []*ci.TestResult) error {
	for i, r := range results {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("postgres: add test results: result %d: %w", i, err)
		}
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		builderID, err := lockSet(ctx, tx, setID)
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for _, r := range results {
			var line any
			if r.Line > 0 {
				line = r.Line
			}
			batch.Queue(`INSERT INTO test_results (test_result_set_id, builder_id, test_name, test_code_path, line,
				duration_ns, value) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
				setID, builderID, strArg(r.TestName), strArg(r.TestCodePath), line, r.DurationNS, r.Value)
		}
		br := tx.SendBatch(ctx, batch)
		for _, r := range results {
			if err := br.QueryRow().Scan(&r.ID); err != nil {
				br.Close()
				return err
			}
			r.SetID, r.BuilderID = setID, builderID
		}
		return br.Close()
	})
	if err != nil {
		for _, r := range results {
			r.ID = 0
		}
		return fmt.Errorf("postgres: add test results: %w", err)
	}
	return nil
}

// CompleteTestResultSet marks a set complete with its counts.
func (s *Store) CompleteTestResultSet(ctx context.Context, setID int64, passed, failed *int) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := lockSet(ctx, tx, setID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE test_result_sets SET complete = true, tests_passed = $1, tests_failed = $2 WHERE id = $3`,
			passed, failed, setID)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: complete test result set: %w", err)
	}
	return nil
}

// GetTestResultSet returns a set by ID.
func (s *Store) GetTestResultSet(ctx context.Context, id int64) (*ci.TestResultSet, error) {
	var set *ci.TestResultSet
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		set, err = scanTestResultSet(tx.QueryRow(ctx, `SELECT `+testResultSetCols+` FROM test_result_sets WHERE id = $1`, id))
		if noRows(err) {
			return notFound("test result set", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get test result set: %w", err)
	}
	return set, nil
}

// ListTestResultSets returns a page of the sets q selects.
func (s *Store) ListTestResultSets(ctx context.Context, q ci.TestResultSetQuery) ([]*ci.TestResultSet, int, error) {
	var conds []string
	var a args
	for _, c := range []struct {
		col string
		id  int64
	}{{"builder_id", q.BuilderID}, {"build_id", q.BuildID}, {"step_id", q.StepID}} {
		if c.id != 0 {
			conds = append(conds, c.col+" = "+a.add(c.id))
		}
	}
	if q.Complete != nil {
		conds = append(conds, flagCond("complete", *q.Complete))
	}
	var list []*ci.TestResultSet
	var total int
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := count(ctx, tx, q.Query, `SELECT count(*) FROM test_result_sets`+where(conds), &total, a...); err != nil {
			return err
		}
		pa := slices.Clone(a)
		clause := page(q.Query, "id", &pa)
		rows, err := tx.Query(ctx, `SELECT `+testResultSetCols+` FROM test_result_sets`+where(conds)+clause, pa...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanTestResultSet)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list test result sets: %w", err)
	}
	return list, total, nil
}

// ListTestResults returns a page of a set's results.
func (s *Store) ListTestResults(ctx context.Context, setID int64, q ci.Query) ([]*ci.TestResult, int, error) {
	var list []*ci.TestResult
	var total int
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := count(ctx, tx, q, `SELECT count(*) FROM test_results WHERE test_result_set_id = $1`, &total, setID); err != nil {
			return err
		}
		a := args{setID}
		clause := page(q, "id", &a)
		rows, err := tx.Query(ctx, `SELECT `+testResultCols+` FROM test_results WHERE test_result_set_id = $1`+clause, a...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanTestResult)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list test results: %w", err)
	}
	return list, total, nil
}

// TestNames returns a page of a builder's distinct test names.
func (s *Store) TestNames(ctx context.Context, builderID int64, q ci.Query) ([]string, int, error) {
	list, total, err := s.distinct(ctx, "test_name", builderID, q)
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: test names: %w", err)
	}
	return list, total, nil
}

// TestCodePaths returns a page of a builder's distinct test code paths.
func (s *Store) TestCodePaths(ctx context.Context, builderID int64, q ci.Query) ([]string, int, error) {
	list, total, err := s.distinct(ctx, "test_code_path", builderID, q)
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: test code paths: %w", err)
	}
	return list, total, nil
}

// distinct pages through the distinct values of a column of a builder's
// test results (col is one of the store's own column names), in byte
// order as SQLite's.
func (s *Store) distinct(ctx context.Context, col string, builderID int64, q ci.Query) ([]string, int, error) {
	list := []string{}
	var total int
	err := s.read(ctx, func(tx pgx.Tx) error {
		from := ` FROM test_results WHERE builder_id = $1 AND ` + col + ` IS NOT NULL`
		if err := count(ctx, tx, q, `SELECT count(DISTINCT `+col+`)`+from, &total, builderID); err != nil {
			return err
		}
		a := args{builderID}
		clause := page(q, col, &a) // the output column, in collation "C"
		rows, err := tx.Query(ctx, `SELECT DISTINCT `+col+` COLLATE "C" AS `+col+from+clause, a...)
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		list = append(list, got...)
		return nil
	})
	return list, total, err
}
