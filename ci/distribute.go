package ci

import (
	"context"
	"slices"
)

// distribute assigns pending requests to free workers whenever something
// changes (a request, a worker, a finished build), until the master stops.
func (m *Master) distribute(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		}
		m.mu.Lock()
		if m.stopping {
			m.mu.Unlock()
			return
		}
		starts := m.assignLocked()
		m.mu.Unlock()
		for _, s := range starts {
			go m.runBuild(ctx, s)
		}
	}
}

// A buildStart is a build decided on by the distributor: its requests
// (the first is the one it builds) and its worker.
type buildStart struct {
	builder  *builderState
	worker   *workerState
	conn     WorkerConn
	requests []*pendingRequest
}

// assignLocked takes from the pending list every request that a free worker
// can serve now, in priority order, with the requests that collapse into
// it. m.mu is held.
func (m *Master) assignLocked() []*buildStart {
	var starts []*buildStart
	taken := map[*pendingRequest]bool{}
	for _, p := range m.pending {
		if taken[p] {
			continue
		}
		w := m.pickWorkerLocked(p.builder)
		if w == nil {
			continue
		}
		group := []*pendingRequest{p}
		taken[p] = true
		if p.builder.cfg.CollapseRequests {
			for _, q := range m.pending {
				if !taken[q] && q.builder == p.builder && sameSources(p.bs, q.bs) {
					group = append(group, q)
					taken[q] = true
				}
			}
			// The newest request is the one built.
			slices.SortStableFunc(group, func(a, b *pendingRequest) int { return -comparePending(a, b) })
		}
		w.running++
		w.busy[p.builder] = true
		w.lastStart = m.now()
		m.starting++
		m.buildWG.Add(1)
		starts = append(starts, &buildStart{builder: p.builder, worker: w, conn: w.conn, requests: group})
	}
	if len(taken) > 0 {
		m.pending = slices.DeleteFunc(m.pending, func(p *pendingRequest) bool { return taken[p] })
	}
	return starts
}

// pickWorkerLocked returns the attached worker of b that is not building b
// and has room for a build, preferring the least busy, then the one idle
// longest; nil if none. m.mu is held.
func (m *Master) pickWorkerLocked(b *builderState) *workerState {
	var best *workerState
	for _, w := range b.workers {
		if w.conn == nil || w.busy[b] || (w.cfg.MaxBuilds > 0 && w.running >= w.cfg.MaxBuilds) {
			continue
		}
		select {
		case <-w.conn.Done():
			continue // lost; about to be detached
		default:
		}
		if best == nil || w.running < best.running || (w.running == best.running && w.lastStart.Before(best.lastStart)) {
			best = w
		}
	}
	return best
}

// sameSources reports whether two buildsets ask for the same sources, so
// that their requests may collapse.
func sameSources(a, b *Buildset) bool {
	if len(a.SourceStamps) != len(b.SourceStamps) {
		return false
	}
	for _, sa := range a.SourceStamps {
		found := false
		for _, sb := range b.SourceStamps {
			if SameSource(sa, sb) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// requeue puts requests back in the pending list.
func (m *Master) requeue(reqs []*pendingRequest) {
	if len(reqs) == 0 {
		return
	}
	m.mu.Lock()
	m.pending = append(m.pending, reqs...)
	sortPending(m.pending)
	m.mu.Unlock()
	m.poke()
}
