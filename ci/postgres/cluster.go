package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci"
)

var _ ci.ClusterStore = (*Store)(nil)

// lockSchedulers serialises ClaimSchedulers, so that the schedulers are
// claimed all or none.
const lockSchedulers = 3

const masterCols = `id, name, active, last_active`

func scanMaster(row scanner) (*ci.MasterRecord, error) {
	m := &ci.MasterRecord{}
	if err := row.Scan(&m.ID, &m.Name, &m.Active, timeCol{&m.LastActive}); err != nil {
		return nil, err
	}
	return m, nil
}

// RegisterMaster records the master called name as active, last active
// at at, and returns its record as it was before.
func (s *Store) RegisterMaster(ctx context.Context, name string, at time.Time) (*ci.MasterRecord, error) {
	var prev *ci.MasterRecord
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO masters (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, name)
		if err != nil {
			return err
		}
		prev, err = scanMaster(tx.QueryRow(ctx, `SELECT `+masterCols+` FROM masters WHERE name = $1 FOR UPDATE`, name))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE masters SET active = true, last_active = $1 WHERE id = $2`, timeArg(at), prev.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: register master %q: %w", name, err)
	}
	return prev, nil
}

// MasterHeartbeat records that master id is alive at at, unless another
// master marked it inactive (ci.ErrConflict).
func (s *Store) MasterHeartbeat(ctx context.Context, id int64, at time.Time) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE masters SET last_active = $1 WHERE id = $2 AND active`, timeArg(at), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			return nil
		}
		if _, err := s.getMaster(ctx, tx, id); err != nil {
			return err
		}
		return fmt.Errorf("master %d is marked inactive: %w", id, ci.ErrConflict)
	})
	if err != nil {
		return fmt.Errorf("postgres: master heartbeat: %w", err)
	}
	return nil
}

// StopMaster marks master id inactive and gives up its schedulers.
func (s *Store) StopMaster(ctx context.Context, id int64, at time.Time) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE masters SET active = false, last_active = $1 WHERE id = $2`, timeArg(at), id)
		if err != nil {
			return err
		}
		if err := mustAffect(tag, "master", id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE schedulers SET master_id = NULL WHERE master_id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: stop master: %w", err)
	}
	return nil
}

func (s *Store) getMaster(ctx context.Context, tx pgx.Tx, id int64) (*ci.MasterRecord, error) {
	m, err := scanMaster(tx.QueryRow(ctx, `SELECT `+masterCols+` FROM masters WHERE id = $1`, id))
	if noRows(err) {
		return nil, notFound("master", id)
	}
	return m, err
}

// GetMaster returns the master with the given ID.
func (s *Store) GetMaster(ctx context.Context, id int64) (*ci.MasterRecord, error) {
	var m *ci.MasterRecord
	err := s.read(ctx, func(tx pgx.Tx) error {
		var err error
		m, err = s.getMaster(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get master: %w", err)
	}
	return m, nil
}

// ListMasters returns every master recorded, by ID.
func (s *Store) ListMasters(ctx context.Context) ([]*ci.MasterRecord, error) {
	var list []*ci.MasterRecord
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+masterCols+` FROM masters ORDER BY id`)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanMaster)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list masters: %w", err)
	}
	return list, nil
}

// CloseMasterBuilds finishes the unfinished builds of master id (and
// those that record no master, when no other master is active) as RETRY.
func (s *Store) CloseMasterBuilds(ctx context.Context, id int64, at time.Time, state string) ([]*ci.Build, error) {
	var closed []*ci.Build
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		closed, err = closeBuilds(ctx, tx, `master_id = $1 OR (master_id IS NULL AND NOT EXISTS
			(SELECT 1 FROM masters WHERE active AND id <> $1))`, id, at, state)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: close the builds of master %d: %w", id, err)
	}
	return closed, nil
}

// ExpireMaster marks master id inactive and closes its builds if it is
// active with a heartbeat before staleBefore. Its row is locked FOR
// UPDATE SKIP LOCKED: a master expiring it at the same time, or the
// master itself heartbeating, makes this call give up (expired false).
func (s *Store) ExpireMaster(ctx context.Context, id int64, staleBefore, at time.Time, state string) (bool, []*ci.Build, error) {
	var closed []*ci.Build
	expired := false
	err := s.write(ctx, func(tx pgx.Tx) error {
		closed, expired = nil, false
		var got int64
		// FOR NO KEY UPDATE: not held up by the key-share locks that
		// references to the master take (a build it is starting).
		err := tx.QueryRow(ctx, `SELECT id FROM masters WHERE id = $1 AND active AND last_active < $2
			FOR NO KEY UPDATE SKIP LOCKED`, id, staleBefore).Scan(&got)
		if noRows(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE masters SET active = false WHERE id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE schedulers SET master_id = NULL WHERE master_id = $1`, id); err != nil {
			return err
		}
		closed, err = closeBuilds(ctx, tx, `master_id = $1`, id, at, state)
		expired = err == nil
		return err
	})
	if err != nil {
		return false, nil, fmt.Errorf("postgres: expire master %d: %w", id, err)
	}
	return expired, closed, nil
}

// closeBuilds finishes the unfinished builds cond selects ($1 is id) as
// RETRY, their requests going back to pending. The builds are locked as
// they are read: one that its master finishes meanwhile is waited for and
// then left out (it is complete), instead of failing the whole call.
func closeBuilds(ctx context.Context, tx pgx.Tx, cond string, id int64, at time.Time, state string) ([]*ci.Build, error) {
	rows, err := tx.Query(ctx, `SELECT `+buildCols+` FROM builds WHERE NOT complete AND (`+cond+`) ORDER BY id FOR UPDATE`, id)
	if err != nil {
		return nil, err
	}
	builds, err := scanAll(rows, scanBuild)
	if err != nil {
		return nil, err
	}
	for _, b := range builds {
		b.Results, b.CompleteAt, b.StateString = ci.Retry, at, state
		if _, err := finishBuild(ctx, tx, b, nil, true); err != nil {
			return nil, fmt.Errorf("build %d: %w", b.ID, err)
		}
		b.Complete = true
	}
	return builds, nil
}

// ClaimSchedulers claims the schedulers called names for master masterID,
// all or none, under an advisory lock that makes masters claim one at a
// time. Rows held by a master that is not active are free.
func (s *Store) ClaimSchedulers(ctx context.Context, masterID int64, names []string) (bool, error) {
	owned := false
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, lockSchedulers); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schedulers (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING`, names); err != nil {
			return err
		}
		var others int
		err := tx.QueryRow(ctx, `SELECT count(*) FROM schedulers s JOIN masters m ON m.id = s.master_id
			WHERE s.name = ANY($1) AND s.master_id <> $2 AND m.active`, names, masterID).Scan(&others)
		if err != nil {
			return err
		}
		if others > 0 {
			return nil
		}
		// The claim holds while the master is active.
		var active bool
		if err := tx.QueryRow(ctx, `SELECT active FROM masters WHERE id = $1`, masterID).Scan(&active); err != nil {
			if noRows(err) {
				return notFound("master", masterID)
			}
			return err
		}
		if !active {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE schedulers SET master_id = $1 WHERE name = ANY($2) AND master_id IS DISTINCT FROM $1`, masterID, names); err != nil {
			return err
		}
		owned = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("postgres: claim schedulers: %w", err)
	}
	return owned, nil
}
