package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci"
)

// AddChange stores c and a source stamp for it. When c.DedupKey names a
// stored change, c is filled from it instead and added is false.
//
// Changes are stored one at a time (an advisory lock held until the
// commit), so that their IDs are in commit order as with SQLite's single
// writer: a reader following changes by ID (ChangesAfter) never sees
// change n+1 before change n, and a dedup key is checked and stored by
// one master at a time.
func (s *Store) AddChange(ctx context.Context, c *ci.Change) (added bool, err error) {
	props := c.Properties
	if props == nil {
		props = map[string]any{}
	}
	propsJSON, err := jsonArg(props)
	if err != nil {
		return false, fmt.Errorf("postgres: add change: properties: %w", err)
	}
	var stored *ci.Change
	err = s.write(ctx, func(tx pgx.Tx) error {
		stored = nil
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, lockChanges); err != nil {
			return err
		}
		if c.DedupKey != "" {
			var id int64
			err := tx.QueryRow(ctx, `SELECT id FROM changes WHERE dedup_key = $1`, c.DedupKey).Scan(&id)
			if err == nil {
				stored, err = getChange(ctx, tx, id)
				return err
			}
			if !noRows(err) {
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
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO changes (author, committer, comments, branch, revision,
			revlink, when_at, category, repository, codebase, project, properties, dedup_key, sourcestamp_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id`,
			c.Author, c.Committer, c.Comments, c.Branch, c.Revision, c.RevLink, timeArg(c.When),
			c.Category, c.Repository, c.Codebase, c.Project, propsJSON, dedup, ss.ID).Scan(&id)
		if err != nil {
			return err
		}
		if len(c.Files) > 0 {
			_, err := tx.Exec(ctx, `INSERT INTO change_files (change_id, ord, filename)
				SELECT $1, f.ord - 1, f.name FROM unnest($2::text[]) WITH ORDINALITY AS f(name, ord)`, id, c.Files)
			if err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sourcestamp_changes (sourcestamp_id, change_id) VALUES ($1, $2)`, ss.ID, id); err != nil {
			return err
		}
		c.ID, c.SourceStampID = id, ss.ID
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("postgres: add change: %w", err)
	}
	if stored != nil {
		*c = *stored
		return false, nil
	}
	return true, nil
}

const changeCols = `id, author, committer, comments, branch, revision, revlink, when_at, category,
	repository, codebase, project, properties, COALESCE(dedup_key, ''), sourcestamp_id,
	ARRAY(SELECT filename FROM change_files WHERE change_id = changes.id ORDER BY ord)`

func scanChange(row scanner) (*ci.Change, error) {
	c := &ci.Change{}
	err := row.Scan(&c.ID, &c.Author, &c.Committer, &c.Comments, &c.Branch, &c.Revision, &c.RevLink,
		timeCol{&c.When}, &c.Category, &c.Repository, &c.Codebase, &c.Project, jsonCol{&c.Properties},
		&c.DedupKey, &c.SourceStampID, &c.Files)
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

func getChange(ctx context.Context, tx pgx.Tx, id int64) (*ci.Change, error) {
	c, err := scanChange(tx.QueryRow(ctx, `SELECT `+changeCols+` FROM changes WHERE id = $1`, id))
	if noRows(err) {
		return nil, notFound("change", id)
	}
	return c, err
}

// GetChange returns the change with the given ID.
func (s *Store) GetChange(ctx context.Context, id int64) (*ci.Change, error) {
	var c *ci.Change
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		c, err = getChange(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get change: %w", err)
	}
	return c, nil
}

// ListChanges returns a page of the changes, by ID, and how many there are
// in all.
func (s *Store) ListChanges(ctx context.Context, q ci.Query) ([]*ci.Change, int, error) {
	var list []*ci.Change
	var total int
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := count(ctx, tx, q, `SELECT count(*) FROM changes`, &total); err != nil {
			return err
		}
		var a args
		clause := page(q, "id", &a)
		rows, err := tx.Query(ctx, `SELECT `+changeCols+` FROM changes`+clause, a...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanChange)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list changes: %w", err)
	}
	return list, total, nil
}

// ChangesAfter returns up to limit changes with IDs above id, in order.
func (s *Store) ChangesAfter(ctx context.Context, id int64, limit int) ([]*ci.Change, error) {
	var list []*ci.Change
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+changeCols+` FROM changes WHERE id > $1 ORDER BY id LIMIT $2`, id, limit)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanChange)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: changes after %d: %w", id, err)
	}
	return list, nil
}

// insertSourceStamp stores ss with links to its changes and sets ss.ID.
func insertSourceStamp(ctx context.Context, tx pgx.Tx, ss *ci.SourceStamp) error {
	err := tx.QueryRow(ctx, `INSERT INTO sourcestamps (codebase, repository, branch, revision, project, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		ss.Codebase, ss.Repository, ss.Branch, ss.Revision, ss.Project, timeArg(ss.CreatedAt)).Scan(&ss.ID)
	if err != nil {
		return err
	}
	for _, id := range ss.Changes {
		_, err := tx.Exec(ctx, `INSERT INTO sourcestamp_changes (sourcestamp_id, change_id) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`, ss.ID, id)
		if err != nil {
			return refErr(err)
		}
	}
	return nil
}

const sourceStampCols = `id, codebase, repository, branch, revision, project, created_at,
	ARRAY(SELECT change_id FROM sourcestamp_changes WHERE sourcestamp_id = sourcestamps.id ORDER BY change_id)`

func scanSourceStamp(row scanner) (ci.SourceStamp, error) {
	var ss ci.SourceStamp
	err := row.Scan(&ss.ID, &ss.Codebase, &ss.Repository, &ss.Branch, &ss.Revision, &ss.Project,
		timeCol{&ss.CreatedAt}, &ss.Changes)
	if len(ss.Changes) == 0 {
		ss.Changes = nil
	}
	return ss, err
}

func getSourceStamp(ctx context.Context, tx pgx.Tx, id int64) (ci.SourceStamp, error) {
	ss, err := scanSourceStamp(tx.QueryRow(ctx, `SELECT `+sourceStampCols+` FROM sourcestamps WHERE id = $1`, id))
	if noRows(err) {
		return ss, notFound("source stamp", id)
	}
	return ss, err
}

// GetSourceStamp returns the source stamp with the given ID.
func (s *Store) GetSourceStamp(ctx context.Context, id int64) (ci.SourceStamp, error) {
	var ss ci.SourceStamp
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		ss, err = getSourceStamp(ctx, tx, id)
		return err
	})
	if err != nil {
		return ss, fmt.Errorf("postgres: get source stamp: %w", err)
	}
	return ss, nil
}

// ListSourceStamps returns a page of the source stamps, by ID, and how
// many there are in all.
func (s *Store) ListSourceStamps(ctx context.Context, q ci.Query) ([]ci.SourceStamp, int, error) {
	var list []ci.SourceStamp
	var total int
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := count(ctx, tx, q, `SELECT count(*) FROM sourcestamps`, &total); err != nil {
			return err
		}
		var a args
		clause := page(q, "id", &a)
		rows, err := tx.Query(ctx, `SELECT `+sourceStampCols+` FROM sourcestamps`+clause, a...)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanSourceStamp)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list source stamps: %w", err)
	}
	return list, total, nil
}
