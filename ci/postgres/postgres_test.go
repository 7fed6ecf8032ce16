package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/postgres"
	"github.com/kilnci/kiln/ci/storetest"
	"github.com/kilnci/kiln/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ci.Store {
		return MustOpen(t, pgtest.NewDatabase(t))
	})
}

// MustOpen opens the store at url and closes it when the test ends.
func MustOpen(tb testing.TB, url string) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), url)
	require.NoError(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
}
