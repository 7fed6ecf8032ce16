package webui_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
)

// oneByOneStore counts the reads of single requests and buildsets.
type oneByOneStore struct {
	*sqlite.Store
	reads atomic.Int64
}

func (s *oneByOneStore) GetRequest(ctx context.Context, id int64) (*ci.BuildRequest, error) {
	s.reads.Add(1)
	return s.Store.GetRequest(ctx, id)
}

func (s *oneByOneStore) GetBuildset(ctx context.Context, id int64) (*ci.Buildset, error) {
	s.reads.Add(1)
	return s.Store.GetBuildset(ctx, id)
}

// The lists of builds read their buildsets together, not two reads per
// build, and show each build's reason.
func TestBuildLists_ReadBuildsetsTogether(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.sqlite"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	store := &oneByOneStore{Store: st}
	u := startUI(t, uiOptions{changeCfg: func(cfg *ci.MasterConfig) { cfg.Store = store }})
	const n = 12
	for i := range n {
		u.m.Build(t, citest.Request{Builder: "fail", Reason: fmt.Sprintf("reason %d", i)})
	}
	for _, path := range []string{"builders/fail", "workers/w2", "grid", ""} {
		t.Run("/"+path, func(t *testing.T) {
			store.reads.Store(0)
			page := u.do(t, req{path: path})
			require.Equal(t, 200, page.code, page.body)
			assert.Zero(t, store.reads.Load(), "single reads of requests and buildsets")
			switch path {
			case "": // the last build of each builder
				assert.Contains(t, page.body, fmt.Sprintf("fail/builds/%d", n))
				return
			case "grid": // the newest build of each source
				assert.Contains(t, page.body, fmt.Sprintf("reason %d", n-1))
				return
			}
			for i := range n {
				assert.Contains(t, page.body, fmt.Sprintf("reason %d<", i))
			}
		})
	}
}
