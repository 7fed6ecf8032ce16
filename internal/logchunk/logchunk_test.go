package logchunk

import (
	"bytes"
	stdzlib "compress/zlib"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// testText returns n lines: numbered, with random letters (which compress
// less) when mixed.
func testText(n int, mixed bool) string {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "line %d ", i)
		for range 20 + i%80 {
			c := byte('a')
			if mixed {
				c += byte(r.IntN(26))
			}
			b.WriteByte(c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Chunks hold whole lines, at most MaxChunk bytes unless a line is
// longer, and read back, compressed or not, as the text they were made
// from; the standard library's zlib reads the compressed ones.
func TestMake(t *testing.T) {
	long := strings.Repeat("x", MaxChunk+10) + "\n"
	for _, tc := range []struct {
		name       string
		text       string
		compressed bool // all chunks
		plain      bool // all chunks
	}{
		{"short", "a\nb\n", false, true},
		{"repetitive", testText(5000, false), true, false},
		{"mixed", testText(5000, true), true, false},
		{"long line", "a\n" + long + "b\n", false, false},
		{"random", randomLines(3000), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunks, err := Make(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			defer Release(chunks)
			var got strings.Builder
			lines := 0
			for i, c := range chunks {
				content := c.Content
				if c.Compressed {
					if content, err = Inflate(c.Content); err != nil {
						t.Fatalf("chunk %d: %v", i, err)
					}
					r, err := stdzlib.NewReader(bytes.NewReader(c.Content))
					if err != nil {
						t.Fatalf("chunk %d: the standard library: %v", i, err)
					}
					std, err := io.ReadAll(r)
					if err != nil || !bytes.Equal(std, content) {
						t.Fatalf("chunk %d: the standard library reads %d bytes (%v), not the %d", i, len(std), err, len(content))
					}
				}
				if tc.compressed && !c.Compressed || tc.plain && c.Compressed {
					t.Errorf("chunk %d: compressed %v", i, c.Compressed)
				}
				if n := bytes.Count(content, []byte("\n")); n != c.Lines || content[len(content)-1] != '\n' {
					t.Errorf("chunk %d: %d lines, says %d", i, n, c.Lines)
				}
				if len(content) > MaxChunk && c.Lines > 1 {
					t.Errorf("chunk %d: %d bytes in %d lines", i, len(content), c.Lines)
				}
				lines += c.Lines
				got.Write(content)
			}
			if got.String() != tc.text {
				t.Fatalf("the chunks read back as %d bytes, not the %d given", got.Len(), len(tc.text))
			}
			if want := strings.Count(tc.text, "\n"); lines != want {
				t.Fatalf("%d lines, want %d", lines, want)
			}
		})
	}
}

// randomLines returns n lines of random bytes, which do not compress.
func randomLines(n int) string {
	r := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	for range n {
		for range 99 {
			c := byte(r.IntN(255))
			if c == '\n' {
				c = 255
			}
			b.WriteByte(c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Chunks compressed by earlier versions, with the standard library's zlib
// at any level, read as before.
// Text that does not end with a newline is refused: it is not whole
// lines. Empty text makes no chunk.
func TestMake_NotWholeLines(t *testing.T) {
	for _, text := range []string{"partial", "a\nb", strings.Repeat("x", MaxChunk+10)} {
		chunks, err := Make(text)
		if !errors.Is(err, ErrNotWholeLines) || chunks != nil {
			t.Errorf("Make(%.20q) = %d chunks, %v; want ErrNotWholeLines", text, len(chunks), err)
		}
	}
	if chunks, err := Make(""); err != nil || chunks != nil {
		t.Errorf(`Make("") = %d chunks, %v; want none`, len(chunks), err)
	}
}

func TestInflate_Earlier(t *testing.T) {
	text := testText(700, true)
	for _, level := range []int{stdzlib.BestSpeed, stdzlib.DefaultCompression, stdzlib.BestCompression} {
		var b bytes.Buffer
		w, _ := stdzlib.NewWriterLevel(&b, level)
		w.Write([]byte(text))
		w.Close()
		got, err := Inflate(b.Bytes())
		if err != nil || string(got) != text {
			t.Fatalf("level %d: %d bytes (%v), not the %d written", level, len(got), err, len(text))
		}
	}
	if _, err := Inflate([]byte("not zlib")); err == nil {
		t.Fatal("Inflate read what is not zlib")
	}
}

// BenchmarkMake makes the chunks of 256 KiB of 99-character lines, as
// the store is given a log written fast, and releases them.
func BenchmarkMake(b *testing.B) {
	for _, tc := range []struct {
		name string
		text string
	}{
		{"repetitive", strings.Repeat(strings.Repeat("a", 99)+"\n", 2600)},
		{"mixed", testText(3000, true)},
	} {
		text := tc.text
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				chunks, err := Make(text)
				if err != nil {
					b.Fatal(err)
				}
				Release(chunks)
			}
		})
	}
}
