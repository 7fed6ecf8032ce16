package webui

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCutLines(t *testing.T) {
	for _, tt := range []struct {
		name  string
		text  string
		max   int
		piece string
		n     int
	}{
		{"All", "a\nbb\n", 10, "a\nbb\n", 2},
		{"Exactly", "a\nbb\nc\n", 5, "a\nbb\n", 2},
		{"OneLineBeyond", "a\nbb\nc\n", 4, "a\n", 1},
		{"FirstLineLonger", "abcdef\ng\n", 3, "abcdef\n", 1},
		{"Unfinished", "a\nb", 10, "a\nb", 2},
		{"Empty", "", 10, "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			piece, n := cutLines(tt.text, tt.max)
			assert.Equal(t, tt.piece, piece)
			assert.Equal(t, tt.n, n)
		})
	}
	// Cut again and again, a long text goes in pieces of at most max
	// bytes, every line in one piece.
	text := strings.Repeat("a line of the log\n", 1000)
	var pieces []string
	for rest := text; rest != ""; {
		piece, _ := cutLines(rest, 1000)
		assert.LessOrEqual(t, len(piece), 1000)
		pieces = append(pieces, piece)
		rest = rest[len(piece):]
	}
	assert.Equal(t, text, strings.Join(pieces, ""))
}
