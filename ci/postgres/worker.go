package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnci/kiln/ci"
)

// EnsureBuilder returns the builder called name, storing it first if
// needed. The description and tags of an existing builder are replaced with
// the given ones, so that they follow the configuration. The upsert is one
// statement: masters ensuring the same builder at once get the same row.
func (s *Store) EnsureBuilder(ctx context.Context, name, description string, tags []string) (*ci.Builder, error) {
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := jsonArg(tags)
	if err != nil {
		return nil, fmt.Errorf("postgres: ensure builder %q: %w", name, err)
	}
	var b *ci.Builder
	err = s.write(ctx, func(tx pgx.Tx) error {
		var err error
		b, err = scanBuilder(tx.QueryRow(ctx, `INSERT INTO builders (name, description, tags) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET description = excluded.description, tags = excluded.tags
			RETURNING `+builderCols, name, description, tagsJSON))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: ensure builder %q: %w", name, err)
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

// GetBuilder returns the builder with the given ID.
func (s *Store) GetBuilder(ctx context.Context, id int64) (*ci.Builder, error) {
	var b *ci.Builder
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		b, err = scanBuilder(tx.QueryRow(ctx, `SELECT `+builderCols+` FROM builders WHERE id = $1`, id))
		if noRows(err) {
			return notFound("builder", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get builder: %w", err)
	}
	return b, nil
}

// ListBuilders returns every builder, by ID.
func (s *Store) ListBuilders(ctx context.Context) ([]*ci.Builder, error) {
	var list []*ci.Builder
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+builderCols+` FROM builders ORDER BY id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanBuilder)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list builders: %w", err)
	}
	return list, nil
}

// EnsureWorker returns the worker called name, storing it first if needed.
func (s *Store) EnsureWorker(ctx context.Context, name string) (*ci.Worker, error) {
	var w *ci.Worker
	err := s.write(ctx, func(tx pgx.Tx) error {
		// ON CONFLICT waits for a concurrent insert of the same name;
		// the SELECT, a statement of its own, then sees it.
		if _, err := tx.Exec(ctx, `INSERT INTO workers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, name); err != nil {
			return err
		}
		var err error
		w, err = scanWorker(tx.QueryRow(ctx, `SELECT `+workerCols+` FROM workers WHERE name = $1`, name))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: ensure worker %q: %w", name, err)
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		var tag pgconn.CommandTag
		var err error
		if info == nil {
			tag, err = tx.Exec(ctx, `UPDATE workers SET connected = $1, changed_at = $2 WHERE id = $3`,
				connected, timeArg(at), id)
		} else {
			var infoJSON string
			if infoJSON, err = jsonArg(info); err != nil {
				return err
			}
			tag, err = tx.Exec(ctx, `UPDATE workers SET connected = $1, changed_at = $2, info = $3 WHERE id = $4`,
				connected, timeArg(at), infoJSON, id)
		}
		if err != nil {
			return err
		}
		return mustAffect(tag, "worker", id)
	})
	if err != nil {
		return fmt.Errorf("postgres: set worker connected: %w", err)
	}
	return nil
}

// GetWorker returns the worker with the given ID.
func (s *Store) GetWorker(ctx context.Context, id int64) (*ci.Worker, error) {
	var w *ci.Worker
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		w, err = scanWorker(tx.QueryRow(ctx, `SELECT `+workerCols+` FROM workers WHERE id = $1`, id))
		if noRows(err) {
			return notFound("worker", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get worker: %w", err)
	}
	return w, nil
}

// ListWorkers returns every worker, by ID.
func (s *Store) ListWorkers(ctx context.Context) ([]*ci.Worker, error) {
	var list []*ci.Worker
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+workerCols+` FROM workers ORDER BY id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanWorker)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list workers: %w", err)
	}
	return list, nil
}

// GetState returns the value stored under (object, key).
func (s *Store) GetState(ctx context.Context, object, key string) ([]byte, error) {
	var v []byte
	err := s.read(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT value FROM object_state WHERE object = $1 AND key = $2`, object, key).Scan(&v)
		if noRows(err) {
			return ci.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get state %s/%s: %w", object, key, err)
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO object_state (object, key, value) VALUES ($1, $2, $3)
			ON CONFLICT (object, key) DO UPDATE SET value = excluded.value`, object, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: set state %s/%s: %w", object, key, err)
	}
	return nil
}
