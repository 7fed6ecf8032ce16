package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/kilnci/kiln/ci"
)

// Log chunking.
const (
	// maxChunk is the most bytes of text one chunk holds, unless a single
	// line is longer.
	maxChunk = 64 << 10
	// compressMin is the size from which a chunk is compressed.
	compressMin = 256
	// maxSlug is the longest slug made from a log's name.
	maxSlug = 50
)

// AddLog stores l, setting its ID and its slug, made from its name and
// unique within the step.
func (s *Store) AddLog(ctx context.Context, l *ci.Log) error {
	base := slugify(l.Name)
	var slug string
	err := s.write(ctx, func(tx *txn) error {
		slug = base
		for n := 2; ; n++ {
			var taken int
			err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM logs WHERE step_id = ? AND slug = ?`, l.StepID, slug).Scan(&taken)
			if err != nil {
				return err
			}
			if taken == 0 {
				break
			}
			suffix := "_" + strconv.Itoa(n)
			slug = base[:min(len(base), maxSlug-len(suffix))] + suffix
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO logs (step_id, name, slug, type, num_lines, complete)
			VALUES (?, ?, ?, ?, 0, 0) RETURNING id`, l.StepID, l.Name, slug, l.Type).Scan(&l.ID)
		return refErr(err)
	})
	if err != nil {
		return fmt.Errorf("sqlite: add log %q: %w", l.Name, err)
	}
	l.Slug, l.NumLines, l.Complete = slug, 0, false
	return nil
}

// slugify makes a slug from a log's name as Buildbot does: characters
// other than ASCII letters, digits, '_' and '-' become '_', as does a
// leading digit, and the result is cut to maxSlug bytes.
func slugify(name string) string {
	var b strings.Builder
	for i := 0; i < len(name) && b.Len() < maxSlug; {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-':
			b.WriteByte(c)
		case c >= '0' && c <= '9' && b.Len() > 0:
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
		if c < 0x80 {
			i++
			continue
		}
		// One '_' for a whole multi-byte character.
		for i++; i < len(name) && name[i]&0xC0 == 0x80; i++ {
		}
	}
	if b.Len() == 0 {
		return "log"
	}
	return b.String()
}

// A chunk is some whole lines of a log, as stored.
type chunk struct {
	lines      int
	content    []byte
	compressed bool
	buf        *[]byte // from chunkBuffers, holding content
}

// Chunks are compressed with zlib (RFC 1950), as the standard library's
// compress/zlib writes and reads it, but with klauspost/compress's
// implementation of the same format: at BestSpeed it compresses log text
// about three times as fast, which matters as a log written fast is
// compressed as it arrives, on the master. The stored format is the
// same: chunks written by earlier versions read as before, and theirs by
// this one.
var zlibWriters = sync.Pool{New: func() any {
	w, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed)
	return w
}}

// chunkBuffers keeps the buffers chunks are made in: a chunk's content is
// only needed until it is inserted, and a log written fast makes many.
var chunkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxChunk+maxChunk/8); return &b }}

// releaseChunks gives the chunks' buffers back to chunkBuffers: their
// content must no longer be used.
func releaseChunks(chunks []chunk) {
	for i := range chunks {
		if b := chunks[i].buf; b != nil && cap(*b) <= 2*maxChunk {
			*b = (*b)[:0]
			chunkBuffers.Put(b)
		}
		chunks[i].buf, chunks[i].content = nil, nil
	}
}

// makeChunks cuts text, whole lines, into chunks of at most maxChunk bytes
// (a longer line makes a chunk of its own) and compresses those worth it.
// The chunks' content is in buffers that releaseChunks gives back.
func makeChunks(text string) ([]chunk, error) {
	var chunks []chunk
	for text != "" {
		end, lines := 0, 0
		for end < len(text) {
			i := strings.IndexByte(text[end:], '\n')
			if lines > 0 && end+i+1 > maxChunk {
				break
			}
			end += i + 1
			lines++
		}
		buf := chunkBuffers.Get().(*[]byte)
		*buf = append((*buf)[:0], text[:end]...)
		text = text[end:]
		c := chunk{lines: lines, content: *buf, buf: buf}
		if len(c.content) >= compressMin {
			zbuf := chunkBuffers.Get().(*[]byte)
			out := bytes.NewBuffer((*zbuf)[:0])
			w := zlibWriters.Get().(*zlib.Writer)
			w.Reset(out)
			w.Write(c.content)
			err := w.Close()
			zlibWriters.Put(w)
			*zbuf = out.Bytes()
			if err == nil && len(*zbuf) < len(c.content) {
				c.content, c.compressed, c.buf, zbuf = *zbuf, true, zbuf, buf
			}
			releaseChunks([]chunk{{buf: zbuf}})
			if err != nil {
				releaseChunks(append(chunks, c))
				return nil, err
			}
		}
		chunks = append(chunks, c)
	}
	return chunks, nil
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
	if text != "" && text[len(text)-1] != '\n' {
		return 0, 0, errors.New("text is not whole lines")
	}
	// Compress before taking the write lock.
	var chunks []chunk
	if text != "" {
		if chunks, err = makeChunks(text); err != nil {
			return 0, 0, err
		}
		// The driver copies what it inserts: the buffers are free once
		// the transaction is over.
		defer releaseChunks(chunks)
	}
	first, last = -1, -1
	err = s.write(ctx, func(tx *txn) error {
		var n int
		var complete bool
		err := tx.QueryRowContext(ctx, `SELECT num_lines, complete FROM logs WHERE id = ?`, logID).Scan(&n, &complete)
		if errors.Is(err, sql.ErrNoRows) {
			return ci.ErrNotFound
		}
		if err != nil {
			return err
		}
		if complete {
			if finish && len(chunks) == 0 {
				return nil
			}
			return fmt.Errorf("log is complete: %w", ci.ErrConflict)
		}
		if len(chunks) > 0 {
			first = n
			size := 0
			for _, c := range chunks {
				_, err := tx.ExecContext(ctx, `INSERT INTO logchunks (log_id, first_line, last_line, content, compressed)
					VALUES (?, ?, ?, ?, ?)`, logID, n, n+c.lines-1, c.content, c.compressed)
				if err != nil {
					return err
				}
				n += c.lines
				size += len(c.content)
			}
			last = n - 1
			if _, err := tx.ExecContext(ctx, `UPDATE store_stats SET value = value + ? WHERE key = 'log_bytes'`, size); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE logs SET num_lines = ?, complete = ? WHERE id = ?`, n, finish, logID)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return first, last, nil
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
	var out strings.Builder
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
			var content []byte
			var compressed bool
			if err := rows.Scan(&cfirst, &clast, &content, &compressed); err != nil {
				return err
			}
			if compressed {
				if content, err = inflate(content); err != nil {
					return fmt.Errorf("chunk at line %d: %w", cfirst, err)
				}
			}
			text, err := chunkLines(content, max(first, cfirst)-cfirst, min(last, clast)-cfirst)
			if err != nil {
				return fmt.Errorf("chunk at line %d: %w", cfirst, err)
			}
			out.Write(text)
		}
		return rows.Err()
	})
	if err != nil {
		return "", fmt.Errorf("sqlite: read log %d: %w", logID, err)
	}
	return out.String(), nil
}

// zlibReaders keeps zlib readers for reuse: each holds a 32 KiB window.
var zlibReaders sync.Pool

// inflate decompresses a compressed chunk.
func inflate(b []byte) ([]byte, error) {
	var r io.ReadCloser
	var err error
	if v := zlibReaders.Get(); v != nil {
		r = v.(io.ReadCloser)
		err = r.(zlib.Resetter).Reset(bytes.NewReader(b), nil)
	} else {
		r, err = zlib.NewReader(bytes.NewReader(b))
	}
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(4 * len(b))
	_, err = out.ReadFrom(r)
	if err == nil {
		err = r.Close()
	}
	if err != nil {
		return nil, err
	}
	zlibReaders.Put(r)
	return out.Bytes(), nil
}

// chunkLines returns lines from to to (inclusive, from 0) of content.
func chunkLines(content []byte, from, to int) ([]byte, error) {
	start := 0
	for range from {
		i := bytes.IndexByte(content[start:], '\n')
		if i < 0 {
			return nil, errors.New("fewer lines than recorded")
		}
		start += i + 1
	}
	end := start
	for n := from; n <= to; n++ {
		i := bytes.IndexByte(content[end:], '\n')
		if i < 0 {
			return nil, errors.New("fewer lines than recorded")
		}
		end += i + 1
	}
	return content[start:end], nil
}
