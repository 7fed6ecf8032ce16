package ci_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
)

// stepEndStore records the writes that end steps and logs, and can make
// FinishStep fail.
type stepEndStore struct {
	*sqlite.Store
	mu         sync.Mutex
	calls      []string
	failFinish error
}

func (s *stepEndStore) record(call string) {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
}

func (s *stepEndStore) writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *stepEndStore) FinishStep(ctx context.Context, st *ci.StepRecord, ends []ci.LogEnd) error {
	s.record("FinishStep")
	if s.failFinish != nil {
		return s.failFinish
	}
	return s.Store.FinishStep(ctx, st, ends)
}

func (s *stepEndStore) FinishLog(ctx context.Context, id int64, text string) (int, int, error) {
	s.record("FinishLog")
	return s.Store.FinishLog(ctx, id, text)
}

func (s *stepEndStore) UpdateStep(ctx context.Context, st *ci.StepRecord) error {
	s.record("UpdateStep")
	return s.Store.UpdateStep(ctx, st)
}

// noFinishStepStore is a store without FinishStep.
type noFinishStepStore struct{ ci.Store }

func openStore(t *testing.T) *sqlite.Store {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.sqlite"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func echoConfig(store ci.Store) ci.MasterConfig {
	cfg := benchConfigOf(1, 1, func() ci.Step {
		return &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "echo"}, Command: []string{"sh", "-c", "echo out; echo err >&2; printf 'no newline'"}}
	})
	cfg.Store = store
	return cfg
}

// checkEchoBuild checks the stored step and log of a build of echoConfig,
// and that the events tell the log's end before the step's.
func checkEchoBuild(t *testing.T, m *citest.Master) {
	t.Helper()
	sub := m.Subscribe(1024)
	defer sub.Close()
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Success, b.Results())
	st := b.Step("echo")
	assert.True(t, st.Complete)
	assert.Equal(t, ci.Success, st.Results)
	stored := b.LogLines("echo", "stdio")
	assert.Equal(t, "out\nno newline\n", citest.Output(stored, "o"))
	assert.Equal(t, "err\n", citest.Output(stored, "e"))
	logs, err := m.Store.ListLogs(t.Context(), st.ID)
	require.NoError(t, err)
	require.Len(t, logs, 1)
	assert.True(t, logs[0].Complete)

	var order []ci.EventType
	for len(sub.C) > 0 {
		e := <-sub.C
		if e.StepID == st.ID && (e.Type == ci.EventLogFinished || e.Type == ci.EventStepFinished) {
			order = append(order, e.Type)
		}
	}
	assert.Equal(t, []ci.EventType{ci.EventLogFinished, ci.EventStepFinished}, order)
}

// A step's end and the end of the logs it left open are one write.
func TestStepEnd_OneWrite(t *testing.T) {
	st := &stepEndStore{Store: openStore(t)}
	m := citest.Start(t, echoConfig(st))
	checkEchoBuild(t, m)
	assert.Equal(t, []string{"FinishStep"}, st.writes())
}

// When that write fails, nothing was stored: the logs and the step are
// then stored one by one, and nothing is lost.
func TestStepEnd_FallsBack(t *testing.T) {
	st := &stepEndStore{Store: openStore(t), failFinish: errors.New("disk on fire")}
	m := citest.Start(t, echoConfig(st))
	checkEchoBuild(t, m)
	assert.Equal(t, []string{"FinishStep", "FinishLog", "UpdateStep"}, st.writes())
}

// A store without FinishStep gets a write per log and one for the step.
func TestStepEnd_StoreWithoutFinishStep(t *testing.T) {
	m := citest.Start(t, echoConfig(noFinishStepStore{openStore(t)}))
	checkEchoBuild(t, m)
}

// writeLog records every write of a store.
type writeLog struct {
	ci.Store
	mu    sync.Mutex
	calls []string
}

func (s *writeLog) record(call string) {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
}
