package ci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Defaults of the settings of a master sharing its database with others
// (MasterConfig.Heartbeat, MasterConfig.DeadAfter).
const (
	// DefaultHeartbeat is how often a master records that it is alive,
	// looks for dead masters and re-reads the pending requests.
	DefaultHeartbeat = 10 * time.Second
	// DefaultDeadAfter is how old the last heartbeat of a master must be
	// for another master to take it for dead.
	DefaultDeadAfter = 20 * time.Second
)

// A MasterRecord is the stored record of a master sharing a database with
// others (Buildbot's master resource).
type MasterRecord struct {
	ID   int64  `json:"masterid"`
	Name string `json:"name"`
	// Active is true from the master's start to its stop, or until
	// another master found it dead.
	Active bool `json:"active"`
	// LastActive is the master's last heartbeat, on its own clock.
	LastActive time.Time `json:"last_active"`
}

// A ClusterStore is a Store several masters share (ci/postgres): each
// master records itself and its heartbeat, the builds it runs (Build.MasterID),
// which master runs the schedulers, and the masters tell each other of
// their events. A master whose store is a ClusterStore runs as one of
// several; one on any other store runs alone (SQLite: a lock on its
// folder keeps out a second master).
//
// Every method is one transaction, safe for concurrent use by the masters
// and within one.
type ClusterStore interface {
	Store
	// RegisterMaster records the master called name as active, with a
	// heartbeat at at, storing it first if needed. It returns the record
	// as it was before (Active and LastActive those of the previous run;
	// a new record is inactive, with a zero LastActive) with its ID.
	RegisterMaster(ctx context.Context, name string, at time.Time) (*MasterRecord, error)
	// MasterHeartbeat records that master id is alive at at. It returns
	// an error wrapping ErrConflict, and records nothing, if another
	// master has marked it inactive (found it dead).
	MasterHeartbeat(ctx context.Context, id int64, at time.Time) error
	// StopMaster marks master id inactive at a clean stop, and gives up
	// its claim on the schedulers.
	StopMaster(ctx context.Context, id int64, at time.Time) error
	GetMaster(ctx context.Context, id int64) (*MasterRecord, error)
	// ListMasters returns every master recorded, active or not, by ID.
	ListMasters(ctx context.Context) ([]*MasterRecord, error)
	// CloseMasterBuilds finishes the unfinished builds of master id as
	// RETRY at at, with the given state string, their requests going back
	// to pending (as FinishBuild with resubmit does), in one transaction,
	// and returns them. Builds that record no master (started before the
	// masters were recorded) are closed too when no other master is
	// active. A master calls it for itself when it starts.
	CloseMasterBuilds(ctx context.Context, id int64, at time.Time, state string) ([]*Build, error)
	// ExpireMaster takes master id for dead if it is active and its last
	// heartbeat is before staleBefore: in one transaction it marks it
	// inactive, gives up its claim on the schedulers and closes its
	// unfinished builds as CloseMasterBuilds does. The master's row is
	// claimed with a lock that is not waited for: of masters expiring it
	// at once, one does it, and the others get expired false, as they do
	// when the master is alive or already inactive.
	ExpireMaster(ctx context.Context, id int64, staleBefore, at time.Time, state string) (expired bool, closed []*Build, err error)
	// ClaimSchedulers claims the schedulers called names for master
	// masterID, all or none: it gets them when none is held by another
	// active master (the first to ask, or after the owner stopped or was
	// found dead), and keeps them while it holds them. It reports whether
	// masterID holds them now.
	ClaimSchedulers(ctx context.Context, masterID int64, names []string) (owned bool, err error)
	// RelayEvents tells the other masters of the events read from out
	// (those of master masterID), and calls in with each event another
	// master told, in order, until out is closed (after the events read
	// before it are sent) or ctx ends. resync is called once the relay
	// receives the others' events, and whenever events may have been
	// missed (the connection receiving them was lost and is back): the
	// caller re-reads what it follows. in and resync are called from one goroutine and must not
	// block for long.
	RelayEvents(ctx context.Context, masterID int64, out <-chan Event, in func(Event), resync func()) error
}

// DefaultMasterName returns the name a master gets when MasterConfig.Name
// is empty: "<host name>:<absolute base folder>", as Buildbot names its
// masters.
func DefaultMasterName(baseDir string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	dir := baseDir
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return host + ":" + dir
}

// Name returns the master's name (MasterConfig.Name, or its default).
func (m *Master) Name() string {
	if m.cfg.Name != "" {
		return m.cfg.Name
	}
	return DefaultMasterName(m.cfg.BaseDir)
}

// MasterID returns the master's stored ID once Run has registered it, on
// a shared database; 0 on a store of one master.
func (m *Master) MasterID() int64 { return m.masterID }

// Clustered reports whether the master shares its database with others
// (its store is a ClusterStore), once Run has opened the store.
func (m *Master) Clustered() bool { return m.cluster != nil }

// Masters returns the masters sharing the database, active or not, by
// ID: on a store of one master, this master alone, with ID 1, active, last
// active now.
func (m *Master) Masters(ctx context.Context) ([]*MasterRecord, error) {
	if err := m.waitReady(ctx); err != nil {
		return nil, err
	}
	if m.cluster == nil {
		return []*MasterRecord{{ID: 1, Name: m.Name(), Active: true, LastActive: m.now()}}, nil
	}
	list, err := m.cluster.ListMasters(ctx)
	if err != nil {
		return nil, fmt.Errorf("list masters: %w", err)
	}
	return list, nil
}

// GetMaster returns the master of that ID (see Masters); an error
// wrapping ErrNotFound if there is none.
func (m *Master) GetMaster(ctx context.Context, id int64) (*MasterRecord, error) {
	if err := m.waitReady(ctx); err != nil {
		return nil, err
	}
	if m.cluster == nil {
		if id != 1 {
			return nil, fmt.Errorf("master %d: %w", id, ErrNotFound)
		}
		return &MasterRecord{ID: 1, Name: m.Name(), Active: true, LastActive: m.now()}, nil
	}
	rec, err := m.cluster.GetMaster(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get master %d: %w", id, err)
	}
	return rec, nil
}

// SchedulesHere reports whether this master runs the schedulers now: a
// master alone always does; of masters sharing a database, the one
// holding the claim on them (never one with no schedulers configured).
func (m *Master) SchedulesHere() bool {
	if m.cluster == nil {
		return true
	}
	m.clusterMu.Lock()
	defer m.clusterMu.Unlock()
	return m.scheduling
}

func (m *Master) heartbeatEvery() time.Duration {
	if m.cfg.Heartbeat > 0 {
		return m.cfg.Heartbeat
	}
	return DefaultHeartbeat
}

func (m *Master) deadAfter() time.Duration {
	if m.cfg.DeadAfter > 0 {
		return m.cfg.DeadAfter
	}
	return DefaultDeadAfter
}

// registerMaster records the master in a shared database and closes the
// builds its previous run left unfinished. A record of that name active
// with a heartbeat younger than DeadAfter means another master may be
// running under this name: the master does not start, so as not to take
// that one's builds. The exception is a master under its default name
// that holds the lock on its base folder: that name says this host and
// this folder, and the lock says no other process of this host has the
// folder, so the record is that of its own previous run, stopped without
// a word (killed, or the machine lost power): it takes over at once, as
// systemd's restart of a crashed master expects.
func (m *Master) registerMaster(ctx context.Context) error {
	name := m.Name()
	now := m.now()
	prev, err := m.cluster.RegisterMaster(ctx, name, now)
	if err != nil {
		return fmt.Errorf("record master %q: %w", name, err)
	}
	ownName := m.cfg.Name == "" && m.unlock != nil
	if prev.Active && ownName {
		m.log.Warn("the previous run of this master stopped without a word: its builds end as RETRY", "name", name, "last_active", prev.LastActive)
	}
	if prev.Active && !ownName && now.Sub(prev.LastActive) < m.deadAfter() {
		// Give the record back as it was found.
		m.cluster.MasterHeartbeat(context.WithoutCancel(ctx), prev.ID, prev.LastActive)
		return fmt.Errorf("master %q: a master of that name was active %s ago: another one may be running (give each master its own MasterConfig.Name), or this one stopped without saying so (start it again after %s)",
			name, now.Sub(prev.LastActive).Round(time.Second), m.deadAfter())
	}
	m.masterID = prev.ID
	closed, err := m.cluster.CloseMasterBuilds(ctx, m.masterID, now, "interrupted: the master stopped")
	if err != nil {
		return fmt.Errorf("close interrupted builds: %w", err)
	}
	for _, b := range closed {
		m.log.Warn("closed build interrupted by a master stop; its request will be built again", "build", b.ID, "number", b.Number)
	}
	m.log.Info("master recorded", "master", m.masterID, "name", name)
	return nil
}

// runCluster is what a master sharing its database does beside its work
// until ctx ends: it tells the others of its events and reacts to theirs,
// heartbeats, expires dead masters, claims the schedulers and re-reads the
// pending requests. startScheds starts the scheduler services under the
// given context.
func (m *Master) runCluster(ctx context.Context, relayOut *Subscription, startScheds func(context.Context) *sync.WaitGroup) {
	remote := make(chan Event, 4096)
	resync := make(chan struct{}, 1)
	signal := func() {
		// The relay's first call: it listens.
		m.listeningOnce.Do(func() { close(m.listening) })
		select {
		case resync <- struct{}{}:
		default:
		}
	}
	// The relay outlives ctx: it returns once it has sent the events
	// published before its subscription was closed (the builds
	// interrupted by the stop), or after relayFlush.
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		m.relay(relayCtx, relayOut, remote, signal)
	}()
	tick := make(chan struct{}, 1)
	var timer Timer
	var timerMu sync.Mutex
	arm := func() {
		timerMu.Lock()
		defer timerMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		timer = m.clock.AfterFunc(m.heartbeatEvery(), func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
	}
	var stopScheds context.CancelFunc
	var schedWG *sync.WaitGroup
	release := func() {
		if stopScheds != nil {
			stopScheds()
			schedWG.Wait()
			stopScheds, schedWG = nil, nil
		}
	}
	defer func() {
		timerMu.Lock()
		if timer != nil {
			timer.Stop()
		}
		timerMu.Unlock()
		release()
		t := time.NewTimer(relayFlush)
		defer t.Stop()
		select {
		case <-relayDone:
		case <-t.C:
			stopRelay()
			<-relayDone
		}
	}()
	var dropped int64
	beat := func() {
		if d := relayOut.Dropped(); d > dropped {
			m.log.Warn("events were not told to the other masters (too many at once); they find the requests at their next re-read",
				"events", d-dropped)
			dropped = d
		}
		m.heartbeat(ctx)
		owned := m.claimSchedulers(ctx)
		if !owned {
			m.setScheduling(false)
		}
		if !owned && stopScheds != nil {
			m.log.Warn("another master runs the schedulers now")
			release()
		}
		if owned {
			// Changes stored by any master and not yet handed to the
			// schedulers: after a takeover, where the last owner left
			// off (the shared record of the last change handed).
			m.changeMu.Lock()
			var err error
			if stopScheds == nil {
				err = m.loadScheduled(ctx)
			}
			if err == nil {
				// AddChange hands changes on from now on.
				m.setScheduling(true)
				err = m.scheduleChanges(ctx)
			}
			m.changeMu.Unlock()
			if err != nil && ctx.Err() == nil {
				m.log.Error("could not hand the schedulers the changes", "err", err)
			}
		}
		if owned && stopScheds == nil && m.SchedulesHere() {
			m.log.Info("this master runs the schedulers now")
			sctx, cancel := context.WithCancel(ctx)
			stopScheds, schedWG = cancel, startScheds(sctx)
		}
		m.refreshPending(ctx)
	}
	beat()
	arm()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			beat()
			arm()
		case <-resync:
			m.refreshPending(ctx)
		case e := <-remote:
			m.onRemoteEvent(ctx, e, signal)
		}
	}
}

// relayFlush bounds the wait, at a stop, for the relay to send the last
// events (a database that does not answer).
const relayFlush = 10 * time.Second

// relay runs the store's relay until ctx ends or out is closed; a relay
// that fails is started again after a pause.
func (m *Master) relay(ctx context.Context, out *Subscription, remote chan<- Event, resync func()) {
	in := func(e Event) {
		m.bus.publish(e)
		switch e.Type {
		case EventRequestNew, EventRequestCancelled, EventBuildStarted, EventBuildFinished, EventChangeNew, EventBuildStop:
			select {
			case remote <- e:
			default:
				resync() // too many at once: re-read them all
			}
		}
	}
	for {
		err := m.cluster.RelayEvents(ctx, m.masterID, out.C, in, resync)
		if err == nil || ctx.Err() != nil {
			return
		}
		m.log.Error("the events of the other masters are not received; trying again", "err", err)
		if Sleep(ctx, SystemClock{}, time.Second) != nil {
			return
		}
		resync()
	}
}

// onRemoteEvent reacts to an event of another master: a request to build,
// or one that is no longer pending; a change to schedule.
func (m *Master) onRemoteEvent(ctx context.Context, e Event, resync func()) {
	switch e.Type {
	case EventRequestNew:
		m.learnRequest(ctx, e.RequestID)
	case EventRequestCancelled, EventBuildStarted:
		m.forgetRequest(e.RequestID)
	case EventBuildFinished:
		if e.Results == Retry {
			resync() // its requests are pending again
		}
	case EventBuildStop:
		m.mu.Lock()
		_, here := m.running[e.BuildID]
		m.mu.Unlock()
		if here {
			m.StopBuild(ctx, e.BuildID, e.Reason)
		}
	case EventChangeNew:
		if m.SchedulesHere() {
			m.changeMu.Lock()
			err := m.scheduleChanges(ctx)
			m.changeMu.Unlock()
			if err != nil && ctx.Err() == nil {
				m.log.Error("could not hand the schedulers a change of another master", "change", e.ChangeID, "err", err)
			}
		}
	}
}

// heartbeat records that the master is alive, then expires the masters
// whose heartbeat is older than DeadAfter.
func (m *Master) heartbeat(ctx context.Context) {
	now := m.now()
	err := m.cluster.MasterHeartbeat(ctx, m.masterID, now)
	if errors.Is(err, ErrConflict) {
		// Taken for dead (a pause longer than DeadAfter): its builds were
		// closed and are built again elsewhere. It records itself again.
		m.log.Error("another master took this one for dead and closed its builds; recording it again", "master", m.masterID)
		if _, err := m.cluster.RegisterMaster(ctx, m.Name(), now); err != nil {
			m.log.Error("could not record the master again", "err", err)
		}
		m.stopClosedBuilds(ctx)
	} else if err != nil {
		if ctx.Err() == nil {
			m.log.Error("could not record the master's heartbeat", "err", err)
		}
		return
	}
	masters, err := m.cluster.ListMasters(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("could not list the masters", "err", err)
		}
		return
	}
	staleBefore := now.Add(-m.deadAfter())
	for _, o := range masters {
		if o.ID == m.masterID || !o.Active || !o.LastActive.Before(staleBefore) {
			continue
		}
		expired, closed, err := m.cluster.ExpireMaster(ctx, o.ID, staleBefore, now, "retry: its master stopped answering")
		if err != nil {
			m.log.Error("could not expire a dead master", "master", o.ID, "name", o.Name, "err", err)
			continue
		}
		if !expired {
			continue
		}
		m.log.Warn("a master stopped answering: its builds end as RETRY and are built again", "master", o.ID, "name", o.Name,
			"last_active", o.LastActive, "builds", len(closed))
		for _, b := range closed {
			e := Event{Type: EventBuildFinished, BuildID: b.ID, BuilderID: b.BuilderID, WorkerID: b.WorkerID, RequestID: b.BuildRequestID, Results: Retry}
			if r, err := m.store.GetRequest(ctx, b.BuildRequestID); err == nil {
				e.BuildsetID = r.BuildsetID
			}
			m.publish(e)
		}
	}
}

// claimSchedulers claims the schedulers for this master, and reports
// whether it holds them; when the store fails, what it held before.
func (m *Master) claimSchedulers(ctx context.Context) bool {
	if len(m.cfg.Schedulers) == 0 {
		// Nothing to run, and the record of the changes handed to the
		// schedulers is the scheduling master's.
		return false
	}
	names := make([]string, 0, len(m.cfg.Schedulers))
	for _, s := range m.cfg.Schedulers {
		names = append(names, s.SchedulerName())
	}
	owned, err := m.cluster.ClaimSchedulers(ctx, m.masterID, names)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("could not claim the schedulers", "err", err)
		}
		return m.SchedulesHere() // until the next heartbeat
	}
	return owned
}

func (m *Master) setScheduling(on bool) {
	m.clusterMu.Lock()
	m.scheduling = on
	m.clusterMu.Unlock()
}

// learnRequest adds a request another master stored to the pending list,
// if it is still pending and its builder is configured here.
func (m *Master) learnRequest(ctx context.Context, id int64) {
	r, err := m.store.GetRequest(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("could not read a request of another master", "request", id, "err", err)
		}
		return
	}
	if r.Claimed || r.Complete {
		return
	}
	b := m.builderByID(r.BuilderID)
	if b == nil {
		return
	}
	bs, err := m.store.GetBuildset(ctx, r.BuildsetID)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("could not read a buildset of another master", "buildset", r.BuildsetID, "err", err)
		}
		return
	}
	m.mu.Lock()
	if !slices.ContainsFunc(m.pending, func(p *pendingRequest) bool { return p.req.ID == id }) {
		m.addPendingLocked(&pendingRequest{req: r, bs: bs, builder: b})
	}
	m.mu.Unlock()
	m.poke()
}

// forgetRequest takes a request another master claimed or cancelled out
// of the pending list.
func (m *Master) forgetRequest(id int64) {
	m.mu.Lock()
	m.deletePendingLocked(func(p *pendingRequest) bool { return p.req.ID == id })
	m.mu.Unlock()
}

func (m *Master) builderByID(id int64) *builderState {
	for _, b := range m.builderList {
		if b.id == id {
			return b
		}
	}
	return nil
}

// refreshPending makes the pending list that of the store: requests other
// masters stored or put back come in, those they claimed or cancelled go.
func (m *Master) refreshPending(ctx context.Context) {
	reqs, err := m.store.PendingRequests(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("could not re-read the pending requests", "err", err)
		}
		return
	}
	stored := make(map[int64]*BuildRequest, len(reqs))
	for _, r := range reqs {
		stored[r.ID] = r
	}
	m.mu.Lock()
	known := make(map[int64]bool, len(m.pending))
	sets := map[int64]*Buildset{}
	m.deletePendingLocked(func(p *pendingRequest) bool {
		sets[p.bs.ID] = p.bs
		if stored[p.req.ID] == nil {
			return true
		}
		known[p.req.ID] = true
		return false
	})
	m.mu.Unlock()
	var add []*pendingRequest
	for _, r := range reqs {
		if known[r.ID] {
			continue
		}
		b := m.builderByID(r.BuilderID)
		if b == nil {
			continue
		}
		bs := sets[r.BuildsetID]
		if bs == nil {
			if bs, err = m.store.GetBuildset(ctx, r.BuildsetID); err != nil {
				if ctx.Err() == nil {
					m.log.Error("could not read a pending buildset", "buildset", r.BuildsetID, "err", err)
				}
				continue
			}
			sets[r.BuildsetID] = bs
		}
		add = append(add, &pendingRequest{req: r, bs: bs, builder: b})
	}
	if len(add) == 0 {
		return
	}
	m.mu.Lock()
	add = slices.DeleteFunc(add, func(p *pendingRequest) bool {
		return slices.ContainsFunc(m.pending, func(q *pendingRequest) bool { return q.req.ID == p.req.ID })
	})
	m.addPendingLocked(add...)
	m.mu.Unlock()
	m.poke()
}

// stopClosedBuilds stops the running builds whose stored record another
// master has closed (it took this one for dead): their requests are
// built again elsewhere.
func (m *Master) stopClosedBuilds(ctx context.Context) {
	for _, id := range m.RunningBuilds() {
		b, err := m.store.GetBuild(ctx, id)
		if err != nil || !b.Complete {
			continue
		}
		m.log.Warn("stopping a build another master closed; its request is built again", "build", id)
		m.StopBuild(ctx, id, "closed by another master that took this one for dead")
	}
}
