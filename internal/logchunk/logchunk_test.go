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

// appendLines gives, after what dst holds, the lines Lines gives of the
// inflated chunk, for every range of lines of every chunk, and leaves dst
// as it was when the chunk cannot be read.
func TestAppendLines(t *testing.T) {
	text := testText(3000, true) + testText(3000, false) + "a\nb\n"
	chunks, err := Make(text)
	if err != nil {
		t.Fatal(err)
	}
	defer Release(chunks)
	var whole []byte
	for i, c := range chunks {
		content := c.Content
		if c.Compressed {
			if content, err = Inflate(c.Content); err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
		}
		for _, r := range [][2]int{{0, c.Lines - 1}, {0, 0}, {c.Lines - 1, c.Lines - 1}, {c.Lines / 3, c.Lines / 2}} {
			want, err := Lines(content, r[0], r[1])
			if err != nil {
				t.Fatalf("chunk %d: Lines%v: %v", i, r, err)
			}
			dst := append(make([]byte, 0, 3), "pre"...)
			got, err := appendLines(dst, c.Content, c.Compressed, r[0], r[1])
			if err != nil || string(got) != "pre"+string(want) {
				t.Fatalf("chunk %d, lines %v: %.40q (%v); want %.40q after the prefix", i, r, got, err, want)
			}
		}
		if whole, err = appendLines(whole, c.Content, c.Compressed, 0, c.Lines-1); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if string(whole) != text {
		t.Fatalf("the chunks appended whole make %d bytes, not the %d made into chunks", len(whole), len(text))
	}
	for _, bad := range []struct {
		name       string
		content    []byte
		compressed bool
		from, to   int
	}{
		{"not zlib", []byte("not zlib"), true, 0, 0},
		{"fewer lines", []byte("a\nb\n"), false, 0, 2},
		{"no newline", []byte("a"), false, 0, 0},
	} {
		got, err := appendLines([]byte("kept"), bad.content, bad.compressed, bad.from, bad.to)
		if err == nil || string(got) != "kept" {
			t.Errorf("%s: %q, %v; want an error and dst as it was", bad.name, got, err)
		}
	}
}

// A Text collects the lines asked for from the chunks that hold them,
// and sizes its buffer from the first chunk without going past
// maxPresize.
func TestText(t *testing.T) {
	text := testText(6000, true)
	lines := strings.SplitAfter(text, "\n")
	chunks, err := Make(text)
	if err != nil {
		t.Fatal(err)
	}
	defer Release(chunks)
	if len(chunks) < 3 {
		t.Fatalf("%d chunks; the test needs several", len(chunks))
	}
	for _, r := range [][2]int{{0, 5999}, {10, 4000}, {chunks[0].Lines, chunks[0].Lines}, {5998, 5999}} {
		txt := Text{First: r[0], Last: r[1]}
		first := 0
		for i, c := range chunks {
			last := first + c.Lines - 1
			if last >= r[0] && first <= r[1] {
				if err := txt.Add(first, last, c.Content, c.Compressed); err != nil {
					t.Fatalf("lines %v, chunk %d: %v", r, i, err)
				}
			}
			first = last + 1
		}
		if want := strings.Join(lines[r[0]:r[1]+1], ""); txt.String() != want {
			t.Errorf("lines %v: %d bytes, not the %d of those lines", r, len(txt.String()), len(want))
		}
	}

	// A first chunk of one long line, and many lines asked for.
	long := strings.Repeat("x", MaxChunk) + "\n"
	txt := Text{First: 0, Last: 1_000_000}
	if err := txt.Add(0, 0, []byte(long), false); err != nil {
		t.Fatal(err)
	}
	// The allocator rounds a size up, by less than an eighth.
	if c := cap(txt.buf); c > (len(long)+maxPresize)*9/8 {
		t.Errorf("a buffer of %d bytes after a line of %d; at most %d more", c, len(long), maxPresize)
	}
	if txt.String() != long {
		t.Errorf("the line comes back as %d bytes, not %d", len(txt.String()), len(long))
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
