package ci_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/secret"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/testenv"
)

// TestSecrets_Redacted runs builds that use and leak a secret in every way
// the issue lists, and checks that it is stored nowhere.
func TestSecrets_Redacted(t *testing.T) {
	const token = "Tr0ub4dor&3-horse"
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "deploy_token"), []byte(token+"\n"), 0o600))
	var masterLog testenv.SyncBuffer
	cfg := oneBuilder(
		// The secret reaches the command as an argument and comes back in
		// several forms, one split across writes.
		&steps.ShellCommand{
			StepOptions: ci.StepOptions{Name: "use"},
			Command: []any{"sh", "-c", `printf 'token=%s\n' "$1"; printf '%s' "$1" | base64; printf 'x%s\n' "$1" | base64; printf 'split=%.5s' "$1"; sleep 0.2; printf '%s\n' "${1#?????}"; printf 'url=%s\n' "$2"`,
				"sh", ci.Interpolate("%(secret:deploy_token)s"), ci.Interpolate("Tr0ub4dor%%263-horse")},
		},
		ci.WithOptions(ci.StepOptions{Name: "leak"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			v, err := s.Secret(ctx, "deploy_token")
			if err != nil {
				return ci.Exception, err
			}
			s.SetProperty("leaked", "it is "+v, "leak")
			s.SetStateString("leaked " + v)
			s.Logger().Info("about to fail", "value", v)
			return ci.Failure, nil
		})),
		ci.WithOptions(ci.StepOptions{Name: "boom", AlwaysRun: true}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			return ci.Exception, ctxErr("cannot deploy with " + token)
		})),
		&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "missing", AlwaysRun: true}, Command: []any{"echo", ci.Interpolate("%(secret:nope)s")}},
	)
	cfg.Secrets = []ci.SecretProvider{secret.Env{Prefix: "KILN_TEST_NOT_SET_"}, secret.Dir{Path: dir}}
	cfg.Logger = slog.New(slog.NewTextHandler(&masterLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := citest.Start(t, cfg)
	b := m.Build(t, citest.Request{Builder: "b1"})

	use := b.LogLines("use", "stdio")
	assert.Contains(t, use, "otoken=<deploy_token>\n")
	assert.Contains(t, use, "ourl=<deploy_token>\n", "URL-escaped form")
	assert.Contains(t, use, "osplit=<deploy_token>\n", "a value written in two pieces")
	assert.Contains(t, use, "o<deploy_token>U=\n", "base64")
	assert.Contains(t, use, "oeF<deploy_token>Cg==\n", "base64 at another alignment")
	assert.Contains(t, b.Header("use", "stdio"), "<deploy_token>", "the command line in the header")
	assert.Equal(t, ci.Exception, b.Results())
	assert.Equal(t, "it is <deploy_token>", b.Property("leaked"))
	assert.Equal(t, "leaked <deploy_token> (failure)", b.Step("leak").StateString)
	assert.Contains(t, b.Log("boom", "err.text"), "cannot deploy with <deploy_token>")
	assert.Equal(t, ci.Exception, b.Step("missing").Results)
	assert.Contains(t, b.Log("missing", "err.text"), `secret "nope"`)

	// Nothing the master stored or logged has the value.
	assert.NotContains(t, masterLog.String(), token)
	assert.Contains(t, masterLog.String(), "<deploy_token>")
	db, err := os.ReadFile(m.Config().DatabasePath())
	require.NoError(t, err)
	wal, _ := os.ReadFile(m.Config().DatabasePath() + "-wal")
	assert.NotContains(t, string(db)+string(wal), token)
	for _, s := range b.Steps {
		for _, name := range []string{"stdio", "err.text"} {
			logs, err := m.Store.ListLogs(context.Background(), s.ID)
			require.NoError(t, err)
			for _, l := range logs {
				if l.Name == name {
					text, err := m.Store.LogLines(context.Background(), l.ID, 0, -1)
					require.NoError(t, err)
					assert.NotContains(t, text, token)
					assert.NotContains(t, text, "VHIwdWI0ZG9yJjMtaG9yc2")
				}
			}
		}
	}
}

type ctxErr string

func (e ctxErr) Error() string { return string(e) }
