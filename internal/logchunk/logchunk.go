// Package logchunk cuts log text into the chunks the stores keep (whole
// lines, at most MaxChunk bytes each, compressed with zlib when that makes
// them smaller), reads lines back out of them, and makes a log's slug from
// its name. ci/sqlite and ci/postgres store the same chunks, so that a
// database copied from one to the other reads the same.
//
// Chunks are compressed with zlib (RFC 1950), as the standard library's
// compress/zlib writes and reads it, but with klauspost/compress's
// implementation of the same format: at BestSpeed it compresses log text
// about three times as fast, which matters as a log written fast is
// compressed as it arrives, on the master. Chunks written by earlier
// versions (the standard library's, at any level) read as before.
package logchunk

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/klauspost/compress/zlib"
)

const (
	// MaxChunk is the most bytes of text one chunk holds, unless a single
	// line is longer.
	MaxChunk = 64 << 10
	// compressMin is the size from which a chunk is compressed.
	compressMin = 256
	// MaxSlug is the longest slug made from a log's name.
	MaxSlug = 50
)

// Slug makes a slug from a log's name as Buildbot does: characters
// other than ASCII letters, digits, '_' and '-' become '_', as does a
// leading digit, and the result is cut to MaxSlug bytes.
func Slug(name string) string {
	var b strings.Builder
	for i := 0; i < len(name) && b.Len() < MaxSlug; {
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

// A Chunk is some whole lines of a log, as stored.
type Chunk struct {
	Lines      int
	Content    []byte
	Compressed bool
	buf        *[]byte // from chunkBuffers, holding content
}

// zlibWriters keeps zlib writers for reuse.
var zlibWriters = sync.Pool{New: func() any {
	w, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed)
	return w
}}

// chunkBuffers keeps the buffers chunks are made in: a chunk's content is
// only needed until it is inserted, and a log written fast makes many.
var chunkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, MaxChunk+MaxChunk/8); return &b }}

// Release gives the chunks' buffers back to chunkBuffers: their
// content must no longer be used.
func Release(chunks []Chunk) {
	for i := range chunks {
		if b := chunks[i].buf; b != nil && cap(*b) <= 2*MaxChunk {
			*b = (*b)[:0]
			chunkBuffers.Put(b)
		}
		chunks[i].buf, chunks[i].Content = nil, nil
	}
}

// ErrNotWholeLines is the error of Make for text that does not end with a
// newline.
var ErrNotWholeLines = errors.New("text is not whole lines")

// Make cuts text, whole lines, into chunks of at most MaxChunk bytes
// (a longer line makes a chunk of its own) and compresses those worth it;
// empty text makes no chunk. The chunks' content is in buffers that
// Release gives back.
func Make(text string) ([]Chunk, error) {
	if text != "" && text[len(text)-1] != '\n' {
		return nil, ErrNotWholeLines
	}
	var chunks []Chunk
	for text != "" {
		end, lines := 0, 0
		for end < len(text) {
			i := strings.IndexByte(text[end:], '\n')
			if lines > 0 && end+i+1 > MaxChunk {
				break
			}
			end += i + 1
			lines++
		}
		raw := text[:end]
		text = text[end:]
		var c Chunk
		if len(raw) >= compressMin {
			// Compressed from the text itself: zlib only reads it.
			zbuf := chunkBuffers.Get().(*[]byte)
			out := bytes.NewBuffer((*zbuf)[:0])
			w := zlibWriters.Get().(*zlib.Writer)
			w.Reset(out)
			w.Write(unsafe.Slice(unsafe.StringData(raw), len(raw)))
			err := w.Close()
			zlibWriters.Put(w)
			*zbuf = out.Bytes()
			if err != nil {
				Release(append(chunks, Chunk{buf: zbuf}))
				return nil, err
			}
			if len(*zbuf) < len(raw) {
				c = Chunk{Lines: lines, Content: *zbuf, Compressed: true, buf: zbuf}
			} else {
				Release([]Chunk{{buf: zbuf}})
			}
		}
		if c.Content == nil {
			buf := chunkBuffers.Get().(*[]byte)
			*buf = append((*buf)[:0], raw...)
			c = Chunk{Lines: lines, Content: *buf, buf: buf}
		}
		chunks = append(chunks, c)
	}
	return chunks, nil
}

// zlibReaders keeps zlib readers for reuse: each holds a 32 KiB window.
var zlibReaders sync.Pool

// Inflate decompresses a compressed chunk.
func Inflate(b []byte) ([]byte, error) {
	return appendInflated(make([]byte, 0, 4*len(b)), b)
}

// appendInflated appends the decompressed chunk b to dst, doubling it
// when full: many chunks appended into one buffer are copied about once.
func appendInflated(dst, b []byte) ([]byte, error) {
	var r io.ReadCloser
	var err error
	if v := zlibReaders.Get(); v != nil {
		r = v.(io.ReadCloser)
		err = r.(zlib.Resetter).Reset(bytes.NewReader(b), nil)
	} else {
		r, err = zlib.NewReader(bytes.NewReader(b))
	}
	if err != nil {
		return dst, err
	}
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, max(len(dst), 4*len(b), 4<<10))
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return dst, err
		}
	}
	if err := r.Close(); err != nil {
		return dst, err
	}
	zlibReaders.Put(r)
	return dst, nil
}

// appendLines appends lines from to to (inclusive, from 0) of a stored
// chunk to dst, inflating the chunk first if it is compressed, and
// returns the extended slice. On error, dst is returned as it was given.
func appendLines(dst, content []byte, compressed bool, from, to int) ([]byte, error) {
	start := len(dst)
	var err error
	if compressed {
		dst, err = appendInflated(dst, content)
	} else {
		dst = append(dst, content...)
	}
	if err != nil {
		return dst[:start], err
	}
	lines, err := Lines(dst[start:], from, to)
	if err != nil {
		return dst[:start], err
	}
	n := copy(dst[start:], lines)
	return dst[:start+n], nil
}

// maxPresize is the most a Text grows its buffer by at once, from the
// length of the first chunk's lines.
const maxPresize = 4 << 20

// A Text collects lines First to Last (inclusive, from 0) of a log from
// its stored chunks, given in order: each chunk is inflated into the
// text, not into a buffer of its own, and once the first chunk has shown
// how long the lines are, the text is sized for them all.
type Text struct {
	First, Last int
	buf         []byte
	lines       int // collected so far
}

// Add adds the lines of the chunk holding lines cfirst to clast that are
// wanted.
func (t *Text) Add(cfirst, clast int, content []byte, compressed bool) error {
	from, to := max(t.First, cfirst)-cfirst, min(t.Last, clast)-cfirst
	if from > to {
		return nil
	}
	var err error
	if t.buf, err = appendLines(t.buf, content, compressed, from, to); err != nil {
		return err
	}
	t.lines += to - from + 1
	if left := t.Last - t.First + 1 - t.lines; t.lines == to-from+1 && left > 0 {
		// A tenth more than the lines so far make, log lines vary, up to
		// maxPresize: a chunk of long lines does not make a buffer for
		// thousands more.
		t.buf = slices.Grow(t.buf, min(len(t.buf)/t.lines*left*11/10, maxPresize))
	}
	return nil
}

// String returns the text: the lines collected, newlines included. It
// shares the Text's buffer, which is no longer written once String is
// called.
func (t *Text) String() string {
	return unsafe.String(unsafe.SliceData(t.buf), len(t.buf))
}

// Lines returns lines from to to (inclusive, from 0) of content.
func Lines(content []byte, from, to int) ([]byte, error) {
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
