package ci

import (
	"context"
	"fmt"
	"slices"
)

// A Lock limits how many builds, or steps, use something at once: a
// master-wide resource (a deployment target, a licence) or, per worker, a
// resource of each worker machine (its disk, its CPU). It is Buildbot's
// MasterLock and WorkerLock. Builders and steps ask for a lock with
// Counting (one of MaxCount places) or Exclusive (every place, so no one
// else at all).
//
// A builder's locks are taken when its build starts, all at once, and held
// to its end: the master starts a build only when a worker is free and the
// build's locks are too, so a build never waits holding a worker it cannot
// use. A step's locks are taken, all at once, when the step starts, and
// released when it ends; the build waits for them (state "waiting for
// locks"). Taking all of a set at once, first come first served, means no
// set of builds can deadlock on each other; for that the same lock may not
// be both a builder lock and a step lock (the configuration check says
// so).
type Lock struct {
	// Name identifies the lock; two locks of one configuration may not
	// share a name.
	Name string
	// MaxCount is how many counting holders it admits at once (1 if zero).
	MaxCount int
	// PerWorker makes one lock per worker (Buildbot's WorkerLock).
	PerWorker bool
	// MaxCountForWorker overrides MaxCount for some workers.
	MaxCountForWorker map[string]int
}

// MasterLock returns a master-wide lock with maxCount places.
func MasterLock(name string, maxCount int) *Lock { return &Lock{Name: name, MaxCount: maxCount} }

// WorkerLock returns a lock with maxCount places on each worker.
func WorkerLock(name string, maxCount int) *Lock {
	return &Lock{Name: name, MaxCount: maxCount, PerWorker: true}
}

// Counting asks for one place of the lock.
func (l *Lock) Counting() LockAccess { return LockAccess{Lock: l} }

// Exclusive asks for the whole lock.
func (l *Lock) Exclusive() LockAccess { return LockAccess{Lock: l, Exclusive: true} }

// A LockAccess is a lock and how it is taken.
type LockAccess struct {
	Lock      *Lock
	Exclusive bool
}

func (l *Lock) maxFor(worker string) int {
	if n, ok := l.MaxCountForWorker[worker]; ok && n > 0 {
		return n
	}
	return max(l.MaxCount, 1)
}

// lockKey names one instance of a lock: per worker for worker locks.
type lockKey struct {
	name   string
	worker string
}

func (a LockAccess) key(worker string) lockKey {
	k := lockKey{name: a.Lock.Name}
	if a.Lock.PerWorker {
		k.worker = worker
	}
	return k
}

// lockState is who holds one lock instance.
type lockState struct {
	count     int
	exclusive bool
}

// lockTable tracks the locks in use. It is guarded by the master's mutex.
type lockTable struct {
	held    map[lockKey]*lockState
	waiters []*lockWaiter
}

// A lockWaiter is a step waiting for its locks.
type lockWaiter struct {
	locks  []LockAccess
	worker string
	ready  chan struct{}
}

func (t *lockTable) state(k lockKey) *lockState {
	if t.held == nil {
		t.held = map[lockKey]*lockState{}
	}
	s := t.held[k]
	if s == nil {
		s = &lockState{}
		t.held[k] = s
	}
	return s
}

// available reports whether every lock can be taken now on worker.
func (t *lockTable) available(locks []LockAccess, worker string) bool {
	for _, a := range locks {
		s := t.held[a.key(worker)]
		if s == nil {
			continue
		}
		if s.exclusive || (a.Exclusive && s.count > 0) || s.count >= a.Lock.maxFor(worker) {
			return false
		}
	}
	return true
}

func (t *lockTable) acquire(locks []LockAccess, worker string) {
	for _, a := range locks {
		s := t.state(a.key(worker))
		s.count++
		s.exclusive = s.exclusive || a.Exclusive
	}
}

func (t *lockTable) release(locks []LockAccess, worker string) {
	for _, a := range locks {
		k := a.key(worker)
		s := t.held[k]
		if s == nil {
			continue
		}
		s.count--
		if a.Exclusive {
			s.exclusive = false
		}
		if s.count <= 0 {
			delete(t.held, k)
		}
	}
	t.wake()
}

// wake grants locks to waiting steps, first come first served: a waiter
// is served only if no earlier waiter still waits for one of its locks.
func (t *lockTable) wake() {
	blocked := map[lockKey]bool{}
	kept := t.waiters[:0]
	for _, w := range t.waiters {
		free := t.available(w.locks, w.worker)
		for _, a := range w.locks {
			if blocked[a.key(w.worker)] {
				free = false
			}
		}
		if free {
			t.acquire(w.locks, w.worker)
			close(w.ready)
			continue
		}
		for _, a := range w.locks {
			blocked[a.key(w.worker)] = true
		}
		kept = append(kept, w)
	}
	t.waiters = kept
}

// acquireStepLocks takes a step's locks for a build on worker, waiting
// until they are free or ctx ends.
func (m *Master) acquireStepLocks(ctx context.Context, locks []LockAccess, worker string) error {
	if len(locks) == 0 {
		return nil
	}
	w := &lockWaiter{locks: locks, worker: worker, ready: make(chan struct{})}
	m.mu.Lock()
	m.locks.waiters = append(m.locks.waiters, w)
	m.locks.wake()
	m.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-w.ready:
		// Granted as the context ended: give them back.
		m.locks.release(locks, worker)
	default:
		m.locks.waiters = slices.DeleteFunc(m.locks.waiters, func(x *lockWaiter) bool { return x == w })
		m.locks.wake()
	}
	return ctx.Err()
}

func (m *Master) releaseStepLocks(locks []LockAccess, worker string) {
	if len(locks) == 0 {
		return
	}
	m.mu.Lock()
	m.locks.release(locks, worker)
	m.mu.Unlock()
}

// checkLocks validates the locks of a configuration: names unique per lock,
// no lock used both by builders and by steps.
func checkLocks(c *MasterConfig) []error {
	var errs []error
	byName := map[string]*Lock{}
	builderUse := map[string]string{}
	stepUse := map[string]string{}
	check := func(where string, l *Lock) bool {
		if l == nil {
			errs = append(errs, fmt.Errorf("%s: a lock is nil", where))
			return false
		}
		if l.Name == "" {
			errs = append(errs, fmt.Errorf("%s: a lock has no name", where))
			return false
		}
		if l.MaxCount < 0 {
			errs = append(errs, fmt.Errorf("%s: lock %q: MaxCount is negative", where, l.Name))
		}
		if other, ok := byName[l.Name]; ok && other != l {
			errs = append(errs, fmt.Errorf("%s: two different locks are called %q", where, l.Name))
			return false
		}
		byName[l.Name] = l
		return true
	}
	for _, b := range c.Builders {
		where := fmt.Sprintf("builder %q", b.Name)
		for _, a := range b.Locks {
			if check(where, a.Lock) {
				builderUse[a.Lock.Name] = b.Name
			}
		}
		for j, s := range b.Steps {
			if s == nil {
				continue
			}
			for _, a := range s.Options().Locks {
				if check(fmt.Sprintf("%s: Steps[%d]", where, j), a.Lock) {
					stepUse[a.Lock.Name] = b.Name
				}
			}
		}
	}
	for name, b := range builderUse {
		if sb, ok := stepUse[name]; ok {
			errs = append(errs, fmt.Errorf("lock %q is a builder lock of %q and a step lock in %q: a lock may be one or the other, so that builds cannot deadlock", name, b, sb))
		}
	}
	return errs
}
