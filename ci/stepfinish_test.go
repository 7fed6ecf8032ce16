package ci_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
)

// stepEndStore records the writes that start and end steps, logs and
// builds, and can make the writes of StepFinishStore fail.
type stepEndStore struct {
	*sqlite.Store
	mu         sync.Mutex
	calls      []string
	failFinish error
}

func (s *stepEndStore) record(call string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	if strings.HasPrefix(call, "FinishStep") {
		return s.failFinish
	}
	return nil
}

func (s *stepEndStore) writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *stepEndStore) FinishStepAddStep(ctx context.Context, prev *ci.StepRecord, ends []ci.LogEnd, next *ci.StepRecord) error {
	if err := s.record("FinishStepAddStep"); err != nil {
		return err
	}
	return s.Store.FinishStepAddStep(ctx, prev, ends, next)
}

func (s *stepEndStore) FinishStepAndBuild(ctx context.Context, st *ci.StepRecord, ends []ci.LogEnd, b *ci.Build, resubmit bool) ([]ci.BuildsetResult, error) {
	if err := s.record("FinishStepAndBuild"); err != nil {
		return nil, err
	}
	return s.Store.FinishStepAndBuild(ctx, st, ends, b, resubmit)
}

func (s *stepEndStore) AddStep(ctx context.Context, st *ci.StepRecord) error {
	s.record("AddStep")
	return s.Store.AddStep(ctx, st)
}

func (s *stepEndStore) FinishLog(ctx context.Context, id int64, text string) (int, int, error) {
	s.record("FinishLog")
	return s.Store.FinishLog(ctx, id, text)
}

func (s *stepEndStore) UpdateStep(ctx context.Context, st *ci.StepRecord) error {
	s.record("UpdateStep")
	return s.Store.UpdateStep(ctx, st)
}

func (s *stepEndStore) FinishBuildResults(ctx context.Context, b *ci.Build, resubmit bool) ([]ci.BuildsetResult, error) {
	s.record("FinishBuild")
	return s.Store.FinishBuildResults(ctx, b, resubmit)
}

// noFinishStepStore is a store without FinishStep.
type noFinishStepStore struct{ ci.Store }

func openStore(t *testing.T) *sqlite.Store {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.sqlite"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// echoConfig is a builder of two steps writing to their output, the
// second with no newline at the end.
func echoConfig(store ci.Store) ci.MasterConfig {
	echo := func(name, script string) ci.Step {
		return &steps.ShellCommand{StepOptions: ci.StepOptions{Name: name}, Command: []string{"sh", "-c", script}}
	}
	cfg := ci.MasterConfig{Store: store, Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w1"}, Steps: []ci.Step{
			echo("first", "echo one"),
			echo("second", "echo out; echo err >&2; printf 'no newline'"),
		}}}}
	return cfg
}

// checkEchoBuild checks the stored steps and logs of a build of
// echoConfig, and that the events tell each log's end before its step's,
// a step's end before the next step's start, and the last step's end
// before the build's.
func checkEchoBuild(t *testing.T, m *citest.Master) {
	t.Helper()
	sub := m.Subscribe(1024)
	defer sub.Close()
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Success, b.Results())
	require.Len(t, b.Steps, 2)
	for _, st := range b.Steps {
		assert.True(t, st.Complete, st.Name)
		assert.Equal(t, ci.Success, st.Results, st.Name)
		logs, err := m.Store.ListLogs(t.Context(), st.ID)
		require.NoError(t, err)
		require.Len(t, logs, 1)
		assert.True(t, logs[0].Complete, st.Name)
	}
	assert.Equal(t, "one\n", b.Log("first", "stdio"))
	stored := b.LogLines("second", "stdio")
	assert.Equal(t, "out\nno newline\n", citest.Output(stored, "o"))
	assert.Equal(t, "err\n", citest.Output(stored, "e"))

	var order []string
	// The build is stored as finished just before the event is sent.
	for len(order) == 0 || order[len(order)-1] != string(ci.EventBuildFinished) {
		var e ci.Event
		select {
		case e = <-sub.C:
		case <-time.After(time.Minute):
			t.Fatalf("no build.finished event; events: %v", order)
		}
		switch e.Type {
		case ci.EventLogFinished, ci.EventStepStarted, ci.EventStepFinished, ci.EventBuildFinished:
			if e.BuildID != b.Record.ID {
				continue
			}
			name := string(e.Type)
			for i, st := range b.Steps {
				if e.StepID == st.ID {
					name += fmt.Sprint(" ", i+1)
				}
			}
			order = append(order, name)
		}
	}
	assert.Equal(t, []string{
		string(ci.EventStepStarted) + " 1", string(ci.EventLogFinished) + " 1", string(ci.EventStepFinished) + " 1",
		string(ci.EventStepStarted) + " 2", string(ci.EventLogFinished) + " 2", string(ci.EventStepFinished) + " 2",
		string(ci.EventBuildFinished),
	}, order)
}

// A step's end, with the end of the logs it left open, is stored with the
// next step's start, or with the build's end: no write of its own.
func TestStepEnd_NoWriteOfItsOwn(t *testing.T) {
	st := &stepEndStore{Store: openStore(t)}
	m := citest.Start(t, echoConfig(st))
	checkEchoBuild(t, m)
	assert.Equal(t, []string{"AddStep", "FinishStepAddStep", "FinishStepAndBuild"}, st.writes())
}

// When such a write fails, nothing of it was stored: the logs, the step,
// and the next step or the build are then stored one by one, and nothing
// is lost.
func TestStepEnd_FallsBack(t *testing.T) {
	st := &stepEndStore{Store: openStore(t), failFinish: errors.New("disk on fire")}
	m := citest.Start(t, echoConfig(st))
	checkEchoBuild(t, m)
	assert.Equal(t, []string{
		"AddStep",
		"FinishStepAddStep", "FinishLog", "UpdateStep", "AddStep",
		"FinishStepAndBuild", "FinishLog", "UpdateStep", "FinishBuild",
	}, st.writes())
}

// A store without StepFinishStore gets a write per log and one for the
// step, at the step's end.
func TestStepEnd_StoreWithoutFinishStep(t *testing.T) {
	m := citest.Start(t, echoConfig(noFinishStepStore{openStore(t)}))
	checkEchoBuild(t, m)
}
