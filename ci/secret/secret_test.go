package secret_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/secret"
)

func TestSecretProviders(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "token"), []byte("from-a-file\n"), 0o600))
	env := filepath.Join(dir, "secrets.env")
	require.NoError(t, os.WriteFile(env, []byte("# comment\nexport A=one\nB = 'two words'\nC=\"three\"\n\n"), 0o600))
	t.Setenv("KILN_TEST_SECRET_X", "from-env")

	v, err := secret.Dir{Path: dir}.Secret(ctx, "token")
	require.NoError(t, err)
	assert.Equal(t, "from-a-file", v)
	_, err = secret.Dir{Path: dir}.Secret(ctx, "../etc/passwd")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)
	_, err = secret.Dir{Path: dir}.Secret(ctx, "missing")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)

	v, err = secret.Env{Prefix: "KILN_TEST_SECRET_"}.Secret(ctx, "X")
	require.NoError(t, err)
	assert.Equal(t, "from-env", v)
	_, err = secret.Env{Prefix: "KILN_TEST_SECRET_"}.Secret(ctx, "Y")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)

	f := &secret.File{Path: env}
	for k, want := range map[string]string{"A": "one", "B": "two words", "C": "three"} {
		v, err := f.Secret(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, want, v)
	}
	_, err = f.Secret(ctx, "D")
	assert.ErrorIs(t, err, ci.ErrSecretNotFound)

	_, err = secret.ParseEnvFile([]byte("A=1\nthis line has the value hunter22\n"))
	require.Error(t, err)
	assert.Equal(t, "line 2 is not KEY=VALUE", err.Error(), "the error names the line, not its content")
}

func TestParseEnvFile(t *testing.T) {
	got, err := secret.ParseEnvFile([]byte("# secrets\n\nA=1\nexport B = 'two words'\nC=\"three\"\nD=\nE=\"\"\n"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"A": "1", "B": "two words", "C": "three", "D": "", "E": ""}, got)

	for text, want := range map[string]string{
		"A=1\nB\n":                 "line 2 is not KEY=VALUE",
		"A=1\nPASSWORD=\"s3cret\n": `line 2 (PASSWORD): the value's " quote is not closed on that line`,
		"TOKEN='abc\n":             `line 1 (TOKEN): the value's ' quote is not closed on that line`,
		"TOKEN='\n":                `line 1 (TOKEN): the value's ' quote is not closed on that line`,
		"BAD KEY=1\n":              "line 1 is not KEY=VALUE",
	} {
		_, err := secret.ParseEnvFile([]byte(text))
		if assert.Error(t, err, "%q", text) {
			assert.Equal(t, want, err.Error())
			assert.NotContains(t, err.Error(), "s3cret")
		}
	}
}
