package storetest

import (
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func testAddLog(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		assert.NotZero(t, l.ID)
		assert.Equal(t, "stdio", l.Slug)
		got, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		assert.Equal(t, &ci.Log{ID: l.ID, StepID: l.StepID, Name: "stdio", Slug: "stdio", Type: ci.LogStream}, got)
	})
	t.Run("Slug", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		st1, st2 := f.step(build.ID, 0, "one"), f.step(build.ID, 1, "two")
		a := f.log(st1.ID, "test results")
		bb := f.log(st1.ID, "test results")
		c := f.log(st1.ID, "test/results")
		other := f.log(st2.ID, "test results")
		assert.NotEmpty(t, a.Slug)
		assert.NotContains(t, a.Slug, " ", "a slug is fit for a URL path")
		assert.NotEqual(t, a.Slug, bb.Slug, "slugs are unique within a step")
		assert.NotEqual(t, a.Slug, c.Slug)
		assert.NotEqual(t, bb.Slug, c.Slug)
		assert.Equal(t, a.Slug, other.Slug, "slugs are made from names")

		logs, err := f.s.ListLogs(f.ctx, st1.ID)
		require.NoError(t, err)
		assert.Equal(t, []*ci.Log{a, bb, c}, logs)
		logs, err = f.s.ListLogs(f.ctx, 999)
		require.NoError(t, err)
		assert.Empty(t, logs)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetLog(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testAppendLog(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		first, last, err := f.s.AppendLog(f.ctx, l.ID, "oone\n")
		require.NoError(t, err)
		assert.Equal(t, 0, first)
		assert.Equal(t, 0, last)
		first, last, err = f.s.AppendLog(f.ctx, l.ID, "etwo\nhthree\nofour\n")
		require.NoError(t, err)
		assert.Equal(t, 1, first)
		assert.Equal(t, 3, last)

		got, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		assert.Equal(t, 4, got.NumLines)
		assert.False(t, got.Complete)
		text, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
		require.NoError(t, err)
		assert.Equal(t, "oone\netwo\nhthree\nofour\n", text, "appended lines are readable at once")
	})
	t.Run("EmptyLines", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		first, last, err := f.s.AppendLog(f.ctx, l.ID, "\n\na\n\n")
		require.NoError(t, err)
		assert.Equal(t, 0, first)
		assert.Equal(t, 3, last)
		text, err := f.s.LogLines(f.ctx, l.ID, 1, 2)
		require.NoError(t, err)
		assert.Equal(t, "\na\n", text)
	})
	t.Run("TextNotKept", func(t *testing.T) {
		// LogWriter gives the store its buffer as the text, and writes
		// the next lines over it once the store has returned.
		f := open(t)
		l := f.newLog()
		buf := []byte("ofirst line\nosecond line\n")
		_, _, err := f.s.AppendLog(f.ctx, l.ID, unsafe.String(unsafe.SliceData(buf), len(buf)))
		require.NoError(t, err)
		copy(buf, "oxxxxxxxxxx\noyyyyyyyyyyy\n")
		_, _, err = f.s.FinishLog(f.ctx, l.ID, unsafe.String(unsafe.SliceData(buf), len(buf)))
		require.NoError(t, err)
		copy(buf, "ozzzzzzzzzz\nozzzzzzzzzzz\n")
		text, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
		require.NoError(t, err)
		assert.Equal(t, "ofirst line\nosecond line\noxxxxxxxxxx\noyyyyyyyyyyy\n", text)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, _, err := f.s.AppendLog(f.ctx, 42, "x\n")
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
	t.Run("ErrConflict", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		_, _, err := f.s.AppendLog(f.ctx, l.ID, "a\n")
		require.NoError(t, err)
		_, _, err = f.s.FinishLog(f.ctx, l.ID, "")
		require.NoError(t, err)
		_, _, err = f.s.AppendLog(f.ctx, l.ID, "late\n")
		assert.ErrorIs(t, err, ci.ErrConflict, "a complete log takes no more lines")
		text, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
		require.NoError(t, err)
		assert.Equal(t, "a\n", text)
	})
}

func testFinishLog(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		_, _, err := f.s.AppendLog(f.ctx, l.ID, "a\nb\n")
		require.NoError(t, err)
		_, _, err = f.s.FinishLog(f.ctx, l.ID, "")
		require.NoError(t, err)
		got, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		assert.True(t, got.Complete)
		assert.Equal(t, 2, got.NumLines)
		text, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
		require.NoError(t, err)
		assert.Equal(t, "a\nb\n", text)
	})
	t.Run("WithText", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		first, last, err := f.s.AppendLog(f.ctx, l.ID, "a\n")
		require.NoError(t, err)
		assert.Equal(t, [2]int{0, 0}, [2]int{first, last})
		first, last, err = f.s.FinishLog(f.ctx, l.ID, "b\nc\n")
		require.NoError(t, err)
		assert.Equal(t, [2]int{1, 2}, [2]int{first, last})
		got, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		assert.True(t, got.Complete)
		assert.Equal(t, 3, got.NumLines)
		text, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
		require.NoError(t, err)
		assert.Equal(t, "a\nb\nc\n", text)
		// Finishing again is harmless without text, a conflict with text.
		first, last, err = f.s.FinishLog(f.ctx, l.ID, "")
		require.NoError(t, err)
		assert.Equal(t, [2]int{-1, -1}, [2]int{first, last})
		_, _, err = f.s.FinishLog(f.ctx, l.ID, "d\n")
		assert.ErrorIs(t, err, ci.ErrConflict)
		_, _, err = f.s.FinishLog(f.ctx, l.ID, "partial")
		assert.Error(t, err)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, _, err := f.s.FinishLog(f.ctx, 42, "")
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testLogLines(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("Ranges", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		var want []string
		var starts []int // the first line of each append
		appendText := func(text string) {
			t.Helper()
			starts = append(starts, len(want))
			first, last, err := f.s.AppendLog(f.ctx, l.ID, text)
			require.NoError(t, err)
			n := 0
			for i := 0; i < len(text); i++ {
				if text[i] == '\n' {
					want = append(want, text[n:i+1])
					n = i + 1
				}
			}
			assert.Equal(t, len(want)-1, last)
			assert.Equal(t, len(want)-1-(last-first), first)
		}
		// Appends of all sizes: single short lines, unicode, a big
		// compressible append (several chunks in a store that limits
		// them), a big incompressible one, a long line, more small ones.
		appendText("ofirst\n")
		appendText("osecond\nethird\n")
		appendText("h日本語のテキスト ✓ – ünïcödé 🚀\n")
		appendText(lines("ocompile unit ", 0, 5000))
		var noise []byte
		x := uint32(2463534242)
		for len(noise) < 100<<10 {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			c := byte('!' + x%90)
			if x%61 == 0 {
				c = '\n'
			}
			noise = append(noise, c)
		}
		appendText(string(noise) + "\n")
		appendText(fmt.Sprintf("o%070000d\n", 7))
		for i := range 30 {
			appendText(lines(fmt.Sprintf("o%d ünï ", i), 0, i+1))
		}
		appendText("olast\n")

		got, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		require.Equal(t, len(want), got.NumLines)
		n := len(want)
		offsets := make([]int, n+1)
		for i, line := range want {
			offsets[i+1] = offsets[i] + len(line)
		}
		all, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
		require.NoError(t, err)
		require.Len(t, all, offsets[n])
		join := func(first, last int) string { return all[offsets[first]:offsets[last+1]] }
		for i, line := range want {
			require.Equal(t, line, join(i, i), "line %d", i)
		}

		// Ranges starting and ending around the lines where appends began,
		// which is where chunks may begin.
		points := []int{0, 1, 2, 2500, n/2 + 7, n - 100, n - 2, n - 1}
		for i, s := range starts {
			if i%2 == 0 || s > 5000 && s < 5010 {
				points = append(points, s-1, s, s+1)
			}
		}
		slices.Sort(points)
		points = slices.Compact(points)
		for i, p := range points {
			next := points[min(i+1, len(points)-1)]
			for _, r := range [][2]int{{p, p}, {p - 1, p}, {p, p + 1}, {p - 2, p + 2}, {p, next}, {0, p}, {p, n - 1}} {
				first, last := r[0], r[1]
				if first < 0 || last >= n || first > last {
					continue
				}
				text, err := f.s.LogLines(f.ctx, l.ID, first, last)
				require.NoError(t, err)
				if text != join(first, last) {
					t.Fatalf("LogLines(%d, %d) = %d bytes, want %d bytes", first, last, len(text), len(join(first, last)))
				}
			}
		}
		text, err := f.s.LogLines(f.ctx, l.ID, n-100, -1)
		require.NoError(t, err)
		assert.Equal(t, join(n-100, n-1), text, "last < 0 reads to the end")
		text, err = f.s.LogLines(f.ctx, l.ID, n-2, n+50)
		require.NoError(t, err)
		assert.Equal(t, join(n-2, n-1), text, "lines past the end are not there")
		text, err = f.s.LogLines(f.ctx, l.ID, n, -1)
		require.NoError(t, err)
		assert.Empty(t, text)
		text, err = f.s.LogLines(f.ctx, l.ID, 10, 9)
		require.NoError(t, err)
		assert.Empty(t, text)
	})
	t.Run("Empty", func(t *testing.T) {
		f := open(t)
		l := f.newLog()
		text, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
		require.NoError(t, err)
		assert.Empty(t, text)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.LogLines(f.ctx, 42, 0, -1)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}
