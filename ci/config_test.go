package ci_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

type testScheduler struct {
	name     string
	builders []string
}

func (s testScheduler) SchedulerName() string  { return s.name }
func (s testScheduler) BuilderNames() []string { return s.builders }

var noop = ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) { return ci.Success, nil })

type badStep struct{ ci.StepOptions }

func (badStep) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) { return ci.Success, nil }
func (badStep) Validate() error {
	return errors.Join(ci.CheckValue(ci.Interpolate("%(prop:x")), errors.New("second problem"))
}

func TestMasterConfig_Validate(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		cfg := ci.MasterConfig{
			Workers:    []ci.WorkerConfig{{Name: "w1", Password: "pw"}, {Name: "w2"}},
			Builders:   []ci.BuilderConfig{{Name: "b1", Workers: []string{"w1", "w2"}, Steps: []ci.Step{noop}}},
			Schedulers: []ci.Scheduler{testScheduler{"force", []string{"b1"}}},
		}
		require.NoError(t, cfg.Validate())
		_, err := ci.NewMaster(cfg)
		require.NoError(t, err)
	})
	t.Run("EveryProblem", func(t *testing.T) {
		cfg := ci.MasterConfig{
			Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w1"}, {Name: ""}, {Name: "bad/name"}, {Name: "w3", MaxBuilds: -1}},
			Builders: []ci.BuilderConfig{
				{Name: "b1", Workers: []string{"w1", "ghost"}, Steps: []ci.Step{noop}},
				{Name: "b1", Workers: []string{"w1"}, Steps: []ci.Step{noop}},
				{Name: "nosteps", Workers: []string{"w1"}},
				{Name: "noworkers", Steps: []ci.Step{noop}},
				{Name: "badstep", Workers: []string{"w1"}, Steps: []ci.Step{badStep{ci.StepOptions{Name: "sbuild"}}, nil}},
				{Name: "dir", Workers: []string{"w1"}, Steps: []ci.Step{noop}, WorkerBuildDir: "../escape"},
				{Name: "props", Workers: []string{"w1"}, Steps: []ci.Step{noop}, Properties: map[string]any{"x": ci.Interpolate("%(oops")}},
			},
			Schedulers: []ci.Scheduler{testScheduler{"s", []string{"b1", "missing"}}, testScheduler{"s", []string{"b1"}}, testScheduler{"empty", nil}},
		}
		err := cfg.Validate()
		require.Error(t, err)
		assert.ErrorIs(t, err, ci.ErrInvalidConfig)
		var ce *ci.ConfigError
		require.ErrorAs(t, err, &ce)
		want := []string{
			`workers[1]: duplicate worker name "w1"`,
			`workers[2]: Name is empty`,
			`workers[3]: Name "bad/name" may only have letters`,
			`worker "w3": MaxBuilds is negative (-1)`,
			`builder "b1": Workers: unknown worker "ghost"`,
			`builders[1]: duplicate builder name "b1"`,
			`builder "nosteps": Steps is empty`,
			`builder "noworkers": Workers is empty`,
			`builder "badstep": Steps[0] (sbuild): interpolate "%(prop:x": unclosed %( at offset 0`,
			`builder "badstep": Steps[0] (sbuild): second problem`,
			`builder "badstep": Steps[1] is nil`,
			`builder "dir": WorkerBuildDir "../escape" must be a plain folder name`,
			`builder "props": Properties["x"]: interpolate "%(oops"`,
			`scheduler "s": unknown builder "missing"`,
			`schedulers[1]: duplicate scheduler name "s"`,
			`scheduler "empty": no builders`,
		}
		msg := err.Error()
		for _, w := range want {
			assert.Contains(t, msg, w)
		}
		// One line per problem, after the heading.
		assert.Equal(t, len(ce.Problems)+1, len(strings.Split(msg, "\n")))
		assert.Len(t, ce.Problems, len(want))

		m, err := ci.NewMaster(cfg)
		assert.Nil(t, m)
		assert.ErrorIs(t, err, ci.ErrInvalidConfig)
	})
	t.Run("PasswordNotShown", func(t *testing.T) {
		w := ci.WorkerConfig{Name: "w1", Password: "s3cr3t-value"}
		assert.NotContains(t, w.String(), "s3cr3t")
		cfg := ci.MasterConfig{Workers: []ci.WorkerConfig{w, w}}
		assert.NotContains(t, cfg.Validate().Error(), "s3cr3t")
	})
}

func TestMasterConfig_DatabasePath(t *testing.T) {
	assert.Equal(t, "state.sqlite", (&ci.MasterConfig{}).DatabasePath())
	assert.Equal(t, "base/state.sqlite", (&ci.MasterConfig{BaseDir: "base"}).DatabasePath())
	assert.Equal(t, "/db/x.sqlite", (&ci.MasterConfig{BaseDir: "base", Database: "/db/x.sqlite"}).DatabasePath())
	url := "postgres://kiln:s3cr3t@db.example.org/kiln"
	cfg := &ci.MasterConfig{BaseDir: "base", Database: url}
	assert.Equal(t, url, cfg.DatabasePath(), "a URL is not a file of the base folder")
	assert.Equal(t, "postgres://kiln:xxxxx@db.example.org/kiln", cfg.DatabaseName())
	assert.Equal(t, "base/state.sqlite", (&ci.MasterConfig{BaseDir: "base"}).DatabaseName())
}

func TestDatabaseDriver(t *testing.T) {
	for db, want := range map[string]string{
		"state.sqlite":                      "sqlite",
		"/srv/kiln/state.sqlite":            "sqlite",
		"postgres://kiln@db/kiln":           "postgres",
		"postgresql://kiln:pw@db:5432/kiln": "postgres",
		"POSTGRES://db/kiln":                "postgres",
		"mysql://db/kiln":                   "sqlite",
	} {
		got, isURL := ci.DatabaseDriver(db)
		assert.Equal(t, want, got, db)
		assert.Equal(t, want == "postgres", isURL, db)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://kiln:s3cr3t@db/kiln?sslmode=require": "postgres://kiln:xxxxx@db/kiln?sslmode=require",
		"postgres://kiln@db/kiln?password=s3cr3t":        "postgres://kiln@db/kiln?password=xxxxx",
		"postgres://kiln:s3cr3t@db:port/kiln":            "postgres://(a URL that does not parse)",
	} {
		got := ci.RedactURL(in)
		assert.Equal(t, want, got, in)
		assert.NotContains(t, got, "s3cr3t")
	}
}

func TestMaster_DatabaseURLNoDriver(t *testing.T) {
	// ci/postgres is not linked into ci's tests: the master says what to
	// import, and never shows the URL's password.
	m, err := ci.NewMaster(ci.MasterConfig{
		Database: "postgres://kiln:s3cr3t@127.0.0.1:1/kiln",
		Logger:   slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	err = m.Run(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ci/postgres")
	assert.NotContains(t, err.Error(), "s3cr3t")
}

// crossStep and crossScheduler check themselves against the whole
// configuration, as a Trigger step and a Dependent scheduler do.
type crossStep struct{ ci.StepOptions }

func (crossStep) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) { return ci.Success, nil }
func (crossStep) ValidateConfig(c *ci.MasterConfig) error {
	return errors.New("sees " + c.Schedulers[0].SchedulerName())
}

type crossScheduler struct{ testScheduler }

func (crossScheduler) ValidateConfig(c *ci.MasterConfig) error {
	return fmt.Errorf("sees %d builders\nsecond line", len(c.Builders))
}

func TestMasterConfig_ValidateConfig(t *testing.T) {
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{Name: "b1", Workers: []string{"w1"}, Steps: []ci.Step{
			crossStep{ci.StepOptions{Name: "direct"}},
			ci.WithOptions(ci.StepOptions{Name: "wrapped"}, crossStep{}),
		}}},
		Schedulers: []ci.Scheduler{crossScheduler{testScheduler{"s", []string{"b1"}}}},
	}
	var ce *ci.ConfigError
	require.ErrorAs(t, cfg.Validate(), &ce)
	var got []string
	for _, p := range ce.Problems {
		got = append(got, p.Error())
	}
	assert.Equal(t, []string{
		`builder "b1": Steps[0] (direct): sees s`,
		`builder "b1": Steps[1] (wrapped): sees s`,
		`scheduler "s": sees 1 builders`,
		`scheduler "s": second line`,
	}, got)
}

func TestMasterConfig_Validate_Heartbeat(t *testing.T) {
	base := func() ci.MasterConfig {
		return ci.MasterConfig{
			Workers:  []ci.WorkerConfig{{Name: "w1"}},
			Builders: []ci.BuilderConfig{{Name: "b1", Workers: []string{"w1"}, Steps: []ci.Step{noop}}},
		}
	}
	for _, tc := range []struct {
		name                 string
		heartbeat, deadAfter time.Duration
		problem              string
	}{
		{"Defaults", 0, 0, ""},
		{"OK", 5 * time.Second, 20 * time.Second, ""},
		{"DeadAfterBelowDefaultHeartbeat", 0, 5 * time.Second, "DeadAfter (5s) must be longer than Heartbeat (10s)"},
		{"HeartbeatAboveDefaultDeadAfter", time.Minute, 0, "DeadAfter (20s) must be longer than Heartbeat (1m0s)"},
		{"Negative", -time.Second, 0, "Heartbeat (-1s) and DeadAfter (0s) must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			cfg.Heartbeat, cfg.DeadAfter = tc.heartbeat, tc.deadAfter
			err := cfg.Validate()
			if tc.problem == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ci.ErrInvalidConfig)
			assert.Equal(t, "invalid configuration:\n  "+tc.problem, err.Error())
		})
	}
}
