package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/logchunk"
	"github.com/kilnci/kiln/internal/propjson"
)

// Logs are stored as ci/sqlite stores them (the chunks, slugs and
// compression of internal/logchunk), so that a database copied from SQLite
// reads the same.

// AddLog stores l, setting its ID and its slug, made from its name and
// unique within the step. The step's row is locked first, so that two
// logs of one name added at once get different slugs.
func (s *Store) AddLog(ctx context.Context, l *ci.Log) error {
	var slug string
	err := s.write(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT id FROM steps WHERE id = $1 FOR NO KEY UPDATE`, l.StepID).Scan(new(int64))
		if noRows(err) {
			return fmt.Errorf("%w: a referenced record does not exist (step %d)", ci.ErrNotFound, l.StepID)
		}
		if err != nil {
			return err
		}
		slug, err = addLogTx(ctx, tx, l)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: add log %q: %w", l.Name, err)
	}
	l.Slug, l.NumLines, l.Complete = slug, 0, false
	return nil
}

// addLogTx inserts l, setting its ID, and returns its slug: its name's,
// made unique within its step, whose row the transaction has locked.
func addLogTx(ctx context.Context, tx pgx.Tx, l *ci.Log) (string, error) {
	base := logchunk.Slug(l.Name)
	slug := base
	for n := 2; ; n++ {
		var taken int
		err := tx.QueryRow(ctx, `SELECT count(*) FROM logs WHERE step_id = $1 AND slug = $2`, l.StepID, slug).Scan(&taken)
		if err != nil {
			return "", err
		}
		if taken == 0 {
			break
		}
		suffix := "_" + strconv.Itoa(n)
		slug = base[:min(len(base), logchunk.MaxSlug-len(suffix))] + suffix
	}
	err := tx.QueryRow(ctx, `INSERT INTO logs (step_id, name, slug, type) VALUES ($1, $2, $3, $4) RETURNING id`,
		l.StepID, l.Name, slug, l.Type).Scan(&l.ID)
	return slug, refErr(err)
}

// AppendLog adds text, whole lines, to a log as one chunk (several for
// more than 64 KiB) and returns the numbers of the first and last lines
// added. It returns an error wrapping ci.ErrConflict if the log is
// complete.
func (s *Store) AppendLog(ctx context.Context, logID int64, text string) (first, last int, err error) {
	if text == "" {
		return 0, 0, fmt.Errorf("postgres: append to log %d: text is not whole lines", logID)
	}
	first, last, err = s.appendLog(ctx, logID, text, false)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: append to log %d: %w", logID, err)
	}
	return first, last, nil
}

// FinishLog appends the last lines of a log (text may be empty) and marks
// it complete, in one transaction. Finishing a complete log with no text
// does nothing.
func (s *Store) FinishLog(ctx context.Context, logID int64, text string) (first, last int, err error) {
	first, last, err = s.appendLog(ctx, logID, text, true)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: finish log %d: %w", logID, err)
	}
	return first, last, nil
}

// appendLog stores text (whole lines, or nothing) at the end of a log and,
// when finish is set, marks the log complete. With no text, first and last
// are -1. The log's row is locked while its chunks are added, so that
// appends to one log (from any master) number their lines one after the
// other; appends to different logs do not wait for each other.
func (s *Store) appendLog(ctx context.Context, logID int64, text string, finish bool) (first, last int, err error) {
	// Compress before taking the lock.
	chunks, err := logchunk.Make(text)
	if err != nil {
		return 0, 0, err
	}
	// The driver copies what it sends: the buffers are free once the
	// transaction is over.
	defer logchunk.Release(chunks)
	err = s.write(ctx, func(tx pgx.Tx) (err error) {
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
func appendLogTx(ctx context.Context, tx pgx.Tx, logID int64, chunks []logchunk.Chunk, finish bool) (first, last int, err error) {
	var n int
	var complete bool
	err = tx.QueryRow(ctx, `SELECT num_lines, complete FROM logs WHERE id = $1 FOR NO KEY UPDATE`, logID).Scan(&n, &complete)
	if noRows(err) {
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
	if len(chunks) == 0 {
		if _, err = tx.Exec(ctx, `UPDATE logs SET num_lines = $1, complete = $2 WHERE id = $3`, n, finish, logID); err != nil {
			return -1, -1, err
		}
		return -1, -1, nil
	}
	first = n
	size := 0
	batch := &pgx.Batch{}
	for _, c := range chunks {
		batch.Queue(`INSERT INTO logchunks (log_id, first_line, last_line, content, compressed)
			VALUES ($1, $2, $3, $4, $5)`, logID, n, n+c.Lines-1, c.Content, c.Compressed)
		n += c.Lines
		size += len(c.Content)
	}
	batch.Queue(`UPDATE log_bytes SET value = value + $1 WHERE shard = $2`, size, logID%logBytesShards)
	batch.Queue(`UPDATE logs SET num_lines = $1, complete = $2 WHERE id = $3`, n, finish, logID)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return -1, -1, err
	}
	return first, n - 1, nil
}

// A stepEnd is the end of a step made ready for a transaction: its URLs
// in their stored form and its logs' last lines compressed.
type stepEnd struct {
	st     *ci.StepRecord
	urls   string
	ends   []ci.LogEnd
	chunks [][]logchunk.Chunk
}

// prepareStepEnd makes the end of st ready, before any lock is taken;
// release gives the compression buffers back.
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
func (e *stepEnd) write(ctx context.Context, tx pgx.Tx) error {
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
// transaction (ci.StepLogStore). The new step's row is the transaction's
// own: no other can add a log to it meanwhile.
func (s *Store) AddStepLogs(ctx context.Context, prev *ci.StepRecord, ends []ci.LogEnd, st *ci.StepRecord, logs []*ci.Log) error {
	var e *stepEnd
	if prev != nil {
		var err error
		if e, err = prepareStepEnd(prev, ends); err != nil {
			return fmt.Errorf("postgres: finish step %d: %w", prev.ID, err)
		}
		defer e.release()
	}
	urls, err := urlsArg(st.URLs)
	if err != nil {
		return fmt.Errorf("postgres: add step: %w", err)
	}
	slugs := make([]string, len(logs))
	err = s.write(ctx, func(tx pgx.Tx) error {
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
		return fmt.Errorf("postgres: %w", err)
	}
	for i, l := range logs {
		l.Slug, l.NumLines, l.Complete = slugs[i], 0, false
	}
	return nil
}

// FinishStepAndBuild records the end of st (finishing its logs of ends) and
// the end of b as FinishBuild does, in one transaction, with the results
// of the buildsets it completes.
func (s *Store) FinishStepAndBuild(ctx context.Context, st *ci.StepRecord, ends []ci.LogEnd, b *ci.Build, resubmit bool) ([]ci.BuildsetResult, error) {
	e, err := prepareStepEnd(st, ends)
	if err != nil {
		return nil, fmt.Errorf("postgres: finish step %d: %w", st.ID, err)
	}
	defer e.release()
	propsJSON, err := propjson.Marshal(b.Properties)
	if err != nil {
		return nil, fmt.Errorf("postgres: finish build: properties: %w", err)
	}
	var done []ci.BuildsetResult
	err = s.write(ctx, func(tx pgx.Tx) error {
		done = nil
		if err := e.write(ctx, tx); err != nil {
			return fmt.Errorf("finish step %d: %w", st.ID, err)
		}
		ids, err := finishBuild(ctx, tx, b, &propsJSON, resubmit)
		if err != nil {
			return fmt.Errorf("finish build: %w", err)
		}
		for _, id := range ids {
			r := ci.BuildsetResult{ID: id}
			if err := tx.QueryRow(ctx, `SELECT results FROM buildsets WHERE id = $1`, id).Scan(nullInt[ci.Result]{&r.Results}); err != nil {
				return fmt.Errorf("finish build: buildset %d: %w", id, err)
			}
			done = append(done, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
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
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		l, err = scanLog(tx.QueryRow(ctx, `SELECT `+logCols+` FROM logs WHERE id = $1`, id))
		if noRows(err) {
			return notFound("log", id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get log: %w", err)
	}
	return l, nil
}

// ListLogs returns the logs of a step, by ID.
func (s *Store) ListLogs(ctx context.Context, stepID int64) ([]*ci.Log, error) {
	var list []*ci.Log
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+logCols+` FROM logs WHERE step_id = $1 ORDER BY id`, stepID)
		if err != nil {
			return err
		}
		list, err = scanAll(rows, scanLog)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list logs: %w", err)
	}
	return list, nil
}

// LogLines returns lines first to last (inclusive, from 0; last < 0 means
// to the end) of a log, reading only the chunks that hold them. Lines
// beyond the end are not returned.
func (s *Store) LogLines(ctx context.Context, logID int64, first, last int) (string, error) {
	first = max(first, 0)
	out := logchunk.Text{First: first}
	err := s.read(ctx, func(tx pgx.Tx) error {
		out = logchunk.Text{First: first}
		var n int
		err := tx.QueryRow(ctx, `SELECT num_lines FROM logs WHERE id = $1`, logID).Scan(&n)
		if noRows(err) {
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
		rows, err := tx.Query(ctx, `SELECT first_line, last_line, content, compressed FROM logchunks
			WHERE log_id = $1 AND first_line <= $3 AND first_line >= COALESCE((SELECT first_line FROM logchunks
				WHERE log_id = $1 AND first_line <= $2 ORDER BY first_line DESC LIMIT 1), 0)
			ORDER BY first_line`, logID, first, last)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var cfirst, clast int
			var content []byte
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
		return "", fmt.Errorf("postgres: read log %d: %w", logID, err)
	}
	return out.String(), nil
}
