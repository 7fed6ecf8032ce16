package command

import (
	"strings"
	"unicode/utf8"
)

// utf8Decoder turns output bytes into text, keeping a character split
// between two reads whole and replacing invalid bytes with U+FFFD, as
// Python's incremental decoder with errors="replace" does.
type utf8Decoder struct {
	pending []byte
}

func (d *utf8Decoder) decode(p []byte) string {
	if len(d.pending) == 0 && utf8.Valid(p) {
		return string(p)
	}
	buf := append(d.pending, p...)
	d.pending = nil
	var b strings.Builder
	b.Grow(len(buf))
	for i := 0; i < len(buf); {
		c := buf[i]
		if c < utf8.RuneSelf {
			b.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(buf[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(buf[i:]) {
				d.pending = append([]byte(nil), buf[i:]...)
				break
			}
			b.WriteRune(utf8.RuneError)
			i++
			continue
		}
		b.Write(buf[i : i+size])
		i += size
	}
	return b.String()
}

// decodeBytes is decode for output that is valid UTF-8 as it comes,
// which it returns as it is, p itself: the caller must be done with it
// before it reuses p.
func (d *utf8Decoder) decodeBytes(p []byte) []byte {
	if len(d.pending) == 0 && utf8.Valid(p) {
		return p
	}
	return []byte(d.decode(p))
}

// flush returns what is left of a split character: a replacement.
func (d *utf8Decoder) flush() string {
	if len(d.pending) == 0 {
		return ""
	}
	d.pending = nil
	return string(utf8.RuneError)
}
