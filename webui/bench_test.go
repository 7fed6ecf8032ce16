package webui_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/webui"
)

// benchBuilds is how many builds the benchmarks' store holds, all of one
// builder.
const benchBuilds = 100_000

var bench struct {
	once sync.Once
	path string
	err  error
}

// benchStore fills a store with benchBuilds finished builds of builder
// "big" (and a few of "small"), directly through the store's API, once per
// test binary, and returns its path.
func benchStore(b *testing.B) string {
	bench.once.Do(func() {
		dir, err := mkdirTemp()
		if err != nil {
			bench.err = err
			return
		}
		bench.path = filepath.Join(dir, "state.sqlite")
		bench.err = fillStore(context.Background(), bench.path)
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.path
}

func fillStore(ctx context.Context, path string) error {
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	big, err := st.EnsureBuilder(ctx, "big", "", nil)
	if err != nil {
		return err
	}
	small, err := st.EnsureBuilder(ctx, "small", "", nil)
	if err != nil {
		return err
	}
	w, err := st.EnsureWorker(ctx, "w1")
	if err != nil {
		return err
	}
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	const perBuildset = 1000
	for n := 0; n < benchBuilds; n += perBuildset {
		ids := make([]int64, perBuildset)
		for i := range ids {
			ids[i] = big.ID
			if i%100 == 0 {
				ids[i] = small.ID
			}
		}
		at := t0.Add(time.Duration(n) * time.Minute)
		reqs, err := st.AddBuildset(ctx, &ci.Buildset{Reason: "bench", SubmittedAt: at, SourceStamps: []ci.SourceStamp{{Branch: "main"}}}, ids, 0)
		if err != nil {
			return err
		}
		for i, r := range reqs {
			build := &ci.Build{BuilderID: r.BuilderID, WorkerID: w.ID, StartedAt: at.Add(time.Duration(i) * time.Second),
				StateString: "building", Properties: ci.Properties{}}
			if err := st.StartBuild(ctx, build, []int64{r.ID}); err != nil {
				return err
			}
			build.Complete, build.CompleteAt, build.StateString = true, build.StartedAt.Add(30*time.Second), "build successful"
			build.Results = ci.Result(i % 3)
			if _, err := st.FinishBuild(ctx, build, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// benchUI starts a master on the filled store and returns its web
// application.
func benchUI(b *testing.B) (http.Handler, int64) {
	path := benchStore(b)
	st, err := sqlite.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	step := &steps.ShellCommand{Command: []string{"true"}}
	m := citest.Start(b, ci.MasterConfig{
		Store:    st,
		Workers:  []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{Name: "big", Workers: []string{"w1"}, Steps: []ci.Step{step}}, {Name: "small", Workers: []string{"w1"}, Steps: []ci.Step{step}}},
	}, citest.Options{NoWorkers: true})
	h, err := webui.NewHandler(m.Master, nil)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := m.BuilderID("big")
	return h, id
}

func benchGet(b *testing.B, h http.Handler, path, want string) {
	b.Helper()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			b.Fatalf("GET %s: %d\n%.500s", path, rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkBuilderPage renders the first page of a builder with 100,000
// builds: 50 builds read with LIMIT, the total counted on an index.
func BenchmarkBuilderPage(b *testing.B) {
	h, _ := benchUI(b)
	benchGet(b, h, "/builders/big", "page 1 of ")
}

// BenchmarkBuilderPage_Deep renders a page far down the history.
func BenchmarkBuilderPage_Deep(b *testing.B) {
	h, _ := benchUI(b)
	benchGet(b, h, "/builders/big?page=1500", "page 1500 of ")
}

// BenchmarkAPIBuilds answers /api/v2/builds?builderid=N&limit=50 over
// 100,000 builds.
func BenchmarkAPIBuilds(b *testing.B) {
	h, id := benchUI(b)
	benchGet(b, h, "/api/v2/builds?builderid="+strconv.FormatInt(id, 10)+"&limit=50", `"total":99000`)
}

// BenchmarkAPIBuilds_Newest answers the newest 50 builds of the builder.
func BenchmarkAPIBuilds_Newest(b *testing.B) {
	h, id := benchUI(b)
	benchGet(b, h, "/api/v2/builds?builderid="+strconv.FormatInt(id, 10)+"&limit=50&order=-number", `"total":99000`)
}

// BenchmarkHome renders the home page: each builder's last build, the
// running builds and the pending requests.
func BenchmarkHome(b *testing.B) {
	h, _ := benchUI(b)
	benchGet(b, h, "/", "Builders")
}

// benchDir is removed by TestMain once every test and benchmark ran.
var benchDir string

func mkdirTemp() (string, error) {
	dir, err := os.MkdirTemp("", "kiln-webui-bench-")
	benchDir = dir
	return dir, err
}

// BenchmarkAPI_LargeList: an anonymous client asks for every one of
// 100,000 changes; the answer is one page, and the heap it costs is
// reported (peak-heap-MiB, sampled while the requests run).
//
//	go test ./webui/ -run '^$' -bench API_LargeList -benchtime 5x
func BenchmarkAPI_LargeList(b *testing.B) {
	m := citest.Start(b, ci.MasterConfig{Workers: []ci.WorkerConfig{{Name: "w1"}}})
	srv := httptest.NewServer(webui.Handler(m.Master))
	b.Cleanup(srv.Close)
	comments := strings.Repeat("a long commit message ", 30)
	for i := range 100_000 {
		if _, err := m.Master.AddChange(b.Context(), &ci.Change{Branch: "main", Revision: strconv.Itoa(i), Author: "Alice <alice@example.org>", Comments: comments}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	b.ResetTimer()
	var bytes int64
	for range b.N {
		resp, err := http.Get(srv.URL + "/api/v2/changes?limit=100000")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		bytes = n
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(bytes)/(1<<20), "answer-MiB")
	b.ReportMetric((float64(peak.Load())-float64(before.HeapInuse))/(1<<20), "peak-heap-MiB")
}

// manyWorkers is how many workers BenchmarkAPIWorkers and
// BenchmarkWorkersPage configure, on three builders.
const manyWorkers = 1000

// benchWorkersUI starts a master with manyWorkers workers, each on the
// three builders, and returns its web application.
func benchWorkersUI(b *testing.B) http.Handler {
	var workers []ci.WorkerConfig
	var names []string
	for i := range manyWorkers {
		name := "w" + strconv.Itoa(i+1)
		workers = append(workers, ci.WorkerConfig{Name: name})
		names = append(names, name)
	}
	step := &steps.ShellCommand{Command: []string{"true"}}
	var builders []ci.BuilderConfig
	for _, name := range []string{"one", "two", "three"} {
		builders = append(builders, ci.BuilderConfig{Name: name, Workers: names, Steps: []ci.Step{step}})
	}
	m := citest.Start(b, ci.MasterConfig{Workers: workers, Builders: builders}, citest.Options{NoWorkers: true})
	h, err := webui.NewHandler(m.Master, nil)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkAPIWorkers lists 1,000 workers, each configured on three
// builders, through /api/v2/workers.
func BenchmarkAPIWorkers(b *testing.B) {
	h := benchWorkersUI(b)
	benchGet(b, h, "/api/v2/workers", `"total":1000`)
}

// BenchmarkWorkersPage renders the page of 1,000 workers.
func BenchmarkWorkersPage(b *testing.B) {
	h := benchWorkersUI(b)
	benchGet(b, h, "/workers", "w1000")
}
