package pgtest_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDatabase(t *testing.T) {
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	assert.NotEqual(t, a, b, "each test gets its own database")
	conn, err := pgx.Connect(t.Context(), a)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), `CREATE TABLE t (x int)`)
	require.NoError(t, err)

	conn2, err := pgx.Connect(t.Context(), b)
	require.NoError(t, err)
	defer conn2.Close(t.Context())
	var n int
	require.NoError(t, conn2.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE tablename = 't'`).Scan(&n))
	assert.Zero(t, n, "a new database is empty")
}
