package ci

import (
	"context"
	"fmt"
	"time"
)

// A WorkerShutdowner is a worker connection that can ask its worker to
// stop (the protocol's shutdown message): the worker process ends. The
// network workers' connections are; a connection that is not is closed
// instead.
type WorkerShutdowner interface {
	Shutdown(ctx context.Context) error
}

// workerShutdownTimeout bounds the wait for a worker's answer to shutdown.
const workerShutdownTimeout = 10 * time.Second

func (m *Master) controlledWorker(name string) (*workerState, error) {
	w, ok := m.workers[name]
	if !ok {
		return nil, fmt.Errorf("worker %q: %w", name, ErrUnknownWorker)
	}
	return w, nil
}

// PauseWorker stops giving builds to the worker called name (Buildbot's
// pause): its running builds go on; reason says why, for the pages.
// UnpauseWorker undoes it. The pause lasts until then, across
// reconnections, but not across a restart of the master.
func (m *Master) PauseWorker(name, reason string) error {
	return m.setPaused(name, true, reason)
}

// UnpauseWorker gives builds to a paused worker again.
func (m *Master) UnpauseWorker(name string) error {
	return m.setPaused(name, false, "")
}

func (m *Master) setPaused(name string, paused bool, reason string) error {
	w, err := m.controlledWorker(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	w.paused, w.pauseReason = paused, reason
	m.mu.Unlock()
	verb := "worker paused"
	if !paused {
		verb = "worker unpaused"
	}
	m.log.Info(verb, "worker", name, "reason", reason)
	m.publish(Event{Type: EventWorkerChanged, WorkerID: w.id})
	m.poke()
	return nil
}

// StopWorker stops the worker called name gracefully (Buildbot's stop):
// it starts no new build, and once its running builds have ended the
// master asks it to stop (a WorkerShutdowner's Shutdown; otherwise the
// connection is closed). A worker that is not connected is left as it is.
func (m *Master) StopWorker(name string) error {
	w, err := m.controlledWorker(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	conn := w.conn
	if conn == nil {
		m.mu.Unlock()
		return fmt.Errorf("stop worker %q: %w", name, ErrWorkerNotConnected)
	}
	w.graceful = true
	idle := w.running == 0
	m.mu.Unlock()
	m.log.Info("worker asked to stop", "worker", name, "running", !idle)
	m.publish(Event{Type: EventWorkerChanged, WorkerID: w.id})
	if idle {
		go m.shutdownWorker(w, conn)
	}
	return nil
}

// KillWorker disconnects the worker called name at once (Buildbot's
// kill): its running builds end as RETRY and are built again elsewhere
// or when it comes back.
func (m *Master) KillWorker(name string) error {
	w, err := m.controlledWorker(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	conn := w.conn
	m.mu.Unlock()
	if conn == nil {
		return fmt.Errorf("kill worker %q: %w", name, ErrWorkerNotConnected)
	}
	m.log.Info("worker disconnected by request", "worker", name)
	return conn.Close()
}

// shutdownWorker asks the worker of conn to stop, or closes conn.
func (m *Master) shutdownWorker(w *workerState, conn WorkerConn) {
	m.mu.Lock()
	still := w.conn == conn && w.graceful && w.running == 0
	m.mu.Unlock()
	if !still {
		return
	}
	if s, ok := conn.(WorkerShutdowner); ok {
		ctx, cancel := context.WithTimeout(context.Background(), workerShutdownTimeout)
		defer cancel()
		err := s.Shutdown(ctx)
		if err == nil {
			m.log.Info("worker stopped", "worker", w.cfg.Name)
			return
		}
		m.log.Warn("worker did not stop when asked: disconnecting it", "worker", w.cfg.Name, "err", err)
	}
	conn.Close()
}
