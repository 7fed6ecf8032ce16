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
