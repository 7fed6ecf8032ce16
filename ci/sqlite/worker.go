package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kilnci/kiln/ci"
)

// EnsureBuilder returns the builder called name, storing it first if
// needed. The description and tags of an existing builder are replaced with
// the given ones, so that they follow the configuration.
func (s *Store) EnsureBuilder(ctx context.Context, name, description string, tags []string) (*ci.Builder, error) {
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := jsonArg(tags)
	if err != nil {
		return nil, fmt.Errorf("sqlite: ensure builder %q: %w", name, err)
	}
	var b *ci.Builder
	err = s.write(ctx, func(tx *txn) error {
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO builders (name, description, tags) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET description = excluded.description, tags = excluded.tags
			RETURNING id`, name, description, tagsJSON).Scan(&id)
		if err != nil {
			return err
		}
		b, err = getBuilder(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: ensure builder %q: %w", name, err)
	}
	return b, nil
}

const builderCols = `id, name, description, tags`

func scanBuilder(row scanner) (*ci.Builder, error) {
	b := &ci.Builder{}
	if err := row.Scan(&b.ID, &b.Name, &b.Description, jsonCol{&b.Tags}); err != nil {
		return nil, err
	}
	if len(b.Tags) == 0 {
		b.Tags = nil
	}
	return b, nil
}

func getBuilder(ctx context.Context, tx *txn, id int64) (*ci.Builder, error) {
	b, err := scanBuilder(tx.QueryRowContext(ctx, `SELECT `+builderCols+` FROM builders WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("builder", id)
	}
	return b, err
}

// GetBuilder returns the builder with the given ID.
func (s *Store) GetBuilder(ctx context.Context, id int64) (*ci.Builder, error) {
	var b *ci.Builder
	err := s.read(ctx, func(tx *txn) (err error) {
		b, err = getBuilder(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get builder: %w", err)
	}
	return b, nil
}

// ListBuilders returns every builder, by ID.
func (s *Store) ListBuilders(ctx context.Context) ([]*ci.Builder, error) {
	var list []*ci.Builder
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+builderCols+` FROM builders ORDER BY id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanBuilder)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list builders: %w", err)
	}
	return list, nil
}

// EnsureWorker returns the worker called name, storing it first if needed.
func (s *Store) EnsureWorker(ctx context.Context, name string) (*ci.Worker, error) {
	var w *ci.Worker
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO workers (name) VALUES (?) ON CONFLICT (name) DO NOTHING`, name); err != nil {
			return err
		}
		var err error
		w, err = scanWorker(tx.QueryRowContext(ctx, `SELECT `+workerCols+` FROM workers WHERE name = ?`, name))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: ensure worker %q: %w", name, err)
	}
	return w, nil
}

const workerCols = `id, name, info, connected, changed_at`

func scanWorker(row scanner) (*ci.Worker, error) {
	w := &ci.Worker{}
	if err := row.Scan(&w.ID, &w.Name, jsonCol{&w.Info}, &w.Connected, timeCol{&w.ChangedAt}); err != nil {
		return nil, err
	}
	if len(w.Info) == 0 {
		w.Info = nil
	}
	return w, nil
}

// SetWorkerConnected records a worker connecting or disconnecting at the
// given time. A nil info keeps the last known info.
func (s *Store) SetWorkerConnected(ctx context.Context, id int64, connected bool, info map[string]any, at time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		var res sql.Result
		var err error
		if info == nil {
			res, err = tx.ExecContext(ctx, `UPDATE workers SET connected = ?, changed_at = ? WHERE id = ?`,
				connected, timeArg(at), id)
		} else {
			var infoJSON string
			if infoJSON, err = jsonArg(info); err != nil {
				return err
			}
			res, err = tx.ExecContext(ctx, `UPDATE workers SET connected = ?, changed_at = ?, info = ? WHERE id = ?`,
				connected, timeArg(at), infoJSON, id)
		}
		if err != nil {
			return err
		}
		return mustAffect(res, "worker", id)
	})
	if err != nil {
		return fmt.Errorf("sqlite: set worker connected: %w", err)
	}
	return nil
}

// GetWorker returns the worker with the given ID.
func (s *Store) GetWorker(ctx context.Context, id int64) (*ci.Worker, error) {
	var w *ci.Worker
	err := s.read(ctx, func(tx *txn) (err error) {
		w, err = scanWorker(tx.QueryRowContext(ctx, `SELECT `+workerCols+` FROM workers WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("worker", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get worker: %w", err)
	}
	return w, nil
}

// ListWorkers returns every worker, by ID.
func (s *Store) ListWorkers(ctx context.Context) ([]*ci.Worker, error) {
	var list []*ci.Worker
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+workerCols+` FROM workers ORDER BY id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanWorker)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list workers: %w", err)
	}
	return list, nil
}

// GetState returns the value stored under (object, key).
func (s *Store) GetState(ctx context.Context, object, key string) ([]byte, error) {
	var v []byte
	err := s.read(ctx, func(tx *txn) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM object_state WHERE object = ? AND key = ?`, object, key).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return ci.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get state %s/%s: %w", object, key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// SetState stores value under (object, key), replacing what was there.
func (s *Store) SetState(ctx context.Context, object, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	err := s.write(ctx, func(tx *txn) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO object_state (object, key, value) VALUES (?, ?, ?)
			ON CONFLICT (object, key) DO UPDATE SET value = excluded.value`, object, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: set state %s/%s: %w", object, key, err)
	}
	return nil
}

// scanAll scans every row with scan and closes rows.
func scanAll[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
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

// mustAffect returns a not-found error if res changed no row.
func mustAffect(res sql.Result, what string, id int64) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound(what, id)
	}
	return nil
}
