package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/logchunk"
	"github.com/kilnci/kiln/internal/propjson"
)

// AddLog stores l, setting its ID and its slug, made from its name and
// unique within the step.
func (s *Store) AddLog(ctx context.Context, l *ci.Log) error {
	var slug string
	err := s.writeSoon(ctx, func(tx *txn) (err error) {
		slug, err = addLogTx(ctx, tx, l)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: add log %q: %w", l.Name, err)
	}
	l.Slug, l.NumLines, l.Complete = slug, 0, false
	return nil
}

// addLogTx inserts l, setting its ID, and returns its slug: its name's,
// made unique within its step.
func addLogTx(ctx context.Context, tx *txn, l *ci.Log) (string, error) {
	base := logchunk.Slug(l.Name)
	slug := base
	for n := 2; ; n++ {
		// A slug the step has already fails the insert, which then
		// changes nothing, and the next suffix is tried.
		id, err := tx.insert(`INSERT INTO logs (step_id, name, slug, type, num_lines, complete)
			VALUES (?, ?, ?, ?, 0, 0)`, l.StepID, l.Name, slug, l.Type)
		if err == nil {
			l.ID = id
		}
		if !isConstraint(err, errUnique) {
			return slug, refErr(err)
		}
		suffix := "_" + strconv.Itoa(n)
		slug = base[:min(len(base), logchunk.MaxSlug-len(suffix))] + suffix
	}
}

// AppendLog adds text, whole lines, to a log as one chunk (several for
// more than 64 KiB) and returns the numbers of the first and last lines
// added. It returns an error wrapping ci.ErrConflict if the log is
// complete.
func (s *Store) AppendLog(ctx context.Context, logID int64, text string) (first, last int, err error) {
	if text == "" {
		return 0, 0, fmt.Errorf("sqlite: append to log %d: text is not whole lines", logID)
	}
	first, last, err = s.appendLog(ctx, logID, text, false)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: append to log %d: %w", logID, err)
	}
	return first, last, nil
}

// FinishLog appends the last lines of a log (text may be empty) and marks
// it complete, in one transaction. Finishing a complete log with no text
// does nothing.
func (s *Store) FinishLog(ctx context.Context, logID int64, text string) (first, last int, err error) {
	first, last, err = s.appendLog(ctx, logID, text, true)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: finish log %d: %w", logID, err)
	}
	return first, last, nil
}

// appendLog stores text (whole lines, or nothing) at the end of a log and,
// when finish is set, marks the log complete. With no text, first and last
// are -1.
func (s *Store) appendLog(ctx context.Context, logID int64, text string, finish bool) (first, last int, err error) {
	// Compress before taking the write lock.
	chunks, err := logchunk.Make(text)
	if err != nil {
		return 0, 0, err
	}
	// The driver copies what it inserts: the buffers are free once the
	// transaction is over.
	defer logchunk.Release(chunks)
	err = s.writeSoon(ctx, func(tx *txn) (err error) {
		first, last, err = appendLogTx(ctx, tx, logID, chunks, finish)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return first, last, nil
}

// appendLogTx stores chunks at the end of a log in tx and, when finish is
// set, marks the log complete. With no chunks, first and last are -1.
func appendLogTx(ctx context.Context, tx *txn, logID int64, chunks []logchunk.Chunk, finish bool) (first, last int, err error) {
	first, last = -1, -1
	var n int
	var complete bool
	err = tx.QueryRowContext(ctx, `SELECT num_lines, complete FROM logs WHERE id = ?`, logID).Scan(&n, &complete)
	if errors.Is(err, sql.ErrNoRows) {
		return -1, -1, ci.ErrNotFound
	}
	if err != nil {
		return -1, -1, err
	}
	if complete {
		if finish && len(chunks) == 0 {
			return -1, -1, nil
		}
		return -1, -1, fmt.Errorf("log is complete: %w", ci.ErrConflict)
	}
	if len(chunks) > 0 {
		first = n
		size := 0
		for _, c := range chunks {
			_, err := tx.ExecContext(ctx, `INSERT INTO logchunks (log_id, first_line, last_line, content, compressed)
				VALUES (?, ?, ?, ?, ?)`, logID, n, n+c.Lines-1, c.Content, c.Compressed)
			if err != nil {
				return -1, -1, err
			}
			n += c.Lines
			size += len(c.Content)
		}
		last = n - 1
		*tx.logBytes += int64(size)
	}
	if _, err = tx.ExecContext(ctx, `UPDATE logs SET num_lines = ?, complete = ? WHERE id = ?`, n, finish, logID); err != nil {
		return -1, -1, err
	}
	return first, last, nil
}

// A stepEnd is the end of a step made ready for a transaction: its URLs
// in their stored form and its logs' last lines compressed.
type stepEnd struct {
	st     *ci.StepRecord
	urls   string
	ends   []ci.LogEnd
	chunks [][]logchunk.Chunk
}

// prepareStepEnd makes the end of st ready, before the write lock is
// taken; release gives the compression buffers back.
func prepareStepEnd(st *ci.StepRecord, ends []ci.LogEnd) (*stepEnd, error) {
	urls, err := urlsArg(st.URLs)
	if err != nil {
		return nil, err
	}
	e := &stepEnd{st: st, urls: urls, ends: ends, chunks: make([][]logchunk.Chunk, len(ends))}
	for i, end := range ends {
		if e.chunks[i], err = logchunk.Make(end.Text); err != nil {
			e.release()
			return nil, fmt.Errorf("log %d: %w", end.LogID, err)
		}
	}
	return e, nil
}

func (e *stepEnd) release() {
	for _, c := range e.chunks {
		logchunk.Release(c)
	}
}

// write finishes the step's logs and stores its state in tx.
func (e *stepEnd) write(ctx context.Context, tx *txn) error {
	for i := range e.ends {
		first, last, err := appendLogTx(ctx, tx, e.ends[i].LogID, e.chunks[i], true)
		if err != nil {
			return fmt.Errorf("log %d: %w", e.ends[i].LogID, err)
		}
		e.ends[i].First, e.ends[i].Last = first, last
	}
	return updateStepTx(ctx, tx, e.st, e.urls)
}

// FinishStepAddStep records the end of prev (finishing its logs of ends)
// and stores next as AddStep does, in one transaction.
func (s *Store) FinishStepAddStep(ctx context.Context, prev *ci.StepRecord, ends []ci.LogEnd, next *ci.StepRecord) error {
	return s.AddStepLogs(ctx, prev, ends, next, nil)
}

// AddStepLogs stores st and its first logs, with the end of prev (and
// of its logs of ends) before them when prev is not nil, in one
// transaction (ci.StepLogStore).
func (s *Store) AddStepLogs(ctx context.Context, prev *ci.StepRecord, ends []ci.LogEnd, st *ci.StepRecord, logs []*ci.Log) error {
	var e *stepEnd
	if prev != nil {
		var err error
		if e, err = prepareStepEnd(prev, ends); err != nil {
			return fmt.Errorf("sqlite: finish step %d: %w", prev.ID, err)
		}
		defer e.release()
	}
	urls, err := urlsArg(st.URLs)
	if err != nil {
		return fmt.Errorf("sqlite: add step: %w", err)
	}
	slugs := make([]string, len(logs))
	err = s.writeSoon(ctx, func(tx *txn) error {
		if e != nil {
			if err := e.write(ctx, tx); err != nil {
				return fmt.Errorf("finish step %d: %w", prev.ID, err)
			}
		}
		if err := addStepTx(ctx, tx, st, urls); err != nil {
			return fmt.Errorf("add step: %w", err)
		}
		for i, l := range logs {
			l.StepID = st.ID
			var err error
			if slugs[i], err = addLogTx(ctx, tx, l); err != nil {
				return fmt.Errorf("add log %q: %w", l.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	for i, l := range logs {
		l.Slug, l.NumLines, l.Complete = slugs[i], 0, false
	}
	return nil
}

// FinishStepAndBuild records the end of st (finishing its logs of ends) and
// the end of b as FinishBuildResults does, in one transaction.
func (s *Store) FinishStepAndBuild(ctx context.Context, st *ci.StepRecord, ends []ci.LogEnd, b *ci.Build, resubmit bool) ([]ci.BuildsetResult, error) {
	e, err := prepareStepEnd(st, ends)
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish step %d: %w", st.ID, err)
	}
	defer e.release()
	propsJSON, err := propjson.Marshal(b.Properties)
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish build: properties: %w", err)
	}
	var done []ci.BuildsetResult
	err = s.write(ctx, func(tx *txn) (err error) {
		if err := e.write(ctx, tx); err != nil {
			return fmt.Errorf("finish step %d: %w", st.ID, err)
		}
		if done, err = finishBuildTx(ctx, tx, b, propsJSON, resubmit); err != nil {
			return fmt.Errorf("finish build: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	b.Complete = true
	return done, nil
}

const logCols = `id, step_id, name, slug, type, num_lines, complete`

func scanLog(row scanner) (*ci.Log, error) {
	l := &ci.Log{}
	if err := row.Scan(&l.ID, &l.StepID, &l.Name, &l.Slug, &l.Type, &l.NumLines, &l.Complete); err != nil {
		return nil, err
	}
	return l, nil
}

// GetLog returns the log with the given ID.
func (s *Store) GetLog(ctx context.Context, id int64) (*ci.Log, error) {
	var l *ci.Log
	err := s.read(ctx, func(tx *txn) (err error) {
		l, err = scanLog(tx.QueryRowContext(ctx, `SELECT `+logCols+` FROM logs WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("log", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get log: %w", err)
	}
	return l, nil
}

// ListLogs returns the logs of a step, by ID.
func (s *Store) ListLogs(ctx context.Context, stepID int64) ([]*ci.Log, error) {
	var list []*ci.Log
	err := s.read(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+logCols+` FROM logs WHERE step_id = ? ORDER BY id`, stepID)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanLog)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list logs: %w", err)
	}
	return list, nil
}

// LogLines returns lines first to last (inclusive, from 0; last < 0 means
// to the end) of a log, reading only the chunks that hold them. Lines
// beyond the end are not returned.
func (s *Store) LogLines(ctx context.Context, logID int64, first, last int) (string, error) {
	first = max(first, 0)
	out := logchunk.Text{First: first}
	err := s.read(ctx, func(tx *txn) error {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT num_lines FROM logs WHERE id = ?`, logID).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return ci.ErrNotFound
		}
		if err != nil {
			return err
		}
		if last < 0 || last >= n {
			last = n - 1
		}
		if first > last {
			return nil
		}
		out.Last = last
		// The chunks from the one holding line first (the last to start
		// at or before it) to the one holding line last.
		rows, err := tx.QueryContext(ctx, `SELECT first_line, last_line, content, compressed FROM logchunks
			WHERE log_id = ?1 AND first_line <= ?3 AND first_line >= COALESCE((SELECT first_line FROM logchunks
				WHERE log_id = ?1 AND first_line <= ?2 ORDER BY first_line DESC LIMIT 1), 0)
			ORDER BY first_line`, logID, first, last)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var cfirst, clast int
			var content sql.RawBytes // read before the next row
			var compressed bool
			if err := rows.Scan(&cfirst, &clast, &content, &compressed); err != nil {
				return err
			}
			if err := out.Add(cfirst, clast, content, compressed); err != nil {
				return fmt.Errorf("chunk at line %d: %w", cfirst, err)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return "", fmt.Errorf("sqlite: read log %d: %w", logID, err)
	}
	return out.String(), nil
}
