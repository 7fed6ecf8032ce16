package postgres_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/postgres"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/pgtest"
)

// TestMaster runs a master whose Database is a postgres:// URL: importing
// the package is all it takes for the master to open it.
func TestMaster(t *testing.T) {
	url := migrated.NewDatabase(t)
	var log bytes.Buffer
	cfg := ci.MasterConfig{
		BaseDir:  t.TempDir(),
		Database: url,
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{
			Name:    "hello",
			Workers: []string{"w"},
			Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "say"},
				Command: []any{"sh", "-c", "echo hello from postgres"}}},
		}},
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for run := 1; run <= 2; run++ {
		t.Run(fmt.Sprint("Run", run), func(t *testing.T) {
			m := citest.Start(t, cfg)
			s, ok := m.Store.(*postgres.Store)
			require.True(t, ok, "the master opened a %T", m.Store)
			assert.NotContains(t, s.URL(), pgtest.Password)
			b := m.Build(t, citest.Request{Builder: "hello"})
			assert.Equal(t, ci.Success, b.Results())
			assert.Equal(t, run, b.Record.Number, "numbers go on after a restart")
			assert.Contains(t, b.Log("say", "stdio"), "hello from postgres")
			assert.NotContains(t, m.Config().DatabaseName(), pgtest.Password)
		})
	}
	assert.NotContains(t, log.String(), pgtest.Password, "the master never logs the password")
}
