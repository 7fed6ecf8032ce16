package webui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/webui"
)

// A countingWriter is a ResponseWriter that keeps only the size of the
// body, so that a download is measured without the client's copies.
type countingWriter struct {
	h    http.Header
	code int
	n    int64
	last byte
}

func (w *countingWriter) Header() http.Header  { return w.h }
func (w *countingWriter) WriteHeader(code int) { w.code = code }
func (w *countingWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.n += int64(len(p))
		w.last = p[len(p)-1]
	}
	return len(p), nil
}

// storedLog stores a finished build of builder "log" with one step and a
// log of type typ holding text (whole lines, with their stream letters
// for a stream log), appended in pieces of about 256 KiB as a log writer
// stores a log written fast, and returns the web application of a master
// on that store and the log's download path.
func storedLog(tb testing.TB, typ string, text string) (http.Handler, string) {
	tb.Helper()
	ctx := tb.Context()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "state.sqlite"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	builder, err := st.EnsureBuilder(ctx, "log", "", nil)
	if err != nil {
		tb.Fatal(err)
	}
	reqs, err := st.AddBuildset(ctx, &ci.Buildset{Reason: "bench", SubmittedAt: time.Now()}, []int64{builder.ID}, 0)
	if err != nil {
		tb.Fatal(err)
	}
	build := &ci.Build{BuilderID: builder.ID, StartedAt: time.Now(), Properties: ci.Properties{}}
	if err := st.StartBuild(ctx, build, []int64{reqs[0].ID}); err != nil {
		tb.Fatal(err)
	}
	step := &ci.StepRecord{BuildID: build.ID, Name: "log", StartedAt: time.Now()}
	if err := st.AddStep(ctx, step); err != nil {
		tb.Fatal(err)
	}
	l := &ci.Log{StepID: step.ID, Name: "stdio", Type: typ}
	if err := st.AddLog(ctx, l); err != nil {
		tb.Fatal(err)
	}
	for text != "" {
		end := min(len(text), 256<<10)
		if i := strings.IndexByte(text[end-1:], '\n'); i >= 0 {
			end += i
		}
		if _, _, err := st.AppendLog(ctx, l.ID, text[:end]); err != nil {
			tb.Fatal(err)
		}
		text = text[end:]
	}
	if _, _, err := st.FinishLog(ctx, l.ID, ""); err != nil {
		tb.Fatal(err)
	}
	m := citest.Start(tb, ci.MasterConfig{
		Store:    st,
		Workers:  []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{Name: "log", Workers: []string{"w1"}, Steps: []ci.Step{&steps.ShellCommand{Command: []string{"true"}}}}},
	}, citest.Options{NoWorkers: true})
	h, err := webui.NewHandler(m.Master, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return h, "/api/v2/logs/" + strconv.FormatInt(l.ID, 10) + "/raw"
}

// A long log downloads whole, in the order written, over the pieces the
// download reads it in, some of long lines: a stream log without its
// stream letters, a text log as it is.
func TestRawLog_Long(t *testing.T) {
	var stream, want strings.Builder
	for i := range 25_000 {
		line := fmt.Sprintf("line %d %s", i, strings.Repeat("ab", i%70))
		switch {
		case i%1000 == 999:
			line = "" // an empty line of output
		case i%5000 < 3:
			line += strings.Repeat("long", 15_000) // pieces of fewer lines
		}
		letter := "o"
		if i%3 == 1 {
			letter = "e"
		}
		stream.WriteString(letter + line + "\n")
		want.WriteString(line + "\n")
	}
	for _, tc := range []struct {
		typ  string
		text string
	}{
		{ci.LogStream, stream.String()},
		{ci.LogText, want.String()},
	} {
		h, path := storedLog(t, tc.typ, tc.text)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		require.Equal(t, http.StatusOK, rec.Code)
		if got := rec.Body.String(); got != want.String() {
			t.Fatalf("log of type %q: downloaded %d bytes, not the %d written (first difference at byte %d)", tc.typ, len(got), want.Len(), firstDiff(got, want.String()))
		}
	}
}

func firstDiff(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// BenchmarkRawLog downloads a 20 MB stream log of 99-character lines
// from /api/v2/logs/N/raw: the stream letters are removed from every line.
func BenchmarkRawLog(b *testing.B) {
	const lines, lineLen = 200_000, 99
	line := "o" + strings.Repeat("x", lineLen-1) + "\n"
	h, path := storedLog(b, ci.LogStream, strings.Repeat(line, lines))
	want := int64(lines * (len(line) - 1))
	b.SetBytes(want)
	b.ReportAllocs()
	for b.Loop() {
		w := &countingWriter{h: http.Header{}, code: http.StatusOK}
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.code != http.StatusOK || w.n != want || w.last != '\n' {
			b.Fatalf("GET %s: status %d, %d bytes ending in %q; want %d bytes ending in a newline", path, w.code, w.n, w.last, want)
		}
	}
}
