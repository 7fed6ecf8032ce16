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
	mu           sync.Mutex
	calls        []string
	failFinish   error
	failStepLogs error
}

func (s *stepEndStore) record(call string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	if strings.HasPrefix(call, "FinishStep") {
		return s.failFinish
	}
	if call == "AddStepLogs" {
		return s.failStepLogs
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

func (s *stepEndStore) AddStepLogs(ctx context.Context, prev *ci.StepRecord, ends []ci.LogEnd, st *ci.StepRecord, logs []*ci.Log) error {
	if err := s.record("AddStepLogs"); err != nil {
		return err
	}
	return s.Store.AddStepLogs(ctx, prev, ends, st, logs)
}

func (s *stepEndStore) AddLog(ctx context.Context, l *ci.Log) error {
	s.record("AddLog")
	return s.Store.AddLog(ctx, l)
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

// noStepLogsStore is a store with FinishStep but not AddStepLogs.
type noStepLogsStore struct {
	ci.Store
	ci.StepFinishStore
}

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
// next step's start, or with the build's end: no write of its own; and a
// shell step's stdio log is stored with the step's start.
func TestStepEnd_NoWriteOfItsOwn(t *testing.T) {
	st := &stepEndStore{Store: openStore(t)}
	m := citest.Start(t, echoConfig(st))
	checkEchoBuild(t, m)
	assert.Equal(t, []string{"AddStepLogs", "AddStepLogs", "FinishStepAndBuild"}, st.writes())
}

// With a store that can store a step's end with the next step's start
// but not a step's logs with its start, each log is a write of its own.
func TestStepEnd_StoreWithoutStepLogs(t *testing.T) {
	st := &stepEndStore{Store: openStore(t)}
	m := citest.Start(t, echoConfig(noStepLogsStore{st, st}))
	checkEchoBuild(t, m)
	assert.Equal(t, []string{"AddStep", "AddLog", "FinishStepAddStep", "AddLog", "FinishStepAndBuild"}, st.writes())
}

// When such a write fails, nothing of it was stored: the logs, the step,
// and the next step or the build are then stored one by one, and nothing
// is lost.
func TestStepEnd_FallsBack(t *testing.T) {
	fire := errors.New("disk on fire")
	st := &stepEndStore{Store: openStore(t), failFinish: fire, failStepLogs: fire}
	m := citest.Start(t, echoConfig(st))
	checkEchoBuild(t, m)
	assert.Equal(t, []string{
		"AddStepLogs", "AddStep", "AddLog",
		"AddStepLogs", "FinishLog", "UpdateStep", "AddStep", "AddLog",
		"FinishStepAndBuild", "FinishLog", "UpdateStep", "FinishBuild",
	}, st.writes())
}

// A store without StepFinishStore gets a write per log and one for the
// step, at the step's end.
func TestStepEnd_StoreWithoutFinishStep(t *testing.T) {
	m := citest.Start(t, echoConfig(noFinishStepStore{openStore(t)}))
	checkEchoBuild(t, m)
}

// The logs stored with a step's start are those it would have added: a
// step that runs only if RunIf says so adds its own, and one skipped has
// none; a step that fails before it writes to its stdio log leaves it
// empty and complete; a shell step's log files come before its stdio, as
// it adds them.
func TestStepLogs_AsTheStepAddsThem(t *testing.T) {
	st := &stepEndStore{Store: openStore(t)}
	never := func(ctx context.Context, s *ci.StepRun) (bool, error) { return false, nil }
	always := func(ctx context.Context, s *ci.StepRun) (bool, error) { return true, nil }
	broken := ci.RenderFunc(func(ctx context.Context, p ci.Props) (any, error) { return nil, errors.New("no such thing") })
	cfg := ci.MasterConfig{Store: st, Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w1"}, Steps: []ci.Step{
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "skipped", RunIf: never}, Command: []string{"true"}},
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "if", RunIf: always}, Command: []string{"echo", "ran"}},
			// Options set around a step keep its StartLogs.
			ci.WithOptions(ci.StepOptions{Name: "files"}, &steps.ShellCommand{Command: []string{"sh", "-c", "echo b > b.log; echo a > a.log; echo done"},
				LogFiles: map[string]string{"b": "b.log", "a": "a.log"}}),
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "broken", AlwaysRun: true}, Command: broken},
		}}}}
	m := citest.Start(t, cfg)
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Exception, b.Results())
	logNames := func(step string) []string {
		for _, s := range b.Steps {
			if s.Name == step {
				logs, err := m.Store.ListLogs(t.Context(), s.ID)
				require.NoError(t, err)
				var names []string
				for _, l := range logs {
					assert.True(t, l.Complete, "%s's log %s is complete", step, l.Name)
					names = append(names, l.Name)
				}
				return names
			}
		}
		t.Fatalf("no step %q", step)
		return nil
	}
	assert.Empty(t, logNames("skipped"))
	assert.Equal(t, []string{"stdio"}, logNames("if"))
	assert.Equal(t, "ran\n", citest.Output(b.LogLines("if", "stdio"), "o"))
	assert.Equal(t, []string{"a", "b", "stdio"}, logNames("files"))
	assert.Equal(t, "done\n", citest.Output(b.LogLines("files", "stdio"), "o"))
	assert.Contains(t, logNames("broken"), "stdio")
	assert.Empty(t, b.LogLines("broken", "stdio"))
	assert.Equal(t, []string{"AddStep", "FinishStepAddStep", "AddLog", "AddStepLogs", "AddStepLogs"}, st.writes()[:5])
}
