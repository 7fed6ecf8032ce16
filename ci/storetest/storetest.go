// Package storetest is a conformance suite for implementations of
// [ci.Store]: every implementation runs the same tests of the contract
// written on the interface.
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) ci.Store {
//			s, err := mystore.Open(t.Context(), filepath.Join(t.TempDir(), "db"))
//			require.NoError(t, err)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The tests store times in UTC with millisecond precision and property
// values that survive a JSON round trip (strings, float64, booleans, and
// lists and maps of those), and expect them back equal.
package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// Run runs the conformance suite: a subtest per method group
// ("BuildStore_StartBuild"), each with subtests per case ("OK",
// "ErrConflict"). open must return a new, empty store for the test it is
// given, and close it when that test ends (t.Cleanup); the suite never
// calls Close. The tests run one after another; the concurrency tests call
// one store from many goroutines, so run the suite under -race.
func Run(t *testing.T, open func(t *testing.T) ci.Store) {
	groups := []struct {
		name string
		run  func(*testing.T, func(*testing.T) *fixture)
	}{
		{"WorkerStore_EnsureBuilder", testEnsureBuilder},
		{"WorkerStore_EnsureWorker", testEnsureWorker},
		{"WorkerStore_SetWorkerConnected", testSetWorkerConnected},
		{"ChangeStore_AddChange", testAddChange},
		{"ChangeStore_GetChange", testGetChange},
		{"ChangeStore_ListChanges", testListChanges},
		{"ChangeStore_ChangesAfter", testChangesAfter},
		{"ChangeStore_SourceStamps", testSourceStamps},
		{"RequestStore_AddBuildset", testAddBuildset},
		{"RequestStore_AddBuildset_ExternalID", testAddBuildsetIdempotent},
		{"RequestStore_ListBuildsets", testListBuildsets},
		{"RequestStore_GetRequest", testGetRequest},
		{"RequestStore_ListRequests", testListRequests},
		{"RequestStore_PendingRequests", testPendingRequests},
		{"RequestStore_CancelRequest", testCancelRequest},
		{"BuildStore_StartBuild", testStartBuild},
		{"BuildStore_FinishBuild", testFinishBuild},
		{"BuildStore_SetBuildState", testSetBuildState},
		{"BuildStore_GetBuild", testGetBuild},
		{"BuildStore_FindBuild", testFindBuild},
		{"BuildStore_ListBuilds", testListBuilds},
		{"BuildStore_ListBuilds_ChangeID", testChangeBuilds},
		{"BuildStore_UnfinishedBuilds", testUnfinishedBuilds},
		{"BuildStore_AddStep", testAddStep},
		{"BuildStore_UpdateStep", testUpdateStep},
		{"BuildStore_ListSteps", testListSteps},
		{"StepFinishStore", testStepEnd},
		{"StepFinishStore_FinishStepAddStep", testFinishStepAddStep},
		{"StepFinishStore_FinishStepAndBuild", testFinishStepAndBuild},
		{"StepLogStore_AddStepLogs", testAddStepLogs},
		{"LogStore_AddLog", testAddLog},
		{"LogStore_AppendLog", testAppendLog},
		{"LogStore_FinishLog", testFinishLog},
		{"LogStore_LogLines", testLogLines},
		{"StateStore", testState},
		{"RetentionStore", testRetention},
		{"TestResultStore", testTestResults},
		{"Times", testTimes},
		{"Records", testRecords},
		{"Concurrency", testConcurrency},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			g.run(t, func(t *testing.T) *fixture {
				t.Helper()
				s := open(t)
				require.NotNil(t, s, "open returned no store")
				return &fixture{t: t, s: s, ctx: t.Context()}
			})
		})
	}
}

// t0 is the time the tests' records start at: in UTC, to the millisecond.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

// at returns t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

// A fixture is a store under test with helpers making records.
type fixture struct {
	t   *testing.T
	s   ci.Store
	ctx context.Context
}

func (f *fixture) builder(name string) *ci.Builder {
	f.t.Helper()
	b, err := f.s.EnsureBuilder(f.ctx, name, "", nil)
	require.NoError(f.t, err)
	return b
}

func (f *fixture) worker(name string) *ci.Worker {
	f.t.Helper()
	w, err := f.s.EnsureWorker(f.ctx, name)
	require.NoError(f.t, err)
	return w
}

// buildset submits a buildset at submitted with one request per builder.
func (f *fixture) buildset(submitted time.Time, priority int, builderIDs ...int64) (*ci.Buildset, []*ci.BuildRequest) {
	f.t.Helper()
	bs := &ci.Buildset{
		Reason:       "test",
		SubmittedAt:  submitted,
		SourceStamps: []ci.SourceStamp{{Repository: "https://example.org/r.git", Branch: "main"}},
		Properties:   ci.Properties{},
	}
	reqs, err := f.s.AddBuildset(f.ctx, bs, builderIDs, priority)
	require.NoError(f.t, err)
	require.Len(f.t, reqs, len(builderIDs))
	return bs, reqs
}

// request submits a buildset for one builder and returns its request.
func (f *fixture) request(builderID int64) *ci.BuildRequest {
	f.t.Helper()
	_, reqs := f.buildset(at(0), 0, builderID)
	return reqs[0]
}

// start starts a build of builderID for the requests.
func (f *fixture) start(builderID int64, reqs ...*ci.BuildRequest) *ci.Build {
	f.t.Helper()
	ids := make([]int64, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}
	b := &ci.Build{BuilderID: builderID, StartedAt: at(10), StateString: "building", Properties: ci.Properties{}}
	require.NoError(f.t, f.s.StartBuild(f.ctx, b, ids))
	return b
}

func (f *fixture) finish(b *ci.Build, results ci.Result, resubmit bool) []int64 {
	f.t.Helper()
	b.Results = results
	b.Complete = true
	b.CompleteAt = at(20)
	done, err := f.s.FinishBuild(f.ctx, b, resubmit)
	require.NoError(f.t, err)
	return done
}

func (f *fixture) step(buildID int64, number int, name string) *ci.StepRecord {
	f.t.Helper()
	st := &ci.StepRecord{BuildID: buildID, Number: number, Name: name, StartedAt: at(11)}
	require.NoError(f.t, f.s.AddStep(f.ctx, st))
	return st
}

func (f *fixture) log(stepID int64, name string) *ci.Log {
	f.t.Helper()
	l := &ci.Log{StepID: stepID, Name: name, Type: ci.LogStream}
	require.NoError(f.t, f.s.AddLog(f.ctx, l))
	return l
}

// newLog makes a builder, a build, a step and a log of it.
func (f *fixture) newLog() *ci.Log {
	f.t.Helper()
	b := f.builder("b")
	build := f.start(b.ID, f.request(b.ID))
	return f.log(f.step(build.ID, 0, "shell").ID, "stdio")
}

func (f *fixture) getRequest(id int64) *ci.BuildRequest {
	f.t.Helper()
	r, err := f.s.GetRequest(f.ctx, id)
	require.NoError(f.t, err)
	return r
}

func (f *fixture) getBuildset(id int64) *ci.Buildset {
	f.t.Helper()
	bs, err := f.s.GetBuildset(f.ctx, id)
	require.NoError(f.t, err)
	return bs
}

func (f *fixture) getBuild(id int64) *ci.Build {
	f.t.Helper()
	b, err := f.s.GetBuild(f.ctx, id)
	require.NoError(f.t, err)
	return b
}

func (f *fixture) pendingIDs() []int64 {
	f.t.Helper()
	reqs, err := f.s.PendingRequests(f.ctx)
	require.NoError(f.t, err)
	return requestIDs(reqs)
}

func requestIDs(reqs []*ci.BuildRequest) []int64 {
	ids := []int64{}
	for _, r := range reqs {
		ids = append(ids, r.ID)
	}
	return ids
}

func buildIDs(builds []*ci.Build) []int64 {
	ids := []int64{}
	for _, b := range builds {
		ids = append(ids, b.ID)
	}
	return ids
}

func ptr[T any](v T) *T { return &v }

// lines returns n numbered lines starting at line from, with prefix.
func lines(prefix string, from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	return b.String()
}
