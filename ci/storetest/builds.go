package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func testStartBuild(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		w := f.worker("w")
		r := f.request(b.ID)
		props := ci.Properties{}
		props.Set("buildername", "b", ci.SourceBuilder)
		build := &ci.Build{BuilderID: b.ID, WorkerID: w.ID, StartedAt: at(10), StateString: "starting", Properties: props}
		require.NoError(t, f.s.StartBuild(f.ctx, build, []int64{r.ID}))
		assert.NotZero(t, build.ID)
		assert.Equal(t, 1, build.Number)
		assert.Equal(t, r.ID, build.BuildRequestID)
		assert.False(t, build.Complete)

		got := f.getBuild(build.ID)
		assert.Equal(t, build, got)

		gr := f.getRequest(r.ID)
		assert.True(t, gr.Claimed)
		assert.Equal(t, at(10), gr.ClaimedAt)
		assert.Equal(t, build.ID, gr.BuildID)
		assert.False(t, gr.Complete)
		assert.Empty(t, f.pendingIDs())
	})
	t.Run("Numbers", func(t *testing.T) {
		f := open(t)
		b1, b2 := f.builder("b1"), f.builder("b2")
		for i := 1; i <= 3; i++ {
			assert.Equal(t, i, f.start(b1.ID, f.request(b1.ID)).Number)
		}
		assert.Equal(t, 1, f.start(b2.ID, f.request(b2.ID)).Number, "numbers count per builder")
		assert.Equal(t, 4, f.start(b1.ID, f.request(b1.ID)).Number)
	})
	t.Run("SeveralRequests", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		r1, r2, r3 := f.request(b.ID), f.request(b.ID), f.request(b.ID)
		build := f.start(b.ID, r3, r1)
		assert.Equal(t, r3.ID, build.BuildRequestID, "the first request is the build's")
		for _, r := range []*ci.BuildRequest{r1, r3} {
			got := f.getRequest(r.ID)
			assert.True(t, got.Claimed)
			assert.Equal(t, build.ID, got.BuildID)
		}
		assert.Equal(t, []int64{r2.ID}, f.pendingIDs())
	})
	t.Run("ErrConflict", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		claimed, pending := f.request(b.ID), f.request(b.ID)
		first := f.start(b.ID, claimed)

		build := &ci.Build{BuilderID: b.ID, StartedAt: at(11)}
		err := f.s.StartBuild(f.ctx, build, []int64{pending.ID, claimed.ID})
		assert.ErrorIs(t, err, ci.ErrConflict)

		// Nothing changed.
		assert.Equal(t, pending, f.getRequest(pending.ID))
		assert.Equal(t, first.ID, f.getRequest(claimed.ID).BuildID)
		builds, total, err := f.s.ListBuilds(f.ctx, ci.BuildQuery{})
		require.NoError(t, err)
		assert.Equal(t, 1, total)
		assert.Equal(t, []int64{first.ID}, buildIDs(builds))
		assert.Equal(t, 2, f.start(b.ID, pending).Number, "the failed start took no number")
	})
	t.Run("ErrConflictComplete", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		done, cancelled := f.request(b.ID), f.request(b.ID)
		f.finish(f.start(b.ID, done), ci.Success, false)
		require.NoError(t, f.s.CancelRequest(f.ctx, cancelled.ID, at(1)))
		for _, r := range []*ci.BuildRequest{done, cancelled} {
			err := f.s.StartBuild(f.ctx, &ci.Build{BuilderID: b.ID, StartedAt: at(30)}, []int64{r.ID})
			assert.ErrorIs(t, err, ci.ErrConflict)
		}
	})
	t.Run("SameRequestTwice", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		r := f.request(b.ID)
		err := f.s.StartBuild(f.ctx, &ci.Build{BuilderID: b.ID, StartedAt: at(1)}, []int64{r.ID, r.ID})
		if err == nil {
			// Claiming a request once for both mentions is fine too.
			assert.Empty(t, f.pendingIDs())
			return
		}
		assert.ErrorIs(t, err, ci.ErrConflict)
		assert.Equal(t, []int64{r.ID}, f.pendingIDs())
	})
}

func testFinishBuild(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		bs, reqs := f.buildset(at(0), 0, b.ID)
		build := f.start(b.ID, reqs[0])
		build.StateString = "failed compile"
		build.Properties.Set("got_revision", "abc", "git")
		done := f.finish(build, ci.Failure, false)
		assert.Equal(t, []int64{bs.ID}, done)

		got := f.getBuild(build.ID)
		assert.Equal(t, build, got)
		assert.True(t, got.Complete)
		assert.Equal(t, ci.Failure, got.Results)
		assert.Equal(t, at(20), got.CompleteAt)
		assert.Equal(t, "failed compile", got.StateString)
		assert.Equal(t, "abc", got.Properties.String("got_revision"))

		r := f.getRequest(reqs[0].ID)
		assert.True(t, r.Complete)
		assert.Equal(t, ci.Failure, r.Results)
		assert.Equal(t, at(20), r.CompleteAt)
		assert.Equal(t, build.ID, r.BuildID)

		gbs := f.getBuildset(bs.ID)
		assert.True(t, gbs.Complete)
		assert.Equal(t, ci.Failure, gbs.Results)
		assert.Equal(t, at(20), gbs.CompleteAt)
	})
	t.Run("SeveralRequests", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		bs1, r1 := f.buildset(at(0), 0, b.ID)
		bs2, r2 := f.buildset(at(1), 0, b.ID)
		done := f.finish(f.start(b.ID, r2[0], r1[0]), ci.Warnings, false)
		assert.ElementsMatch(t, []int64{bs1.ID, bs2.ID}, done)
		for _, r := range []*ci.BuildRequest{r1[0], r2[0]} {
			got := f.getRequest(r.ID)
			assert.True(t, got.Complete)
			assert.Equal(t, ci.Warnings, got.Results)
		}
	})
	t.Run("Resubmit", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		bs, reqs := f.buildset(at(0), 0, b.ID)
		other := f.request(b.ID)
		build := f.start(b.ID, reqs[0], other)
		done := f.finish(build, ci.Retry, true)
		assert.Empty(t, done)

		assert.True(t, f.getBuild(build.ID).Complete)
		assert.Equal(t, ci.Retry, f.getBuild(build.ID).Results)
		for _, id := range []int64{reqs[0].ID, other.ID} {
			r := f.getRequest(id)
			assert.False(t, r.Claimed, "request %d is pending again", id)
			assert.False(t, r.Complete)
			assert.True(t, r.ClaimedAt.IsZero())
		}
		assert.ElementsMatch(t, []int64{reqs[0].ID, other.ID}, f.pendingIDs())
		assert.False(t, f.getBuildset(bs.ID).Complete)

		again := f.start(b.ID, reqs[0])
		assert.Equal(t, 2, again.Number)
		assert.Equal(t, []int64{bs.ID}, f.finish(again, ci.Success, false))
		assert.Equal(t, ci.Success, f.getBuildset(bs.ID).Results)
	})
	t.Run("WorstResult", func(t *testing.T) {
		for _, tt := range []struct {
			a, b, want ci.Result
		}{
			{ci.Success, ci.Failure, ci.Failure},
			{ci.Failure, ci.Success, ci.Failure},
			{ci.Skipped, ci.Success, ci.Success},
			{ci.Skipped, ci.Skipped, ci.Skipped},
			{ci.Warnings, ci.Success, ci.Warnings},
			{ci.Exception, ci.Failure, ci.Exception},
		} {
			t.Run(fmt.Sprint(tt.a, "_", tt.b), func(t *testing.T) {
				f := open(t)
				b1, b2 := f.builder("b1"), f.builder("b2")
				bs, reqs := f.buildset(at(0), 0, b1.ID, b2.ID)
				assert.Empty(t, f.finish(f.start(b1.ID, reqs[0]), tt.a, false), "one request is left")
				assert.False(t, f.getBuildset(bs.ID).Complete)
				assert.Equal(t, []int64{bs.ID}, f.finish(f.start(b2.ID, reqs[1]), tt.b, false))
				got := f.getBuildset(bs.ID)
				assert.True(t, got.Complete)
				assert.Equal(t, tt.want, got.Results)
			})
		}
	})
	t.Run("ClosesStepsAndLogs", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		done := f.step(build.ID, 0, "checkout")
		done.Complete, done.CompleteAt, done.Results = true, at(12), ci.Success
		require.NoError(t, f.s.UpdateStep(f.ctx, done))
		doneLog := f.log(done.ID, "stdio")
		_, _, err := f.s.FinishLog(f.ctx, doneLog.ID, "")
		require.NoError(t, err)
		open1 := f.step(build.ID, 1, "compile")
		openLog := f.log(open1.ID, "stdio")
		_, _, err = f.s.AppendLog(f.ctx, openLog.ID, "ocompiling\n")
		require.NoError(t, err)

		f.finish(build, ci.Exception, false)

		steps, err := f.s.ListSteps(f.ctx, build.ID)
		require.NoError(t, err)
		require.Len(t, steps, 2)
		assert.Equal(t, done, steps[0], "a finished step is left alone")
		assert.True(t, steps[1].Complete)
		assert.Equal(t, ci.Exception, steps[1].Results)
		assert.Equal(t, at(20), steps[1].CompleteAt)

		l, err := f.s.GetLog(f.ctx, openLog.ID)
		require.NoError(t, err)
		assert.True(t, l.Complete)
		assert.Equal(t, 1, l.NumLines)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.FinishBuild(f.ctx, &ci.Build{ID: 42, Complete: true, CompleteAt: at(1)}, false)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
	t.Run("ErrConflict", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		r := f.request(b.ID)
		build := f.start(b.ID, r)
		f.finish(build, ci.Success, false)
		again := *build
		again.Results = ci.Failure
		_, err := f.s.FinishBuild(f.ctx, &again, false)
		assert.ErrorIs(t, err, ci.ErrConflict, "a build finishes once")
		assert.Equal(t, ci.Success, f.getBuild(build.ID).Results)
		assert.Equal(t, ci.Success, f.getRequest(r.ID).Results)
	})
}

func testSetBuildState(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		require.NoError(t, f.s.SetBuildState(f.ctx, build.ID, "compiling"))
		assert.Equal(t, "compiling", f.getBuild(build.ID).StateString)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		assert.ErrorIs(t, f.s.SetBuildState(f.ctx, 42, "x"), ci.ErrNotFound)
	})
}

func testGetBuild(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetBuild(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testFindBuild(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b1, b2 := f.builder("b1"), f.builder("b2")
		f.start(b1.ID, f.request(b1.ID))
		want := f.start(b1.ID, f.request(b1.ID))
		f.start(b2.ID, f.request(b2.ID))
		f.start(b2.ID, f.request(b2.ID))
		got, err := f.s.FindBuild(f.ctx, b1.ID, 2)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		f.start(b.ID, f.request(b.ID))
		_, err := f.s.FindBuild(f.ctx, b.ID, 2)
		assert.ErrorIs(t, err, ci.ErrNotFound)
		_, err = f.s.FindBuild(f.ctx, b.ID+1, 1)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testListBuilds(t *testing.T, open func(*testing.T) *fixture) {
	f := open(t)
	b1, b2 := f.builder("b1"), f.builder("b2")
	w1, w2 := f.worker("w1"), f.worker("w2")
	var builds []*ci.Build
	for i, spec := range []struct {
		builder, worker int64
		done            bool
	}{
		{b1.ID, w1.ID, true},
		{b2.ID, w1.ID, false},
		{b1.ID, w2.ID, false},
		{b1.ID, w1.ID, true},
		{b2.ID, w2.ID, true},
	} {
		build := &ci.Build{BuilderID: spec.builder, WorkerID: spec.worker, StartedAt: at(i), Properties: ci.Properties{}}
		require.NoError(t, f.s.StartBuild(f.ctx, build, []int64{f.request(spec.builder).ID}))
		if spec.done {
			f.finish(build, ci.Success, false)
		}
		builds = append(builds, build)
	}
	id := func(i ...int) []int64 {
		out := []int64{}
		for _, n := range i {
			out = append(out, builds[n].ID)
		}
		return out
	}
	for _, tt := range []struct {
		name  string
		q     ci.BuildQuery
		want  []int64
		total int
	}{
		{"All", ci.BuildQuery{}, id(0, 1, 2, 3, 4), 5},
		{"Builder", ci.BuildQuery{BuilderID: b1.ID}, id(0, 2, 3), 3},
		{"Worker", ci.BuildQuery{WorkerID: w2.ID}, id(2, 4), 2},
		{"Complete", ci.BuildQuery{Complete: ptr(true)}, id(0, 3, 4), 3},
		{"Running", ci.BuildQuery{Complete: ptr(false)}, id(1, 2), 2},
		{"BuilderWorker", ci.BuildQuery{BuilderID: b1.ID, WorkerID: w1.ID}, id(0, 3), 2},
		{"Desc", ci.BuildQuery{Query: ci.Query{Desc: true}}, id(4, 3, 2, 1, 0), 5},
		{"Page", ci.BuildQuery{Query: ci.Query{Limit: 2, Offset: 2}}, id(2, 3), 5},
		{"BuilderDescPage", ci.BuildQuery{BuilderID: b1.ID, Query: ci.Query{Desc: true, Limit: 1}}, id(3), 3},
		{"None", ci.BuildQuery{BuilderID: 999}, id(), 0},
		{"NoTotal", ci.BuildQuery{BuilderID: b1.ID, Query: ci.Query{Desc: true, Limit: 1, NoTotal: true}}, id(3), -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			list, total, err := f.s.ListBuilds(f.ctx, tt.q)
			require.NoError(t, err)
			assert.Equal(t, tt.want, buildIDs(list))
			assert.Equal(t, tt.total, total)
			for _, b := range list {
				assert.Equal(t, f.getBuild(b.ID), b)
			}
		})
	}
}

func testUnfinishedBuilds(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		done := f.start(b.ID, f.request(b.ID))
		running1 := f.start(b.ID, f.request(b.ID))
		running2 := f.start(b.ID, f.request(b.ID))
		f.finish(done, ci.Success, false)
		list, err := f.s.UnfinishedBuilds(f.ctx)
		require.NoError(t, err)
		assert.Equal(t, []*ci.Build{running1, running2}, list)

		// As a master does after a restart.
		for _, b := range list {
			f.finish(b, ci.Retry, true)
		}
		list, err = f.s.UnfinishedBuilds(f.ctx)
		require.NoError(t, err)
		assert.Empty(t, list)
		assert.Len(t, f.pendingIDs(), 2)
	})
	t.Run("Empty", func(t *testing.T) {
		f := open(t)
		list, err := f.s.UnfinishedBuilds(f.ctx)
		require.NoError(t, err)
		assert.Empty(t, list)
	})
}

func testAddStep(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		st := &ci.StepRecord{
			BuildID:     build.ID,
			Number:      3,
			Name:        "compile",
			StartedAt:   at(11),
			StateString: "compiling",
			Hidden:      true,
			URLs:        []ci.StepURL{{Name: "docs", URL: "https://example.org/docs"}},
		}
		require.NoError(t, f.s.AddStep(f.ctx, st))
		assert.NotZero(t, st.ID)
		got, err := f.s.GetStep(f.ctx, st.ID)
		require.NoError(t, err)
		assert.Equal(t, st, got)
		assert.True(t, got.CompleteAt.IsZero())
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		_, err := f.s.GetStep(f.ctx, 42)
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testUpdateStep(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		st := f.step(build.ID, 0, "test")
		st.StateString = "3 tests failed"
		st.Results = ci.Failure
		st.Complete = true
		st.CompleteAt = at(15)
		st.Hidden = true
		st.URLs = []ci.StepURL{{Name: "a", URL: "https://a"}, {Name: "b", URL: "https://b"}}
		require.NoError(t, f.s.UpdateStep(f.ctx, st))
		got, err := f.s.GetStep(f.ctx, st.ID)
		require.NoError(t, err)
		assert.Equal(t, st, got)

		st.URLs = nil
		st.Hidden = false
		require.NoError(t, f.s.UpdateStep(f.ctx, st))
		got, err = f.s.GetStep(f.ctx, st.ID)
		require.NoError(t, err)
		assert.Empty(t, got.URLs)
		assert.False(t, got.Hidden)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		f := open(t)
		err := f.s.UpdateStep(f.ctx, &ci.StepRecord{ID: 42, Complete: true})
		assert.ErrorIs(t, err, ci.ErrNotFound)
	})
}

func testListSteps(t *testing.T, open func(*testing.T) *fixture) {
	f := open(t)
	b := f.builder("b")
	build1 := f.start(b.ID, f.request(b.ID))
	build2 := f.start(b.ID, f.request(b.ID))
	s1 := f.step(build1.ID, 1, "one")
	s0 := f.step(build1.ID, 0, "zero")
	f.step(build2.ID, 0, "other")
	steps, err := f.s.ListSteps(f.ctx, build1.ID)
	require.NoError(t, err)
	assert.Equal(t, []*ci.StepRecord{s0, s1}, steps, "steps come by number")
	steps, err = f.s.ListSteps(f.ctx, 999)
	require.NoError(t, err)
	assert.Empty(t, steps)
}
