package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
)

// These tests leave in the store what a master stopped between recording
// a submission and finishing it would leave, and check that the next
// master neither loses that buildset nor submits it twice.

var recoveryT0 = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

func recoveryConfig(dir string, clock ci.Clock, scheds ...ci.Scheduler) ci.MasterConfig {
	return ci.MasterConfig{
		BaseDir:    dir,
		Clock:      clock,
		Workers:    []ci.WorkerConfig{{Name: "w"}},
		Builders:   []ci.BuilderConfig{{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{&steps.ShellCommand{Command: []string{"true"}}}}},
		Schedulers: scheds,
	}
}

// prepare runs f against a master without the schedulers under test.
func prepare(t *testing.T, dir string, clock ci.Clock, f func(ctx context.Context, m *citest.Master)) {
	t.Helper()
	require.True(t, t.Run("prepare", func(t *testing.T) {
		f(context.Background(), citest.Start(t, recoveryConfig(dir, clock), citest.Options{NoWorkers: true}))
	}))
}

func submittedBy(t *testing.T, m *citest.Master, scheduler string) []*ci.Buildset {
	t.Helper()
	var out []*ci.Buildset
	err := buildsetsAfter(context.Background(), m.Store, 0, func(bs *ci.Buildset) (bool, error) {
		if bs.Scheduler == scheduler {
			out = append([]*ci.Buildset{bs}, out...)
		}
		return true, nil
	})
	require.NoError(t, err)
	return out
}

// settle waits until the scheduler's document has no pending intent.
func settle(t *testing.T, m *citest.Master, name, key string, doc any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), citest.DefaultTimeout)
	defer cancel()
	for {
		var probe struct {
			Pending []intent `json:"pending"`
		}
		found, err := loadState(ctx, m.Store, name, key, &probe)
		require.NoError(t, err)
		if found && len(probe.Pending) == 0 {
			_, err := loadState(ctx, m.Store, name, key, doc)
			require.NoError(t, err)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting for the scheduler to settle")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestRecovery_TreeStable(t *testing.T) {
	for _, alreadySubmitted := range []bool{false, true} {
		t.Run(fmt.Sprintf("submitted=%v", alreadySubmitted), func(t *testing.T) {
			dir := t.TempDir()
			clock := citest.NewClock(recoveryT0)
			var change ci.Change
			var token string
			prepare(t, dir, clock, func(ctx context.Context, m *citest.Master) {
				change = ci.Change{Branch: "main", Revision: "r1"}
				_, err := m.Master.AddChange(ctx, &change)
				require.NoError(t, err)
				token = fmt.Sprintf("s:changes:%d", change.ID)
				in, err := newIntent(ctx, m.Store, token)
				require.NoError(t, err)
				in.Changes = []int64{change.ID}
				require.NoError(t, saveState(ctx, m.Store, "s", stateKeyTreeStable, treeStableState{Pending: []intent{in}}))
				if alreadySubmitted {
					_, _, err := m.Master.Submit(ctx, ci.Submission{Builders: []string{"a"}, Scheduler: "s", ExternalID: token})
					require.NoError(t, err)
				}
			})
			s := &AnyBranch{Name: "s", Builders: []string{"a"}, TreeStableTimer: time.Minute}
			m := citest.Start(t, recoveryConfig(dir, clock, s), citest.Options{NoWorkers: true})
			var doc treeStableState
			settle(t, m, "s", stateKeyTreeStable, &doc)
			assert.Empty(t, doc.Groups)
			got := submittedBy(t, m, "s")
			require.Len(t, got, 1)
			assert.Equal(t, token, got[0].ExternalID)
			if !alreadySubmitted {
				assert.Equal(t, []int64{change.ID}, got[0].SourceStamps[0].Changes)
			}
		})
	}
}

func TestRecovery_Timed(t *testing.T) {
	for _, alreadySubmitted := range []bool{false, true} {
		t.Run(fmt.Sprintf("submitted=%v", alreadySubmitted), func(t *testing.T) {
			dir := t.TempDir()
			clock := citest.NewClock(recoveryT0)
			token := "p:at:" + recoveryT0.Format(time.RFC3339Nano)
			prepare(t, dir, clock, func(ctx context.Context, m *citest.Master) {
				in, err := newIntent(ctx, m.Store, token)
				require.NoError(t, err)
				require.NoError(t, saveState(ctx, m.Store, "p", stateKeyTimed, timedState{LastBuild: recoveryT0, Pending: []intent{in}}))
				if alreadySubmitted {
					_, _, err := m.Master.Submit(ctx, ci.Submission{Builders: []string{"a"}, Scheduler: "p", ExternalID: token})
					require.NoError(t, err)
				}
			})
			clock.Advance(10 * time.Minute)
			p := &Periodic{Name: "p", Builders: []string{"a"}, Interval: time.Hour}
			m := citest.Start(t, recoveryConfig(dir, clock, p), citest.Options{NoWorkers: true})
			ctx, cancel := context.WithTimeout(context.Background(), citest.DefaultTimeout)
			defer cancel()
			require.True(t, clock.WaitTimers(ctx, 1))
			var doc timedState
			settle(t, m, "p", stateKeyTimed, &doc)
			assert.Equal(t, recoveryT0, doc.LastBuild.UTC())
			assert.Equal(t, []time.Time{recoveryT0.Add(time.Hour)}, clock.Timers(), "the recorded build counts as the last one")
			got := submittedBy(t, m, "p")
			require.Len(t, got, 1)
			assert.Equal(t, token, got[0].ExternalID)
		})
	}
}

func TestRecovery_Dependent(t *testing.T) {
	for _, alreadySubmitted := range []bool{false, true} {
		t.Run(fmt.Sprintf("submitted=%v", alreadySubmitted), func(t *testing.T) {
			dir := t.TempDir()
			var upstream *ci.Buildset
			var token string
			prepare(t, dir, nil, func(ctx context.Context, m *citest.Master) {
				var err error
				upstream, _, err = m.Master.Submit(ctx, ci.Submission{Builders: []string{"a"}, Scheduler: "up",
					SourceStamps: []ci.SourceStamp{{Branch: "main", Revision: "r1"}}})
				require.NoError(t, err)
				token = fmt.Sprintf("down:upstream:%d", upstream.ID)
				in, err := newIntent(ctx, m.Store, token)
				require.NoError(t, err)
				in.Upstream = upstream.ID
				require.NoError(t, saveState(ctx, m.Store, "down", stateKeyDependent, dependentState{Seen: upstream.ID, Pending: []intent{in}}))
				if alreadySubmitted {
					_, _, err := m.Master.Submit(ctx, ci.Submission{Builders: []string{"a"}, Scheduler: "down", ExternalID: token})
					require.NoError(t, err)
				}
			})
			up := &Force{Name: "up", Builders: []string{"a"}}
			down := &Dependent{Name: "down", Upstream: "up", Builders: []string{"a"}}
			m := citest.Start(t, recoveryConfig(dir, nil, up, down), citest.Options{NoWorkers: true})
			var doc dependentState
			settle(t, m, "down", stateKeyDependent, &doc)
			got := submittedBy(t, m, "down")
			require.Len(t, got, 1)
			assert.Equal(t, token, got[0].ExternalID)
			if !alreadySubmitted {
				assert.Equal(t, upstream.SourceStamps[0].ID, got[0].SourceStamps[0].ID, "the upstream buildset's very source stamps")
			}
		})
	}
}
