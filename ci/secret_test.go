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
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/testenv"
)

func TestSecretProviders(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "token"), []byte("from-a-file\n"), 0o600))
	env := filepath.Join(dir, "secrets.env")
	require.NoError(t, os.WriteFile(env, []byte("# comment\nexport A=one\nB = 'two words'\nC=\"three\"\n\n"), 0o600))
	t.Setenv("KILN_TEST_SECRET_X", "from-env")

	v, err := ci.DirSecrets{Dir: dir}.Secret(ctx, "token")
	require.NoError(t, err)
	assert.Equal(t, "from-a-file", v)
	_, err = ci.DirSecrets{Dir: dir}.Secret(ctx, "../etc/passwd")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)
	_, err = ci.DirSecrets{Dir: dir}.Secret(ctx, "missing")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)

	v, err = ci.EnvSecrets{Prefix: "KILN_TEST_SECRET_"}.Secret(ctx, "X")
	require.NoError(t, err)
	assert.Equal(t, "from-env", v)
	_, err = ci.EnvSecrets{Prefix: "KILN_TEST_SECRET_"}.Secret(ctx, "Y")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)

	f := &ci.FileSecrets{Path: env}
	for k, want := range map[string]string{"A": "one", "B": "two words", "C": "three"} {
		v, err := f.Secret(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, want, v)
	}
	_, err = f.Secret(ctx, "D")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)

	_, err = ci.ParseEnvFile([]byte("A=1\nthis line has the value hunter22\n"))
	require.Error(t, err)
	assert.Equal(t, "line 2 is not KEY=VALUE", err.Error(), "the error names the line, not its content")
}

// TestSecrets_Redacted runs builds that use and leak a secret in every way
// the issue lists, and checks that it is stored nowhere.
func TestSecrets_Redacted(t *testing.T) {
	const secret = "Tr0ub4dor&3-horse"
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "deploy_token"), []byte(secret+"\n"), 0o600))
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
			return ci.Exception, ctxErr("cannot deploy with " + secret)
		})),
		&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "missing", AlwaysRun: true}, Command: []any{"echo", ci.Interpolate("%(secret:nope)s")}},
	)
	cfg.Secrets = []ci.SecretProvider{ci.EnvSecrets{Prefix: "KILN_TEST_NOT_SET_"}, ci.DirSecrets{Dir: dir}}
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
	assert.NotContains(t, masterLog.String(), secret)
	assert.Contains(t, masterLog.String(), "<deploy_token>")
	db, err := os.ReadFile(m.Config().DatabasePath())
	require.NoError(t, err)
	wal, _ := os.ReadFile(m.Config().DatabasePath() + "-wal")
	assert.NotContains(t, string(db)+string(wal), secret)
	for _, s := range b.Steps {
		for _, name := range []string{"stdio", "err.text"} {
			logs, err := m.Store.ListLogs(context.Background(), s.ID)
			require.NoError(t, err)
			for _, l := range logs {
				if l.Name == name {
					text, err := m.Store.LogLines(context.Background(), l.ID, 0, -1)
					require.NoError(t, err)
					assert.NotContains(t, text, secret)
					assert.NotContains(t, text, "VHIwdWI0ZG9yJjMtaG9yc2")
				}
			}
		}
	}
}

type ctxErr string

func (e ctxErr) Error() string { return string(e) }

func TestParseEnvFile(t *testing.T) {
	got, err := ci.ParseEnvFile([]byte("# secrets\n\nA=1\nexport B = 'two words'\nC=\"three\"\nD=\nE=\"\"\n"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"A": "1", "B": "two words", "C": "three", "D": "", "E": ""}, got)

	for text, want := range map[string]string{
		"A=1\nB\n":                 "line 2 is not KEY=VALUE",
		"A=1\nPASSWORD=\"s3cret\n": `line 2 (PASSWORD): the value's " quote is not closed on that line`,
		"TOKEN='abc\n":             `line 1 (TOKEN): the value's ' quote is not closed on that line`,
		"TOKEN='\n":                `line 1 (TOKEN): the value's ' quote is not closed on that line`,
		"BAD KEY=1\n":              "line 1 is not KEY=VALUE",
	} {
		_, err := ci.ParseEnvFile([]byte(text))
		if assert.Error(t, err, "%q", text) {
			assert.Equal(t, want, err.Error())
			assert.NotContains(t, err.Error(), "s3cret")
		}
	}
}
