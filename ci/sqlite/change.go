package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/kilnci/kiln/ci"
)

// AddChange stores c and a source stamp for it. When c.DedupKey names a
// stored change, c is filled from it instead and added is false.
func (s *Store) AddChange(ctx context.Context, c *ci.Change) (added bool, err error) {
	props := c.Properties
	if props == nil {
		props = map[string]any{}
	}
	propsJSON, err := jsonArg(props)
	if err != nil {
		return false, fmt.Errorf("sqlite: add change: properties: %w", err)
	}
	var stored *ci.Change
	err = s.write(ctx, func(tx *txn) error {
		if c.DedupKey != "" {
			var id int64
			err := tx.QueryRowContext(ctx, `SELECT id FROM changes WHERE dedup_key = ?`, c.DedupKey).Scan(&id)
			if err == nil {
				stored, err = getChange(ctx, tx, id)
				return err
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		ss := c.SourceStamp()
		ss.Changes = nil
		ss.CreatedAt = s.now()
		if err := insertSourceStamp(ctx, tx, &ss); err != nil {
			return err
		}
		var dedup any
		if c.DedupKey != "" {
			dedup = c.DedupKey
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO changes (author, committer, comments, branch, revision,
			revlink, when_at, category, repository, codebase, project, properties, dedup_key, sourcestamp_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.Author, c.Committer, c.Comments, c.Branch, c.Revision, c.RevLink, timeArg(c.When),
			c.Category, c.Repository, c.Codebase, c.Project, propsJSON, dedup, ss.ID)
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		for i, f := range c.Files {
			if _, err := tx.ExecContext(ctx, `INSERT INTO change_files (change_id, ord, filename) VALUES (?, ?, ?)`, id, i, f); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sourcestamp_changes (sourcestamp_id, change_id) VALUES (?, ?)`, ss.ID, id); err != nil {
			return err
		}
		c.ID, c.SourceStampID = id, ss.ID
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: add change: %w", err)
	}
	if stored != nil {
		*c = *stored
		return false, nil
	}
	return true, nil
}

const changeCols = `id, author, committer, comments, branch, revision, revlink, when_at, category,
	repository, codebase, project, properties, COALESCE(dedup_key, ''), sourcestamp_id,
	(SELECT json_group_array(filename ORDER BY ord) FROM change_files WHERE change_id = changes.id)`

func scanChange(row scanner) (*ci.Change, error) {
	c := &ci.Change{}
	err := row.Scan(&c.ID, &c.Author, &c.Committer, &c.Comments, &c.Branch, &c.Revision, &c.RevLink,
		timeCol{&c.When}, &c.Category, &c.Repository, &c.Codebase, &c.Project, jsonCol{&c.Properties},
		&c.DedupKey, &c.SourceStampID, jsonCol{&c.Files})
	if err != nil {
		return nil, err
	}
	if len(c.Files) == 0 {
		c.Files = nil
	}
	if len(c.Properties) == 0 {
		c.Properties = nil
	}
	return c, nil
}

func getChange(ctx context.Context, tx *txn, id int64) (*ci.Change, error) {
	c, err := scanChange(tx.QueryRowContext(ctx, `SELECT `+changeCols+` FROM changes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("change", id)
	}
	return c, err
}

// GetChange returns the change with the given ID.
func (s *Store) GetChange(ctx context.Context, id int64) (*ci.Change, error) {
	var c *ci.Change
	err := s.read(ctx, func(tx *txn) (err error) {
		c, err = getChange(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get change: %w", err)
	}
	return c, nil
}

// ListChanges returns a page of the changes, by ID, and how many there are
// in all.
func (s *Store) ListChanges(ctx context.Context, q ci.Query) ([]*ci.Change, int, error) {
	var list []*ci.Change
	var total int
	err := s.read(ctx, func(tx *txn) error {
		if err := count(ctx, tx, q, `SELECT COUNT(*) FROM changes`, &total); err != nil {
			return err
		}
		clause, args := page(q, "id")
		rows, err := tx.QueryContext(ctx, `SELECT `+changeCols+` FROM changes`+clause, args...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanChange)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list changes: %w", err)
	}
	return list, total, nil
}

// ChangesAfter returns up to limit changes with IDs above id, in order.
func (s *Store) ChangesAfter(ctx context.Context, id int64, limit int) ([]*ci.Change, error) {
	var list []*ci.Change
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+changeCols+` FROM changes WHERE id > ? ORDER BY id LIMIT ?`, id, limit)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanChange)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: changes after %d: %w", id, err)
	}
	return list, nil
}

// insertSourceStamp stores ss with links to its changes and sets ss.ID.
func insertSourceStamp(ctx context.Context, tx *txn, ss *ci.SourceStamp) error {
	var err error
	ss.ID, err = tx.insert(`INSERT INTO sourcestamps (codebase, repository, branch, revision, project, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		ss.Codebase, ss.Repository, ss.Branch, ss.Revision, ss.Project, timeArg(ss.CreatedAt))
	if err != nil {
		return err
	}
	for _, id := range ss.Changes {
		_, err := tx.ExecContext(ctx, `INSERT INTO sourcestamp_changes (sourcestamp_id, change_id) VALUES (?, ?)
			ON CONFLICT DO NOTHING`, ss.ID, id)
		if err != nil {
			return refErr(err)
		}
	}
	return nil
}

const sourceStampCols = `id, codebase, repository, branch, revision, project, created_at,
	(SELECT json_group_array(change_id ORDER BY change_id) FROM sourcestamp_changes WHERE sourcestamp_id = sourcestamps.id)`

func scanSourceStamp(row scanner) (ci.SourceStamp, error) {
	var ss ci.SourceStamp
	err := row.Scan(&ss.ID, &ss.Codebase, &ss.Repository, &ss.Branch, &ss.Revision, &ss.Project,
		timeCol{&ss.CreatedAt}, jsonCol{&ss.Changes})
	if len(ss.Changes) == 0 {
		ss.Changes = nil
	}
	return ss, err
}

func getSourceStamp(ctx context.Context, tx *txn, id int64) (ci.SourceStamp, error) {
	ss, err := scanSourceStamp(tx.QueryRowContext(ctx, `SELECT `+sourceStampCols+` FROM sourcestamps WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ss, notFound("source stamp", id)
	}
	return ss, err
}

// GetSourceStamp returns the source stamp with the given ID.
func (s *Store) GetSourceStamp(ctx context.Context, id int64) (ci.SourceStamp, error) {
	var ss ci.SourceStamp
	err := s.read(ctx, func(tx *txn) (err error) {
		ss, err = getSourceStamp(ctx, tx, id)
		return err
	})
	if err != nil {
		return ss, fmt.Errorf("sqlite: get source stamp: %w", err)
	}
	return ss, nil
}

// ListSourceStamps returns a page of the source stamps, by ID, and how
// many there are in all.
func (s *Store) ListSourceStamps(ctx context.Context, q ci.Query) ([]ci.SourceStamp, int, error) {
	var list []ci.SourceStamp
	var total int
	err := s.read(ctx, func(tx *txn) error {
		if err := count(ctx, tx, q, `SELECT COUNT(*) FROM sourcestamps`, &total); err != nil {
			return err
		}
		clause, args := page(q, "id")
		rows, err := tx.QueryContext(ctx, `SELECT `+sourceStampCols+` FROM sourcestamps`+clause, args...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanSourceStamp)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list source stamps: %w", err)
	}
	return list, total, nil
}
