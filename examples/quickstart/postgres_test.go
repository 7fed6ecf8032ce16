package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/pgtest"
	"github.com/kilnci/kiln/internal/testenv"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestQuickstart_Postgres runs the quick start with its records in
// PostgreSQL, the URL given in the environment.
func TestQuickstart_Postgres(t *testing.T) {
	testenv.NeedTool(t, "git")
	url := pgtest.NewDatabase(t)
	t.Setenv("KILN_DATABASE_URL", url)
	var out strings.Builder
	err := run(context.Background(), []string{"-http", "127.0.0.1:0", "-workers", "127.0.0.1:0", "-dir", t.TempDir(), "-once"}, &out)
	require.NoError(t, err, out.String())
	text := out.String()
	assert.Contains(t, text, "build #1 of hello: success (build successful)", text)
	assert.Contains(t, text, "database postgres://postgres:xxxxx@", "the database is shown without its password")
	assert.NotContains(t, text, pgtest.Password)
}
