package ci

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInsertPending checks that requests inserted one by one into the
// sorted pending list land where sorting the whole list puts them: by
// priority (highest first), then submission time, then ID.
func TestInsertPending(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for round := range 200 {
		var pending, all []*pendingRequest
		for id := range int64(1 + round%40) {
			p := &pendingRequest{req: &BuildRequest{
				ID:          id + 1,
				Priority:    rng.IntN(3) - 1,
				SubmittedAt: base.Add(time.Duration(rng.IntN(5)) * time.Second),
			}}
			pending = insertPending(pending, p)
			all = append(all, p)
		}
		want := slices.Clone(all)
		sortPending(want)
		require.Equal(t, ids(want), ids(pending), "round %d", round)
	}
}

func ids(ps []*pendingRequest) []int64 {
	var out []int64
	for _, p := range ps {
		out = append(out, p.req.ID)
	}
	return out
}

// BenchmarkInsertPending adds one request to a backlog of 2,000, as a
// submission does.
func BenchmarkInsertPending(b *testing.B) {
	base := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var pending []*pendingRequest
	for id := range int64(2000) {
		pending = append(pending, &pendingRequest{req: &BuildRequest{ID: id + 1, SubmittedAt: base.Add(time.Duration(id) * time.Millisecond)}})
	}
	id := int64(2000)
	for b.Loop() {
		id++
		p := &pendingRequest{req: &BuildRequest{ID: id, SubmittedAt: base.Add(time.Duration(id) * time.Millisecond)}}
		pending = insertPending(pending, p)
		pending = pending[1:] // the oldest is built
	}
}
