//go:build unix

package command

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLineFinder(t *testing.T) {
	t0 := time.Unix(100, 0)
	t1 := time.Unix(101, 0)
	t2 := time.Unix(102, 0)
	type step struct {
		text      string
		t         time.Time
		wantText  string
		wantTimes []time.Time
	}
	tests := []struct {
		name    string
		maxLine int
		steps   []step
		flush   string // what flushing returns at the end
	}{
		{
			name: "whole lines", maxLine: 4096,
			steps: []step{{"a\nb\n", t0, "a\nb\n", []time.Time{t0, t0}}},
		},
		{
			name: "partial lines keep their first time", maxLine: 4096,
			steps: []step{
				{"ab", t0, "", nil},
				{"c", t1, "", nil},
				{"d\ne\nf", t2, "abcd\ne\n", []time.Time{t0, t2}},
			},
			flush: "f\n",
		},
		{
			name: "CRLF split between reads", maxLine: 4096,
			steps: []step{
				{"a\r", t0, "", nil},
				{"\nb\r", t1, "a\n", []time.Time{t0}},
				{"c\n", t2, "b\nc\n", []time.Time{t1, t2}},
			},
		},
		{
			name: "long lines", maxLine: 4,
			steps: []step{
				{"abcdefg\nhi", t0, "abc\ndef\ng\n", []time.Time{t0, t0, t0}},
				{"jklm", t1, "hij\n", []time.Time{t0}},
			},
			flush: "klm\n",
		},
		{
			name: "exactly the limit", maxLine: 4,
			steps: []step{{"abc\n", t0, "abc\n", []time.Time{t0}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lf lineFinder
			for i, s := range tt.steps {
				text, times := lf.append(s.text, s.t, tt.maxLine, defaultNewline)
				assert.Equal(t, s.wantText, string(text), "step %d", i)
				assert.Equal(t, s.wantTimes, times, "step %d", i)
			}
			text, _ := lf.flush(tt.maxLine, defaultNewline)
			assert.Equal(t, tt.flush, string(text))
		})
		// The same text as bytes, in a buffer overwritten after each
		// step as a reader's is.
		t.Run(tt.name+" bytes", func(t *testing.T) {
			var lf lineFinder
			buf := make([]byte, 64)
			for i, s := range tt.steps {
				p := buf[:copy(buf, s.text)]
				text, times := lf.appendBytes("", p, s.t, tt.maxLine, defaultNewline)
				clear(buf)
				assert.Equal(t, s.wantText, text, "step %d", i)
				assert.Equal(t, s.wantTimes, times, "step %d", i)
			}
			text, _ := lf.flush(tt.maxLine, defaultNewline)
			assert.Equal(t, tt.flush, text)
		})
	}
}

func TestNewline(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain\n", "plain\n"},
		{"a\r\nb", "a\nb"},
		{"a\rb", "a\nb"},
		{"a\r", "a\r"},
		{"a\r\r\n", "a\n\n"},
		{"a\x08\x08\x08b", "a\nb"},
		{"a\x1b[ub", "a\nb"},
		{"a\x1b[12;3Hb\x1b[1;2fc", "a\nb\nc"},
		{"a\x1b[2Jb", "a\nb"},
		{"a\x1b[2;Hb", "a\x1b[2;Hb"},
		{"a\x1b[31mb", "a\x1b[31mb"},
		{"a\x1b", "a\x1b"},
	}
	// The same expression given in another spelling goes through Go's
	// regexp; both must agree.
	custom, err := newlineFunc(`(\r\n|\r(?=.)|\x1b\[u|\x1b\[[0-9]+;[0-9]+[Hf]|\x1b\[2J|\x08+)`)
	require.NoError(t, err)
	for _, tt := range tests {
		assert.Equal(t, tt.want, defaultNewline(tt.in), "%q", tt.in)
		assert.Equal(t, tt.want, custom(tt.in), "custom %q", tt.in)
	}
	_, err = newlineFunc(`(`)
	require.Error(t, err)
}

type batchHost struct {
	Host
	mu      sync.Mutex
	batches [][]Update
}

func (h *batchHost) Update(ctx context.Context, updates []Update) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batches = append(h.batches, updates)
	return nil
}

func TestOutput_Split(t *testing.T) {
	h := &batchHost{}
	o := newOutput(context.Background(), h, outputSettings{size: 100, timeout: time.Hour, maxLine: 4096, newline: defaultNewline})
	o.send(Update{Key: "rc", Value: 0})
	line := strings.Repeat("x", 29) + "\n" // 30 bytes + 16 per line
	o.send(Update{Key: "stdout", Value: strings.Repeat(line, 5)})
	// rc waits; the 5 lines (230 "bytes") do not fit: the first joins rc,
	// which goes, the next two fill a batch, and the last two wait in the
	// buffer for more.
	h.mu.Lock()
	require.Len(t, h.batches, 2)
	h.mu.Unlock()
	o.complete()
	require.Len(t, h.batches, 3)
	assert.Equal(t, []Update{{Key: "rc", Value: 0}, {Key: "stdout", Value: line, Times: h.batches[0][1].Times}}, h.batches[0])
	assert.Len(t, h.batches[0][1].Times, 1)
	for _, b := range h.batches[1:] {
		require.Len(t, b, 1)
		assert.Equal(t, "stdout", b[0].Key)
		assert.Equal(t, strings.Repeat(line, 2), b[0].Value)
		assert.Len(t, b[0].Times, 2)
	}
	// A line longer than the buffer goes alone.
	h.batches = nil
	o = newOutput(context.Background(), h, outputSettings{size: 100, timeout: time.Hour, maxLine: 4096, newline: defaultNewline})
	long := strings.Repeat("y", 199) + "\n"
	o.send(Update{Key: "stdout", Value: line + long + line})
	o.complete()
	require.Len(t, h.batches, 3)
	assert.Equal(t, line, h.batches[0][0].Value)
	assert.Equal(t, long, h.batches[1][0].Value)
	assert.Equal(t, line, h.batches[2][0].Value)
}

func TestOutput_SplitJoins(t *testing.T) {
	h := &batchHost{}
	o := newOutput(context.Background(), h, outputSettings{size: 100, timeout: time.Hour, maxLine: 4096, newline: defaultNewline})
	line := strings.Repeat("x", 29) + "\n" // 30 bytes + 16 per line
	for range 3 {
		o.send(Update{Key: "stdout", Value: []byte(strings.Repeat(line, 3))})
	}
	o.complete()
	// 9 lines of 46 "bytes": four batches of two, and the last line. The
	// second and third batches hold the line left from one read and the
	// first of the next, as two updates.
	require.Len(t, h.batches, 5)
	for i, b := range h.batches {
		var text strings.Builder
		times := 0
		for _, u := range b {
			assert.Equal(t, "stdout", u.Key)
			text.WriteString(u.Value.(string))
			times += len(u.Times)
		}
		want := strings.Repeat(line, 2)
		if i == 4 {
			want = line
		}
		assert.Equal(t, want, text.String(), "batch %d", i)
		assert.Equal(t, strings.Count(want, "\n"), times, "batch %d", i)
	}
	assert.Len(t, h.batches[1], 2)
}

func TestOutput_Join(t *testing.T) {
	h := &batchHost{}
	o := newOutput(context.Background(), h, outputSettings{size: 1 << 16, timeout: time.Hour, maxLine: 4096, newline: defaultNewline})
	o.send(Update{Key: "stdout", Value: "a\n"})
	o.send(Update{Key: "stdout", Value: "b\n"})
	o.send(Update{Key: "log", Value: [2]string{"l1", "x\n"}})
	o.send(Update{Key: "log", Value: [2]string{"l1", "y\n"}})
	o.send(Update{Key: "log", Value: [2]string{"l2", "z\n"}})
	o.send(Update{Key: "stdout", Value: "c\n"})
	o.complete()
	require.Len(t, h.batches, 1)
	var got []string
	for _, u := range h.batches[0] {
		switch v := u.Value.(type) {
		case string:
			got = append(got, u.Key+":"+v)
		case [2]string:
			got = append(got, u.Key+":"+v[0]+":"+v[1])
		}
	}
	assert.Equal(t, []string{"stdout:a\nb\n", "log:l1:x\ny\n", "log:l2:z\n", "stdout:c\n"}, got)
}

func TestOutput_Timer(t *testing.T) {
	sent := make(chan []Update, 1)
	h := &chanHost{sent: sent}
	o := newOutput(context.Background(), h, outputSettings{size: 1 << 16, timeout: time.Millisecond, maxLine: 4096, newline: defaultNewline})
	o.send(Update{Key: "stdout", Value: "a\n"})
	// Sent without a flush, once the buffer timeout has passed.
	assert.Equal(t, "a\n", (<-sent)[0].Value)
	o.complete()
}

type chanHost struct {
	Host
	sent chan []Update
}

func (h *chanHost) Update(ctx context.Context, updates []Update) error {
	h.sent <- updates
	return nil
}

func TestPyRepr(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{"a'b", `"a'b"`},
		{"a\"b'", `'a"b\''`},
		{"tab\there", `'tab\there'`},
		{"é\x7f\x00", `'é\x7f\x00'`},
		{"\u2028", `'\u2028'`},
		{"😀", `'😀'`},
		{[]byte("\xc3\xa9'x"), `b"\xc3\xa9'x"`},
		{[]byte(`a"'`), `b'a"\''`},
		{nil, "None"},
		{true, "True"},
		{int64(3), "3"},
		{2.0, "2.0"},
		{1.5, "1.5"},
		{1e16, "1e+16"},
		{1.5e-05, "1.5e-05"},
		{0.0001, "0.0001"},
		{map[string]any{"b": map[string]any{"filename": "x", "follow": true}, "a": "a.log"}, `{'a': 'a.log', 'b': {'filename': 'x', 'follow': True}}`},
		{[]any{"x", int64(1)}, `['x', 1]`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, pyRepr(tt.v), "%#v", tt.v)
	}
}

func TestShellQuote(t *testing.T) {
	assert.Equal(t, `'it'"'"'s' 'a b' a=b,c:d@%+./- 'é' ""`, shellQuote([]string{"it's", "a b", "a=b,c:d@%+./-", "é", ""}))
}

func TestRealPath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	require.NoError(t, os.Symlink("a/b", filepath.Join(dir, "rel")))
	require.NoError(t, os.Symlink(filepath.Join(dir, "a"), filepath.Join(dir, "abs")))
	require.NoError(t, os.Symlink("../x/y", filepath.Join(dir, "a", "up")))
	require.NoError(t, os.Symlink("loop", filepath.Join(dir, "loop")))
	tests := []struct{ in, want string }{
		{"a/b", "a/b"},
		{"rel/c", "a/b/c"},
		{"abs/b/new/file", "a/b/new/file"},
		{"a/up", "x/y"},
		{"a/up/z", "x/y/z"},
		{"rel/../b", "a/b"}, // ".." after a link is physical
	}
	for _, tt := range tests {
		got, err := realPath(dir + "/" + tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, filepath.Join(dir, tt.want), got, tt.in)
	}
	_, err = realPath(filepath.Join(dir, "loop"))
	require.ErrorContains(t, err, "too many levels of symbolic links")
}

func TestUTF8Decoder(t *testing.T) {
	var d utf8Decoder
	assert.Equal(t, "caf", d.decode([]byte("caf\xc3")))
	assert.Equal(t, "é!", d.decode([]byte("\xa9!")))
	assert.Equal(t, "\ufffdx", d.decode([]byte("\xffx")))
	assert.Equal(t, "", d.decode([]byte("\xe2\x82")))
	assert.Equal(t, "\ufffd", d.flush())
	p := []byte("plain")
	assert.Same(t, &p[0], &d.decodeBytes(p)[0], "valid text is passed as it is")
	assert.Equal(t, []byte("caf"), d.decodeBytes([]byte("caf\xc3")))
	assert.Equal(t, []byte("é"), d.decodeBytes([]byte("\xa9")))
}

type nopHost struct{ Host }

func (nopHost) Update(context.Context, []Update) error { return nil }

// BenchmarkOutput measures cutting 1000 lines of output, read in 4 KiB
// chunks, into lines and batches.
func BenchmarkOutput(b *testing.B) {
	var text strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&text, "line %d of the output of the benchmark command\n", i)
	}
	data := text.String()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		o := newOutput(context.Background(), nopHost{}, outputSettings{size: DefaultBufferSize, timeout: time.Hour, maxLine: DefaultMaxLineLength, newline: defaultNewline})
		for s := data; s != ""; {
			n := min(4096, len(s))
			o.send(Update{Key: "stdout", Value: s[:n]})
			s = s[n:]
		}
		o.complete()
	}
}

// countHost counts the batches and bytes of text it is sent.
type countHost struct {
	Host
	batches, bytes int
}

func (h *countHost) Update(ctx context.Context, updates []Update) error {
	h.batches++
	for _, u := range updates {
		if s, ok := u.Value.(string); ok {
			h.bytes += len(s)
		}
	}
	return nil
}

// BenchmarkOutput_LargeReads sends a fast command's output, read 64 KiB
// at a time in lines of 99 characters, through the line finder and the buffer, with
// Buildbot's buffer size: batches/op is how many batches each read makes.
func BenchmarkOutput_LargeReads(b *testing.B) {
	line := strings.Repeat("a", 99) + "\n"
	read := []byte(strings.Repeat(line, 1<<16/len(line)))
	h := &countHost{}
	o := newOutput(context.Background(), h, outputSettings{size: 1 << 16, timeout: 5 * time.Second, maxLine: 4096, newline: defaultNewline})
	b.SetBytes(int64(len(read)))
	b.ReportAllocs()
	for b.Loop() {
		o.send(Update{Key: "stdout", Value: read})
	}
	o.complete()
	b.ReportMetric(float64(h.batches)/float64(b.N), "batches/op")
	if h.bytes != b.N*len(read) {
		b.Fatalf("%d bytes sent, want %d", h.bytes, b.N*len(read))
	}
}
