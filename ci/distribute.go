package ci

import (
	"context"
	"slices"
	"time"
)

// distribute assigns pending requests to free workers whenever something
// changes (a request, a worker, a finished build), until the master stops.
func (m *Master) distribute(ctx context.Context) {
	if m.cluster != nil {
		m.waitListening(ctx)
	}
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

// listenWait bounds the wait, at the start of a master on a shared
// database, for it to receive the other masters' events before it starts
// builds (a database that does not answer).
const listenWait = 10 * time.Second

// waitListening waits until the master receives the other masters' events
// (a stop of one of its builds, asked through another master, is one), or
// listenWait has passed, or ctx ends.
func (m *Master) waitListening(ctx context.Context) {
	t := time.NewTimer(listenWait)
	defer t.Stop()
	select {
	case <-m.listening:
	case <-ctx.Done():
	case <-t.C:
		m.log.Warn("the events of the other masters are not received yet; starting builds anyway", "waited", listenWait)
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
// can serve now, in priority order (or the builder's NextBuild order), with
// the requests that collapse into it, and takes its builder's locks. m.mu is
// held.
func (m *Master) assignLocked() []*buildStart {
	var starts []*buildStart
	// Builders done for this round (done): those with no worker free (none
	// frees up before the next round), those with no request left, those
	// whose NextBuild was asked; and how many others are left (open): with
	// none, the round is over, however long the pending list. left counts
	// an open builder's requests not taken yet.
	done := make(map[*builderState]bool, len(m.builderList))
	left := make(map[*builderState]int, len(m.builderList))
	open := 0
	for _, b := range m.builderList {
		if b.pending == 0 || len(m.freeWorkersLocked(b)) == 0 {
			done[b] = true
		} else {
			left[b] = b.pending
			open++
		}
	}
	finish := func(b *builderState) {
		if !done[b] {
			done[b] = true
			open--
		}
	}
	taken := 0
	for _, p := range m.pending {
		if open == 0 {
			break
		}
		if p.taken || done[p.builder] {
			continue
		}
		b := p.builder
		if b.cfg.NextBuild != nil {
			// Asked once a round.
			finish(b)
			if p = m.nextBuildLocked(b); p == nil {
				continue
			}
		}
		free := m.freeWorkersLocked(b)
		if len(free) == 0 {
			finish(b)
			continue
		}
		w := pickWorker(b, free, p.req)
		if w == nil {
			continue
		}
		group := []*pendingRequest{p}
		p.taken = true
		if b.cfg.CollapseRequests {
			for _, q := range m.pending {
				if !q.taken && q.builder == b && sameSources(p.bs, q.bs) {
					group = append(group, q)
					q.taken = true
				}
			}
			// The newest request is the one built.
			slices.SortStableFunc(group, func(a, b *pendingRequest) int { return -comparePending(a, b) })
		}
		m.locks.acquire(b.cfg.Locks, w.cfg.Name)
		w.running++
		w.busy[b] = true
		w.lastStart = m.now()
		m.starting++
		m.buildWG.Add(1)
		taken += len(group)
		if left[b] -= len(group); left[b] <= 0 {
			finish(b)
		}
		starts = append(starts, &buildStart{builder: b, worker: w, conn: w.conn, requests: group})
		if b.cfg.NextBuild != nil {
			// Let NextBuild choose again among the rest, next round.
			m.poke()
		}
	}
	if taken > 0 {
		m.deletePendingLocked(func(p *pendingRequest) bool {
			if p.taken {
				p.taken = false // it may come back (requeue)
				return true
			}
			return false
		})
	}
	return starts
}

// nextBuildLocked asks a builder's NextBuild which of its pending requests
// to build. m.mu is held.
func (m *Master) nextBuildLocked(b *builderState) *pendingRequest {
	var cands []*pendingRequest
	var reqs []*BuildRequest
	for _, q := range m.pending {
		if q.builder == b && !q.taken {
			cands = append(cands, q)
			reqs = append(reqs, q.req)
		}
	}
	chosen := b.cfg.NextBuild(reqs)
	for _, q := range cands {
		if q.req == chosen {
			return q
		}
	}
	return nil
}

// freeWorkersLocked returns the attached workers of b that are not
// building b, have room for a build and have b's locks free. m.mu is held.
func (m *Master) freeWorkersLocked(b *builderState) []*workerState {
	var free []*workerState
	for _, w := range b.workers {
		if w.conn == nil || w.paused || w.graceful || w.busy[b] || (w.cfg.MaxBuilds > 0 && w.running >= w.cfg.MaxBuilds) {
			continue
		}
		select {
		case <-w.conn.Done():
			continue // lost; about to be detached
		default:
		}
		if !m.locks.available(b.cfg.Locks, w.cfg.Name) {
			continue
		}
		free = append(free, w)
	}
	return free
}

// pickWorker returns the worker of free (not empty) that builds req for b:
// the one NextWorker names, or by default the least busy, then the one
// idle longest; nil if NextWorker names none of them.
func pickWorker(b *builderState, free []*workerState, req *BuildRequest) *workerState {
	if b.cfg.NextWorker != nil {
		names := make([]string, len(free))
		for i, w := range free {
			names[i] = w.cfg.Name
		}
		name := b.cfg.NextWorker(names, req)
		for _, w := range free {
			if w.cfg.Name == name {
				return w
			}
		}
		return nil
	}
	best := free[0]
	for _, w := range free[1:] {
		if w.running < best.running || (w.running == best.running && w.lastStart.Before(best.lastStart)) {
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

// addPendingLocked adds requests to the pending list, in its order, and
// counts them in their builders' pending. m.mu is held (or the master is
// not running yet).
func (m *Master) addPendingLocked(ps ...*pendingRequest) {
	for _, p := range ps {
		p.builder.pending++
	}
	if len(ps) <= 8 {
		m.pending = insertPending(m.pending, ps...)
		return
	}
	m.pending = append(m.pending, ps...)
	sortPending(m.pending)
}

// deletePendingLocked removes from the pending list the requests for
// which del returns true (called once for each request, in order), and
// uncounts them. m.mu is held.
func (m *Master) deletePendingLocked(del func(p *pendingRequest) bool) {
	m.pending = slices.DeleteFunc(m.pending, func(p *pendingRequest) bool {
		if del(p) {
			p.builder.pending--
			return true
		}
		return false
	})
}

// requeue puts requests back in the pending list.
func (m *Master) requeue(reqs []*pendingRequest) {
	if len(reqs) == 0 {
		return
	}
	m.mu.Lock()
	m.addPendingLocked(reqs...)
	m.mu.Unlock()
	m.poke()
}
