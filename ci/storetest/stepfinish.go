package storetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// testStepEnd runs the cases of a step's end through both methods of
// StepFinishStore: each finishes the logs and the step, and stores the
// next step or the build's end, all or nothing.
func testStepEnd(t *testing.T, open func(*testing.T) *fixture) {
	type variant struct {
		name string
		// finish records the end of st with what the method stores
		// besides.
		finish func(f *fixture, fs ci.StepFinishStore, build *ci.Build, st *ci.StepRecord, ends []ci.LogEnd) error
		// stored reports whether that other part was stored.
		stored func(f *fixture, build *ci.Build) bool
	}
	variants := []variant{
		{"FinishStepAddStep", func(f *fixture, fs ci.StepFinishStore, build *ci.Build, st *ci.StepRecord, ends []ci.LogEnd) error {
			next := &ci.StepRecord{BuildID: build.ID, Number: 1, Name: "next", StartedAt: at(16)}
			return fs.FinishStepAddStep(f.ctx, st, ends, next)
		}, func(f *fixture, build *ci.Build) bool {
			steps, err := f.s.ListSteps(f.ctx, build.ID)
			require.NoError(f.t, err)
			return len(steps) == 2
		}},
		{"AddStepLogs", func(f *fixture, _ ci.StepFinishStore, build *ci.Build, st *ci.StepRecord, ends []ci.LogEnd) error {
			next := &ci.StepRecord{BuildID: build.ID, Number: 1, Name: "next", StartedAt: at(16)}
			return stepLogStore(f).AddStepLogs(f.ctx, st, ends, next, []*ci.Log{{Name: "stdio", Type: ci.LogStream}})
		}, func(f *fixture, build *ci.Build) bool {
			steps, err := f.s.ListSteps(f.ctx, build.ID)
			require.NoError(f.t, err)
			if len(steps) != 2 {
				return false
			}
			logs, err := f.s.ListLogs(f.ctx, steps[1].ID)
			require.NoError(f.t, err)
			return len(logs) == 1
		}},
		{"FinishStepAndBuild", func(f *fixture, fs ci.StepFinishStore, build *ci.Build, st *ci.StepRecord, ends []ci.LogEnd) error {
			b := *build
			b.Results, b.Complete, b.CompleteAt, b.StateString = ci.Warnings, true, at(17), "warnings"
			_, err := fs.FinishStepAndBuild(f.ctx, st, ends, &b, false)
			return err
		}, func(f *fixture, build *ci.Build) bool {
			got, err := f.s.GetBuild(f.ctx, build.ID)
			require.NoError(f.t, err)
			return got.Complete
		}},
	}
	// setup makes a step with two logs, the first holding a line.
	setup := func(t *testing.T) (*fixture, ci.StepFinishStore, *ci.Build, *ci.StepRecord, *ci.Log, *ci.Log) {
		f := open(t)
		fs, ok := f.s.(ci.StepFinishStore)
		if !ok {
			t.Skip("the store records a step's end with separate writes (no StepFinishStore)")
		}
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		st := f.step(build.ID, 0, "test")
		stdio, other := f.log(st.ID, "stdio"), f.log(st.ID, "other")
		_, _, err := f.s.AppendLog(f.ctx, stdio.ID, "a\n")
		require.NoError(t, err)
		return f, fs, build, st, stdio, other
	}
	end := func(st *ci.StepRecord) {
		st.StateString = "tested"
		st.Results = ci.Warnings
		st.Complete = true
		st.CompleteAt = at(15)
		st.URLs = []ci.StepURL{{Name: "a", URL: "https://a"}}
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Run("OK", func(t *testing.T) {
				f, fs, build, st, stdio, other := setup(t)
				end(st)
				ends := []ci.LogEnd{{LogID: stdio.ID, Text: "b\nc\n"}, {LogID: other.ID}}
				require.NoError(t, v.finish(f, fs, build, st, ends))
				assert.Equal(t, [2]int{1, 2}, [2]int{ends[0].First, ends[0].Last})
				assert.Equal(t, [2]int{-1, -1}, [2]int{ends[1].First, ends[1].Last})
				assert.True(t, v.stored(f, build))

				got, err := f.s.GetStep(f.ctx, st.ID)
				require.NoError(t, err)
				assert.Equal(t, st, got)
				for _, l := range []struct {
					id    int64
					lines int
					text  string
				}{{stdio.ID, 3, "a\nb\nc\n"}, {other.ID, 0, ""}} {
					got, err := f.s.GetLog(f.ctx, l.id)
					require.NoError(t, err)
					assert.True(t, got.Complete, "log %d complete", l.id)
					assert.Equal(t, l.lines, got.NumLines)
					text, err := f.s.LogLines(f.ctx, l.id, 0, -1)
					require.NoError(t, err)
					assert.Equal(t, l.text, text)
				}
			})
			t.Run("NoLogs", func(t *testing.T) {
				f, fs, build, st, _, _ := setup(t)
				end(st)
				require.NoError(t, v.finish(f, fs, build, st, nil))
				got, err := f.s.GetStep(f.ctx, st.ID)
				require.NoError(t, err)
				assert.Equal(t, st, got)
				assert.True(t, v.stored(f, build))
			})
			// A log that cannot be finished leaves everything as it was:
			// the other log open, the step running, nothing else stored.
			for _, c := range []struct {
				name  string
				setup func(f *fixture, other *ci.Log)
				text  string
				is    error
			}{
				{"ErrConflict", func(f *fixture, other *ci.Log) {
					_, _, err := f.s.FinishLog(f.ctx, other.ID, "")
					require.NoError(f.t, err)
				}, "late\n", ci.ErrConflict},
				{"ErrNotFound", func(f *fixture, other *ci.Log) { other.ID = 4242 }, "", ci.ErrNotFound},
				{"NotWholeLines", func(*fixture, *ci.Log) {}, "partial", nil},
			} {
				t.Run(c.name, func(t *testing.T) {
					f, fs, build, st, stdio, other := setup(t)
					c.setup(f, other)
					end(st)
					err := v.finish(f, fs, build, st, []ci.LogEnd{{LogID: stdio.ID, Text: "b\n"}, {LogID: other.ID, Text: c.text}})
					require.Error(t, err)
					if c.is != nil {
						assert.ErrorIs(t, err, c.is)
					}
					got, err := f.s.GetStep(f.ctx, st.ID)
					require.NoError(t, err)
					assert.False(t, got.Complete, "the step is still running")
					assert.Empty(t, got.StateString)
					l, err := f.s.GetLog(f.ctx, stdio.ID)
					require.NoError(t, err)
					assert.False(t, l.Complete, "the first log is still open")
					assert.Equal(t, 1, l.NumLines)
					assert.False(t, v.stored(f, build), "nothing else stored")
				})
			}
			t.Run("ErrNotFound_Step", func(t *testing.T) {
				f, fs, build, _, stdio, _ := setup(t)
				err := v.finish(f, fs, build, &ci.StepRecord{ID: 4242, Complete: true}, []ci.LogEnd{{LogID: stdio.ID, Text: "b\n"}})
				assert.ErrorIs(t, err, ci.ErrNotFound)
				l, err := f.s.GetLog(f.ctx, stdio.ID)
				require.NoError(t, err)
				assert.False(t, l.Complete, "the log is still open")
				assert.False(t, v.stored(f, build), "nothing else stored")
			})
		})
	}
}

func testFinishStepAddStep(t *testing.T, open func(*testing.T) *fixture) {
	setup := func(t *testing.T) (*fixture, ci.StepFinishStore, *ci.StepRecord, *ci.Log) {
		f := open(t)
		fs, ok := f.s.(ci.StepFinishStore)
		if !ok {
			t.Skip("the store records a step's end with separate writes (no StepFinishStore)")
		}
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		st := f.step(build.ID, 0, "first")
		return f, fs, st, f.log(st.ID, "stdio")
	}
	t.Run("OK", func(t *testing.T) {
		f, fs, st, l := setup(t)
		st.StateString, st.Results, st.Complete, st.CompleteAt = "done", ci.Success, true, at(12)
		next := &ci.StepRecord{BuildID: st.BuildID, Number: 1, Name: "second", StartedAt: at(12), StateString: "second"}
		ends := []ci.LogEnd{{LogID: l.ID, Text: "a\n"}}
		require.NoError(t, fs.FinishStepAddStep(f.ctx, st, ends, next))
		assert.NotZero(t, next.ID)
		assert.Equal(t, [2]int{0, 0}, [2]int{ends[0].First, ends[0].Last})
		steps, err := f.s.ListSteps(f.ctx, st.BuildID)
		require.NoError(t, err)
		require.Len(t, steps, 2)
		assert.Equal(t, st, steps[0])
		assert.Equal(t, next, steps[1])
		got, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		assert.True(t, got.Complete)
		assert.Equal(t, 1, got.NumLines)
	})
	t.Run("Atomic", func(t *testing.T) {
		// The next step refers to no build: nothing is stored.
		f, fs, st, l := setup(t)
		st.Results, st.Complete = ci.Success, true
		next := &ci.StepRecord{BuildID: 4242, Number: 1, Name: "second", StartedAt: at(12)}
		err := fs.FinishStepAddStep(f.ctx, st, []ci.LogEnd{{LogID: l.ID, Text: "a\n"}}, next)
		require.Error(t, err)
		got, err := f.s.GetStep(f.ctx, st.ID)
		require.NoError(t, err)
		assert.False(t, got.Complete, "the first step is still running")
		lg, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		assert.False(t, lg.Complete)
		assert.Zero(t, lg.NumLines)
	})
}

func testFinishStepAndBuild(t *testing.T, open func(*testing.T) *fixture) {
	setup := func(t *testing.T) (*fixture, ci.StepFinishStore, *ci.Build, *ci.StepRecord, *ci.Log, int64) {
		f := open(t)
		fs, ok := f.s.(ci.StepFinishStore)
		if !ok {
			t.Skip("the store records a step's end with separate writes (no StepFinishStore)")
		}
		b := f.builder("b")
		bs, reqs := f.buildset(at(0), 0, b.ID)
		build := f.start(b.ID, reqs[0])
		st := f.step(build.ID, 0, "only")
		return f, fs, build, st, f.log(st.ID, "stdio"), bs.ID
	}
	t.Run("OK", func(t *testing.T) {
		f, fs, build, st, l, bsID := setup(t)
		st.StateString, st.Results, st.Complete, st.CompleteAt = "tested", ci.Warnings, true, at(20)
		build.Results, build.Complete, build.CompleteAt, build.StateString = ci.Warnings, true, at(21), "warnings"
		ends := []ci.LogEnd{{LogID: l.ID, Text: "a\nb\n"}}
		done, err := fs.FinishStepAndBuild(f.ctx, st, ends, build, false)
		require.NoError(t, err)
		assert.Equal(t, []ci.BuildsetResult{{ID: bsID, Results: ci.Warnings}}, done)
		assert.Equal(t, [2]int{0, 1}, [2]int{ends[0].First, ends[0].Last})
		got, err := f.s.GetStep(f.ctx, st.ID)
		require.NoError(t, err)
		assert.Equal(t, st, got, "the step keeps its own state, not the build's")
		gb, err := f.s.GetBuild(f.ctx, build.ID)
		require.NoError(t, err)
		assert.True(t, gb.Complete)
		assert.Equal(t, "warnings", gb.StateString)
		lg, err := f.s.GetLog(f.ctx, l.ID)
		require.NoError(t, err)
		assert.True(t, lg.Complete)
		assert.Equal(t, 2, lg.NumLines)
		assert.True(t, f.getBuildset(bsID).Complete)
	})
	t.Run("Atomic", func(t *testing.T) {
		// The build is finished already: the step's end is not stored.
		f, fs, build, st, l, _ := setup(t)
		build.Results, build.Complete, build.CompleteAt = ci.Success, true, at(21)
		_, err := f.s.FinishBuild(f.ctx, build, false)
		require.NoError(t, err)
		st.StateString, st.Results, st.Complete = "late", ci.Success, true
		_, err = fs.FinishStepAndBuild(f.ctx, st, []ci.LogEnd{{LogID: l.ID}}, build, false)
		require.ErrorIs(t, err, ci.ErrConflict)
		got, err := f.s.GetStep(f.ctx, st.ID)
		require.NoError(t, err)
		assert.NotEqual(t, "late", got.StateString, "the step's end is not stored")
	})
}

// stepLogStore returns the fixture's store as a StepLogStore, which both
// of Kiln's stores are.
func stepLogStore(f *fixture) ci.StepLogStore {
	ls, ok := f.s.(ci.StepLogStore)
	require.True(f.t, ok, "%T is not a ci.StepLogStore", f.s)
	return ls
}

// testAddStepLogs stores a step with its first logs: each gets its ID,
// its step's and a slug unique in the step, and nothing is stored when
// the step cannot be.
func testAddStepLogs(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("OK", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		st := &ci.StepRecord{BuildID: build.ID, Number: 0, Name: "compile", StartedAt: at(11), StateString: "compiling"}
		logs := []*ci.Log{{Name: "stdio", Type: ci.LogStream}, {Name: "stdio", Type: ci.LogText}, {Name: "test results"}}
		require.NoError(t, stepLogStore(f).AddStepLogs(f.ctx, nil, nil, st, logs))
		require.NotZero(t, st.ID)
		got, err := f.s.GetStep(f.ctx, st.ID)
		require.NoError(t, err)
		assert.Equal(t, st, got)
		stored, err := f.s.ListLogs(f.ctx, st.ID)
		require.NoError(t, err)
		require.Len(t, stored, 3)
		for i, want := range []struct{ name, slug, typ string }{{"stdio", "stdio", ci.LogStream}, {"stdio", "stdio_2", ci.LogText}, {"test results", "test_results", ""}} {
			assert.Equal(t, st.ID, logs[i].StepID)
			assert.Equal(t, want.slug, logs[i].Slug)
			assert.Equal(t, logs[i].ID, stored[i].ID)
			assert.Equal(t, [3]string{want.name, want.slug, want.typ}, [3]string{stored[i].Name, stored[i].Slug, stored[i].Type})
			assert.False(t, stored[i].Complete)
		}
		// The logs take lines as any other.
		first, last, err := f.s.AppendLog(f.ctx, logs[0].ID, "ohello\n")
		require.NoError(t, err)
		assert.Equal(t, [2]int{0, 0}, [2]int{first, last})
	})
	t.Run("NothingOnError", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		prev := f.step(build.ID, 0, "prev")
		prev.Complete, prev.CompleteAt, prev.StateString = true, at(12), "done"
		st := &ci.StepRecord{BuildID: 4242, Number: 1, Name: "orphan", StartedAt: at(13)}
		err := stepLogStore(f).AddStepLogs(f.ctx, prev, nil, st, []*ci.Log{{Name: "stdio", Type: ci.LogStream}})
		require.ErrorIs(t, err, ci.ErrNotFound)
		got, err := f.s.GetStep(f.ctx, prev.ID)
		require.NoError(t, err)
		assert.False(t, got.Complete, "the end of the step before is not stored either")
		steps, err := f.s.ListSteps(f.ctx, build.ID)
		require.NoError(t, err)
		assert.Len(t, steps, 1)
	})
}
