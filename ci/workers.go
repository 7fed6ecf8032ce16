package ci

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// AttachWorker attaches a connected worker to the master: the master tells
// it its builders (SetBuilders), records it as connected with its info, and
// starts giving it builds. It returns an error wrapping ErrUnknownWorker if
// no worker of that name is configured, or ErrWorkerAttached if one is
// attached already. The master detaches the worker when conn.Done is
// closed; builds running on it then end as RETRY and are built again.
func (m *Master) AttachWorker(ctx context.Context, conn WorkerConn) error {
	if err := m.waitReady(ctx); err != nil {
		return err
	}
	name := conn.Name()
	w, ok := m.workers[name]
	if !ok {
		return fmt.Errorf("attach worker %q: %w", name, ErrUnknownWorker)
	}
	m.mu.Lock()
	if w.conn != nil || w.attaching {
		m.mu.Unlock()
		return fmt.Errorf("attach worker %q: %w", name, ErrWorkerAttached)
	}
	w.attaching = true // reserve the name while the builders are set up
	m.mu.Unlock()

	dirs := make([]BuilderDir, 0, len(w.builders))
	for _, b := range w.builders {
		dirs = append(dirs, BuilderDir{Builder: b.cfg.Name, Dir: b.cfg.BuildDir()})
	}
	fail := func(err error) error {
		m.mu.Lock()
		w.attaching = false
		m.mu.Unlock()
		return err
	}
	if err := conn.SetBuilders(ctx, dirs); err != nil {
		return fail(fmt.Errorf("attach worker %q: set builders: %w", name, err))
	}
	// The worker's environment stays in memory: it may hold secrets (an
	// in-process worker's is the master's own).
	info := make(map[string]any, len(conn.Info()))
	for k, v := range conn.Info() {
		if k != "environ" {
			info[k] = v
		}
	}
	if err := m.store.SetWorkerConnected(ctx, w.id, true, info, m.now()); err != nil {
		return fail(fmt.Errorf("attach worker %q: %w", name, err))
	}
	m.mu.Lock()
	w.attaching = false
	if m.stopping {
		m.mu.Unlock()
		return fmt.Errorf("attach worker %q: %w", name, ErrNotRunning)
	}
	w.conn = conn
	w.graceful = false // a worker that comes back after a stop serves again
	m.watchers.Add(1)
	m.mu.Unlock()
	m.publish(Event{Type: EventWorkerConnected, WorkerID: w.id})
	m.log.Info("worker attached", "worker", name, "builders", len(dirs))
	m.watchDetach(conn)
	m.poke()
	return nil
}

// watchDetach detaches conn once it ends or the master detaches every
// worker. A DoneNotifier is watched without a goroutine waiting on it.
func (m *Master) watchDetach(conn WorkerConn) {
	dn, ok := conn.(DoneNotifier)
	if !ok {
		go func() {
			defer m.watchers.Done()
			select {
			case <-conn.Done():
			case <-m.detaching.Done():
			}
			m.detach(conn)
		}()
		return
	}
	var once sync.Once
	finish := func() {
		once.Do(func() {
			defer m.watchers.Done()
			m.detach(conn)
		})
	}
	stopAll := context.AfterFunc(m.detaching, finish)
	dn.AfterDone(func() {
		stopAll()
		finish()
	})
}

// detach forgets conn if it is still its worker's connection.
func (m *Master) detach(conn WorkerConn) {
	w := m.workers[conn.Name()]
	m.mu.Lock()
	if w == nil || w.conn != conn {
		m.mu.Unlock()
		return
	}
	w.conn = nil
	m.mu.Unlock()
	if err := m.store.SetWorkerConnected(context.Background(), w.id, false, nil, m.now()); err != nil {
		m.log.Error("could not record worker disconnected", "worker", w.cfg.Name, "err", err)
	}
	m.publish(Event{Type: EventWorkerDisconnected, WorkerID: w.id})
	m.log.Info("worker detached", "worker", w.cfg.Name)
}

// WorkerConn returns the connection of the attached worker called name.
func (m *Master) WorkerConn(name string) (WorkerConn, bool) {
	w, ok := m.workers[name]
	if !ok {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return w.conn, w.conn != nil
}

// WorkerConfig returns the configuration of the worker called name.
func (m *Master) WorkerConfig(name string) (WorkerConfig, bool) {
	w, ok := m.workers[name]
	if !ok {
		return WorkerConfig{}, false
	}
	return w.cfg, true
}

// A WorkerStatus is what the master knows of a configured worker now.
type WorkerStatus struct {
	Name      string
	ID        int64
	Connected bool
	// Running is the number of builds running on the worker.
	Running int
	// LastBuild is when the worker last started a build.
	LastBuild time.Time
	// SilentSince and LostAt are set while a connected worker is silent
	// (see SilenceWatcher): since when nothing has been heard from it, and
	// when it will be declared lost, its running builds ending as RETRY,
	// unless it answers by then.
	SilentSince, LostAt time.Time
	// Paused workers start no build (PauseWorker); PauseReason says why.
	Paused      bool
	PauseReason string
	// Graceful is set once the worker was asked to stop (StopWorker): it
	// starts no build, and stops when its builds have ended.
	Graceful bool
}

// Workers returns the status of every configured worker, in configuration
// order.
func (m *Master) Workers() []WorkerStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]WorkerStatus, 0, len(m.workerList))
	for _, w := range m.workerList {
		s := WorkerStatus{Name: w.cfg.Name, ID: w.id, Connected: w.conn != nil, Running: w.running, LastBuild: w.lastStart,
			Paused: w.paused, PauseReason: w.pauseReason, Graceful: w.graceful}
		if sw, ok := w.conn.(SilenceWatcher); ok {
			if silent, since, lostAt := sw.Silence(); silent {
				s.SilentSince, s.LostAt = since, lostAt
			}
		}
		out = append(out, s)
	}
	return out
}

// PendingRequests returns how many build requests wait for a worker.
func (m *Master) PendingRequests() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}
