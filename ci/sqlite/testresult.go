package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/kilnci/kiln/ci"
)

const testResultSetCols = `id, builder_id, build_id, step_id, description, category, value_unit,
	tests_passed, tests_failed, complete`

func scanTestResultSet(sc scanner) (*ci.TestResultSet, error) {
	var set ci.TestResultSet
	var passed, failed sql.NullInt64
	err := sc.Scan(&set.ID, &set.BuilderID, &set.BuildID, &set.StepID, &set.Description, &set.Category,
		&set.ValueUnit, &passed, &failed, &set.Complete)
	if err != nil {
		return nil, err
	}
	set.TestsPassed, set.TestsFailed = intPtr(passed), intPtr(failed)
	return &set, nil
}

func intPtr(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	v := int(n.Int64)
	return &v
}

// ptrArg returns *p, or nil (NULL) for a nil pointer.
func ptrArg[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

const testResultCols = `id, test_result_set_id, builder_id, test_name, test_code_path, line, duration_ns, value`

func scanTestResult(sc scanner) (*ci.TestResult, error) {
	var r ci.TestResult
	var name, path sql.NullString
	var line, duration sql.NullInt64
	if err := sc.Scan(&r.ID, &r.SetID, &r.BuilderID, &name, &path, &line, &duration, &r.Value); err != nil {
		return nil, err
	}
	r.TestName, r.TestCodePath, r.Line = name.String, path.String, int(line.Int64)
	if duration.Valid {
		r.DurationNS = &duration.Int64
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
	err := s.write(ctx, func(tx *txn) error {
		var builderID int64
		err := tx.QueryRowContext(ctx, `SELECT b.builder_id FROM steps AS st JOIN builds AS b ON b.id = st.build_id
			WHERE st.id = ? AND b.id = ?`, set.StepID, set.BuildID).Scan(&builderID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("step %d of build %d: %w", set.StepID, set.BuildID, ci.ErrNotFound)
		}
		if err != nil {
			return err
		}
		set.ID, err = tx.insert(`INSERT INTO test_result_sets (builder_id, build_id, step_id, description,
			category, value_unit, tests_passed, tests_failed, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			builderID, set.BuildID, set.StepID, set.Description, set.Category, set.ValueUnit,
			ptrArg(set.TestsPassed), ptrArg(set.TestsFailed))
		if err != nil {
			return refErr(err)
		}
		set.BuilderID, set.Complete = builderID, false
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: add test result set: %w", err)
	}
	return nil
}

// AddTestResults stores results in an incomplete set.
func (s *Store) AddTestResults(ctx context.Context, setID int64, results []*ci.TestResult) error {
	for i, r := range results {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("sqlite: add test results: result %d: %w", i, err)
		}
	}
	err := s.write(ctx, func(tx *txn) error {
		var builderID int64
		var complete bool
		err := tx.QueryRowContext(ctx, `SELECT builder_id, complete FROM test_result_sets WHERE id = ?`, setID).Scan(&builderID, &complete)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("test result set", setID)
		}
		if err != nil {
			return err
		}
		if complete {
			return fmt.Errorf("test result set %d is complete: %w", setID, ci.ErrConflict)
		}
		for _, r := range results {
			var err error
			r.ID, err = tx.insert(`INSERT INTO test_results (test_result_set_id, builder_id, test_name,
				test_code_path, line, duration_ns, value) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				setID, builderID, strArg(r.TestName), strArg(r.TestCodePath), idArg(int64(r.Line)),
				ptrArg(r.DurationNS), r.Value)
			if err != nil {
				return err
			}
			r.SetID, r.BuilderID = setID, builderID
		}
		return nil
	})
	if err != nil {
		for _, r := range results {
			r.ID = 0
		}
		return fmt.Errorf("sqlite: add test results: %w", err)
	}
	return nil
}

// CompleteTestResultSet marks a set complete with its counts.
func (s *Store) CompleteTestResultSet(ctx context.Context, setID int64, passed, failed *int) error {
	err := s.write(ctx, func(tx *txn) error {
		var complete bool
		err := tx.QueryRowContext(ctx, `SELECT complete FROM test_result_sets WHERE id = ?`, setID).Scan(&complete)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("test result set", setID)
		}
		if err != nil {
			return err
		}
		if complete {
			return fmt.Errorf("test result set %d is complete: %w", setID, ci.ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `UPDATE test_result_sets SET complete = 1, tests_passed = ?, tests_failed = ? WHERE id = ?`,
			ptrArg(passed), ptrArg(failed), setID)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: complete test result set: %w", err)
	}
	return nil
}

// GetTestResultSet returns a set by ID.
func (s *Store) GetTestResultSet(ctx context.Context, id int64) (*ci.TestResultSet, error) {
	var set *ci.TestResultSet
	err := s.read(ctx, func(tx *txn) (err error) {
		set, err = scanTestResultSet(tx.QueryRowContext(ctx, `SELECT `+testResultSetCols+` FROM test_result_sets WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("test result set", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get test result set: %w", err)
	}
	return set, nil
}

// ListTestResultSets returns a page of the sets q selects.
func (s *Store) ListTestResultSets(ctx context.Context, q ci.TestResultSetQuery) ([]*ci.TestResultSet, int, error) {
	var conds []string
	var args []any
	for _, c := range []struct {
		col string
		id  int64
	}{{"builder_id", q.BuilderID}, {"build_id", q.BuildID}, {"step_id", q.StepID}} {
		if c.id != 0 {
			conds, args = append(conds, c.col+" = ?"), append(args, c.id)
		}
	}
	if q.Complete != nil {
		conds = append(conds, flagCond("complete", *q.Complete))
	}
	var list []*ci.TestResultSet
	var total int
	err := s.read(ctx, func(tx *txn) error {
		if err := count(ctx, tx, q.Query, `SELECT COUNT(*) FROM test_result_sets`+where(conds), &total, args...); err != nil {
			return err
		}
		clause, pargs := page(q.Query, "id")
		rows, err := tx.QueryContext(ctx, `SELECT `+testResultSetCols+` FROM test_result_sets`+where(conds)+clause, append(args, pargs...)...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanTestResultSet)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list test result sets: %w", err)
	}
	return list, total, nil
}

// ListTestResults returns a page of a set's results.
func (s *Store) ListTestResults(ctx context.Context, setID int64, q ci.Query) ([]*ci.TestResult, int, error) {
	var list []*ci.TestResult
	var total int
	err := s.read(ctx, func(tx *txn) error {
		if err := count(ctx, tx, q, `SELECT COUNT(*) FROM test_results WHERE test_result_set_id = ?`, &total, setID); err != nil {
			return err
		}
		clause, pargs := page(q, "id")
		rows, err := tx.QueryContext(ctx, `SELECT `+testResultCols+` FROM test_results WHERE test_result_set_id = ?`+clause,
			append([]any{setID}, pargs...)...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanTestResult)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list test results: %w", err)
	}
	return list, total, nil
}

// TestNames returns a page of a builder's distinct test names.
func (s *Store) TestNames(ctx context.Context, builderID int64, q ci.Query) ([]string, int, error) {
	list, total, err := s.distinct(ctx, "test_name", builderID, q)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: test names: %w", err)
	}
	return list, total, nil
}

// TestCodePaths returns a page of a builder's distinct test code paths.
func (s *Store) TestCodePaths(ctx context.Context, builderID int64, q ci.Query) ([]string, int, error) {
	list, total, err := s.distinct(ctx, "test_code_path", builderID, q)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: test code paths: %w", err)
	}
	return list, total, nil
}

// distinct pages through the distinct values of a column of a builder's
// test results (col is one of the store's own column names).
func (s *Store) distinct(ctx context.Context, col string, builderID int64, q ci.Query) ([]string, int, error) {
	list := []string{}
	var total int
	err := s.read(ctx, func(tx *txn) error {
		from := ` FROM test_results WHERE builder_id = ? AND ` + col + ` IS NOT NULL`
		if err := count(ctx, tx, q, `SELECT COUNT(DISTINCT `+col+`)`+from, &total, builderID); err != nil {
			return err
		}
		clause, pargs := page(q, col)
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT `+col+from+clause, append([]any{builderID}, pargs...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return err
			}
			list = append(list, v)
		}
		return rows.Err()
	})
	return list, total, err
}
