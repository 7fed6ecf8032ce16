package ci

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Errors of the master's methods.
var (
	// ErrUnknownBuilder: a request names a builder the master does not have.
	ErrUnknownBuilder = errors.New("unknown builder")
	// ErrUnknownWorker: a worker that is not configured tried to attach,
	// or a request names one.
	ErrUnknownWorker = errors.New("unknown worker")
	// ErrWorkerAttached: a worker of that name is attached already.
	ErrWorkerAttached = errors.New("worker already attached")
	// ErrWorkerNotConnected: the worker asked for is not connected.
	ErrWorkerNotConnected = errors.New("worker not connected")
	// ErrNotRunning: the master is not running (Run has not been called,
	// or it has returned).
	ErrNotRunning = errors.New("master not running")
	// ErrBuildNotRunning: the build asked for is not running.
	ErrBuildNotRunning = errors.New("build not running")
)

// errShutdown is the cause of the cancellation of builds interrupted by the
// master stopping: they end as RETRY and are built again.
var errShutdown = errors.New("master shutting down")

// A Master schedules and runs builds, keeping every record in its store.
// Create it with NewMaster, start it with Run. Its methods are safe for
// concurrent use; those that act on builds wait until Run has opened the
// store and return ErrNotRunning after Run has returned.
type Master struct {
	cfg      MasterConfig
	log      *slog.Logger
	clock    Clock
	bus      *bus
	redactor *Redactor

	builders    map[string]*builderState
	builderList []*builderState
	workers     map[string]*workerState
	workerList  []*workerState

	ready   chan struct{} // closed once the store is open and state recovered
	done    chan struct{} // closed when Run returns
	store   Store
	runOnce sync.Once
	unlock  func() // releases the base folder's lock

	changeMu        sync.Mutex // orders AddChange calls and the listeners' view
	scheduledChange int64      // the last change the schedulers had; changeMu

	detaching context.Context    // ends when Run detaches every worker
	endDetach context.CancelFunc // ends detaching
	watchers  sync.WaitGroup     // goroutines waiting to detach a worker

	// On a database shared with other masters (see cluster.go).
	cluster    ClusterStore // nil for a master alone
	masterID   int64
	clusterMu  sync.Mutex
	scheduling bool // this master holds the claim on the schedulers; clusterMu
	// listening is closed once the master receives the other masters'
	// events: the distributor starts no build before, so that a stop
	// asked through another master reaches every build started here.
	listening     chan struct{}
	listeningOnce sync.Once

	mu       sync.Mutex
	locks    lockTable
	pending  []*pendingRequest
	running  map[int64]*runningBuild // by build ID
	starting int                     // builds claimed but not yet in running
	stopping bool
	wake     chan struct{}
	buildWG  sync.WaitGroup
	idle     *sync.Cond // signalled when a build ends
}

type builderState struct {
	cfg     BuilderConfig
	id      int64
	workers []*workerState
	// pending counts the builder's requests in Master.pending, kept by
	// addPendingLocked and deletePendingLocked.
	pending int
}

type workerState struct {
	cfg       WorkerConfig
	id        int64
	conn      WorkerConn // nil unless attached
	attaching bool       // an AttachWorker call is setting up a connection
	builders  []*builderState
	running   int
	busy      map[*builderState]bool
	lastStart time.Time
	// paused workers start no build; graceful ones neither, and are
	// asked to stop once their builds have ended (see workercontrol.go).
	paused, graceful bool
	pauseReason      string
}

type pendingRequest struct {
	req     *BuildRequest
	bs      *Buildset
	builder *builderState
	taken   bool // by a build of the distribution round under way
}

// NewMaster checks cfg and returns a master ready to Run. An invalid
// configuration gives a *ConfigError listing every problem, and nothing is
// started.
func NewMaster(cfg MasterConfig) (*Master, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Master{
		cfg:       cfg,
		log:       cfg.Logger,
		clock:     cfg.Clock,
		bus:       newBus(),
		builders:  map[string]*builderState{},
		workers:   map[string]*workerState{},
		ready:     make(chan struct{}),
		done:      make(chan struct{}),
		running:   map[int64]*runningBuild{},
		wake:      make(chan struct{}, 1),
		listening: make(chan struct{}),
	}
	m.detaching, m.endDetach = context.WithCancel(context.Background())
	m.idle = sync.NewCond(&m.mu)
	if m.log == nil {
		m.log = slog.Default()
	}
	m.redactor = &Redactor{}
	m.log = slog.New(redactHandler{inner: m.log.Handler(), r: m.redactor})
	if m.clock == nil {
		m.clock = SystemClock{}
	}
	for _, w := range cfg.Workers {
		ws := &workerState{cfg: w, busy: map[*builderState]bool{}}
		m.workers[w.Name] = ws
		m.workerList = append(m.workerList, ws)
	}
	for _, b := range cfg.Builders {
		bs := &builderState{cfg: b}
		for _, wn := range b.Workers {
			ws := m.workers[wn]
			bs.workers = append(bs.workers, ws)
			ws.builders = append(ws.builders, bs)
		}
		m.builders[b.Name] = bs
		m.builderList = append(m.builderList, bs)
	}
	return m, nil
}

// Config returns the master's configuration. It must not be changed.
func (m *Master) Config() *MasterConfig { return &m.cfg }

// Logger returns the master's logger; secrets builds read are redacted
// from what it writes.
func (m *Master) Logger() *slog.Logger { return m.log }

// Redactor returns the master's redactor: what shows build data outside
// the master (the web UI, reporters) runs text through it.
func (m *Master) Redactor() *Redactor { return m.redactor }

// Now returns the master's current time (its configured clock).
func (m *Master) Now() time.Time { return m.clock.Now() }

// Clock returns the master's clock.
func (m *Master) Clock() Clock { return m.clock }

func (m *Master) now() time.Time { return m.clock.Now() }

// Store returns the master's store once Run has opened it (waiting for that
// until ctx ends).
func (m *Master) Store(ctx context.Context) (Store, error) {
	if err := m.waitReady(ctx); err != nil {
		return nil, err
	}
	return m.store, nil
}

// Ready returns a channel closed once the master has opened its store and
// recovered from its last stop: from then on it accepts changes and
// requests.
func (m *Master) Ready() <-chan struct{} { return m.ready }

// Done returns a channel closed when Run has returned.
func (m *Master) Done() <-chan struct{} { return m.done }

func (m *Master) waitReady(ctx context.Context) error {
	select {
	case <-m.done:
		return ErrNotRunning
	default:
	}
	select {
	case <-m.ready:
		select {
		case <-m.done:
			return ErrNotRunning
		default:
			return nil
		}
	case <-m.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BuilderID returns the stored ID of the builder called name, once the
// master is ready.
func (m *Master) BuilderID(name string) (int64, bool) {
	b, ok := m.builders[name]
	if !ok {
		return 0, false
	}
	select {
	case <-m.ready:
		return b.id, true
	default:
		return 0, false
	}
}

// Subscribe returns a subscription to the master's events, with a buffer of
// that many events (a default if zero). Close it when done.
func (m *Master) Subscribe(buffer int) *Subscription { return m.bus.subscribe(buffer) }

// publish tells the subscribers of an event of this master.
func (m *Master) publish(e Event) {
	e.MasterID = m.masterID
	m.bus.publish(e)
}

// Run opens the store, closes the builds a previous run left unfinished (as
// RETRY, building their requests again), starts the services and
// schedulers, and distributes pending build requests to workers until ctx
// ends. It then stops gracefully: no new build starts, running builds get
// ShutdownTimeout to finish and are then interrupted (RETRY, built again on
// the next start), services are stopped, and the store is closed. Run may be
// called once.
func (m *Master) Run(ctx context.Context) (err error) {
	first := false
	m.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("ci: Master.Run called twice")
	}
	defer close(m.done)

	defer func() {
		if m.unlock != nil {
			m.unlock()
		}
	}()
	if err := m.open(ctx); err != nil {
		if m.store != nil && m.cfg.Store == nil {
			m.store.Close()
		}
		return err
	}
	if m.cfg.Store == nil {
		defer func() {
			if cerr := m.store.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("close store: %w", cerr)
			}
		}()
	}
	if cs, ok := m.store.(ClusterStore); ok {
		m.cluster = cs
		if err := m.registerMaster(ctx); err != nil {
			return err
		}
		defer func() {
			if serr := m.cluster.StopMaster(context.WithoutCancel(ctx), m.masterID, m.now()); serr != nil {
				m.log.Error("could not record the master stopped", "err", serr)
			}
		}()
	}
	if err := m.recoverFromStop(ctx); err != nil {
		return err
	}
	if err := m.loadScheduled(ctx); err != nil {
		return err
	}
	m.log.Info("master started", "title", m.cfg.Title, "builders", len(m.builderList), "workers", len(m.workerList), "pending", len(m.pending))
	reports := m.Subscribe(reporterQueue)
	var relayOut *Subscription
	if m.cluster != nil {
		relayOut = m.Subscribe(relayQueue)
	}
	close(m.ready)
	// Changes a previous run stored without telling its schedulers (on a
	// shared database, the master that claims the schedulers does it).
	if m.cluster == nil {
		m.changeMu.Lock()
		err = m.scheduleChanges(ctx)
		m.changeMu.Unlock()
		if err != nil && ctx.Err() == nil {
			reports.Close()
			return err
		}
		err = nil
	}

	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	buildCtx, stopBuilds := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopBuilds(errShutdown)

	var svcWG sync.WaitGroup
	svcErr := make(chan error, 1)
	start := func(name string, s Service) {
		if p, ok := s.(Preparer); ok {
			p.Prepare(m)
		}
		svcWG.Go(func() {
			if err := s.Run(svcCtx, m); err != nil && svcCtx.Err() == nil {
				select {
				case svcErr <- fmt.Errorf("%s: %w", name, err):
				default:
				}
			}
		})
	}
	started := map[Service]bool{}
	for i, s := range m.cfg.Services {
		if !started[s] {
			started[s] = true
			start(fmt.Sprintf("service %d (%T)", i, s), s)
		}
	}
	var scheds []Scheduler
	for _, s := range m.cfg.Schedulers {
		if svc, ok := s.(Service); ok && !started[svc] {
			started[svc] = true
			scheds = append(scheds, s)
		}
	}
	if m.cluster == nil {
		for _, s := range scheds {
			start(fmt.Sprintf("scheduler %q", s.SchedulerName()), s.(Service))
		}
	}
	// A reporter that keeps a connection (IRC) is also a service.
	for i, r := range m.cfg.Reporters {
		if svc, ok := r.(Service); ok && !started[svc] {
			started[svc] = true
			start(fmt.Sprintf("reporter %d (%T)", i, r), svc)
		}
	}

	distDone := make(chan struct{})
	go func() {
		defer close(distDone)
		m.distribute(buildCtx)
	}()
	svcWG.Go(func() { m.runReporters(svcCtx, reports) })

	// On a shared database, the schedulers run while this master holds
	// their claim.
	clusterCtx, stopCluster := context.WithCancel(svcCtx)
	defer stopCluster()
	clusterDone := make(chan struct{})
	if m.cluster != nil {
		startScheds := func(sctx context.Context) *sync.WaitGroup {
			var wg sync.WaitGroup
			for _, s := range scheds {
				wg.Go(func() {
					if err := s.(Service).Run(sctx, m); err != nil && sctx.Err() == nil {
						select {
						case svcErr <- fmt.Errorf("scheduler %q: %w", s.SchedulerName(), err):
						default:
						}
					}
				})
			}
			return &wg
		}
		go func() {
			defer close(clusterDone)
			m.runCluster(clusterCtx, relayOut, startScheds)
		}()
	} else {
		close(clusterDone)
	}

	select {
	case <-ctx.Done():
	case err = <-svcErr:
		m.log.Error("master stopping: service failed", "err", err)
	}
	m.shutdown(stopBuilds)
	<-distDone
	if relayOut != nil {
		// The relay sends what the builds' ends published, then returns.
		relayOut.Close()
	}
	stopCluster()
	<-clusterDone
	stopServices()
	svcWG.Wait()
	m.detachAll()
	m.log.Info("master stopped")
	return err
}

// open opens the store and records the configured builders and workers.
func (m *Master) open(ctx context.Context) error {
	// The base folder is this master's alone: a second master on it would
	// take the first one's running builds for a crash's leftovers.
	if dir := m.lockDir(); dir != "" {
		release, err := lockFolder(dir)
		if err != nil {
			return err
		}
		m.unlock = release
	}
	m.store = m.cfg.Store
	if m.store == nil {
		path := m.cfg.DatabasePath()
		driver, isURL := DatabaseDriver(path)
		open, ok := storeDriver(driver)
		if !ok {
			return fmt.Errorf("ci: no store: set MasterConfig.Store or import github.com/kilnci/kiln/ci/%s", driver)
		}
		if dir := filepath.Dir(path); !isURL && dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create master folder: %w", err)
			}
		}
		st, err := open(ctx, path)
		if err != nil {
			// The driver's error does not show the URL's password
			// (ci/postgres takes it out).
			return fmt.Errorf("open store %s: %w", m.cfg.DatabaseName(), err)
		}
		m.store = st
	}
	for _, b := range m.builderList {
		rec, err := m.store.EnsureBuilder(ctx, b.cfg.Name, b.cfg.Description, b.cfg.Tags)
		if err != nil {
			return fmt.Errorf("record builder %q: %w", b.cfg.Name, err)
		}
		b.id = rec.ID
	}
	now := m.now()
	for _, w := range m.workerList {
		rec, err := m.store.EnsureWorker(ctx, w.cfg.Name)
		if err != nil {
			return fmt.Errorf("record worker %q: %w", w.cfg.Name, err)
		}
		w.id = rec.ID
		if rec.Connected {
			if err := m.store.SetWorkerConnected(ctx, w.id, false, nil, now); err != nil {
				return fmt.Errorf("record worker %q disconnected: %w", w.cfg.Name, err)
			}
		}
	}
	return nil
}

// lockDir is the folder the master locks: its base folder, or the
// folder of its SQLite database; none for a master with neither (a store
// given in the configuration, or a database URL, and no base folder).
func (m *Master) lockDir() string {
	if m.cfg.BaseDir != "" {
		return m.cfg.BaseDir
	}
	if _, isURL := DatabaseDriver(m.cfg.DatabasePath()); m.cfg.Store == nil && !isURL {
		return filepath.Dir(m.cfg.DatabasePath())
	}
	return ""
}

// relayQueue is the buffer of the subscription whose events a master on
// a shared database tells the others: one that overflows is counted, and
// the others find what they missed in their periodic re-read.
const relayQueue = 8192

// recoverFromStop closes builds left running by a previous run and loads
// the pending requests. On a shared database the builds it closes are its
// own, and registerMaster has closed them.
func (m *Master) recoverFromStop(ctx context.Context) error {
	var unfinished []*Build
	if m.cluster == nil {
		var err error
		if unfinished, err = m.store.UnfinishedBuilds(ctx); err != nil {
			return fmt.Errorf("find unfinished builds: %w", err)
		}
	}
	for _, b := range unfinished {
		b.Results = Retry
		b.Complete = true
		b.CompleteAt = m.now()
		b.StateString = "interrupted: the master stopped"
		if _, err := m.store.FinishBuild(ctx, b, true); err != nil {
			return fmt.Errorf("close interrupted build %d: %w", b.ID, err)
		}
		m.log.Warn("closed build interrupted by a master stop; its request will be built again", "build", b.ID, "number", b.Number)
	}
	reqs, err := m.store.PendingRequests(ctx)
	if err != nil {
		return fmt.Errorf("load pending requests: %w", err)
	}
	byID := map[int64]*builderState{}
	for _, b := range m.builderList {
		byID[b.id] = b
	}
	sets := map[int64]*Buildset{}
	var load []*pendingRequest
	for _, r := range reqs {
		b, ok := byID[r.BuilderID]
		if !ok {
			// A builder that is no longer configured: its requests wait
			// until it comes back.
			continue
		}
		bs, ok := sets[r.BuildsetID]
		if !ok {
			if bs, err = m.store.GetBuildset(ctx, r.BuildsetID); err != nil {
				return fmt.Errorf("load buildset %d: %w", r.BuildsetID, err)
			}
			sets[r.BuildsetID] = bs
		}
		load = append(load, &pendingRequest{req: r, bs: bs, builder: b})
	}
	m.addPendingLocked(load...)
	return nil
}

func sortPending(p []*pendingRequest) {
	slices.SortStableFunc(p, comparePending)
}

// insertPending adds new requests to the sorted pending list, each in its
// place, and returns the list: with a long backlog, far cheaper than
// sorting the list again for each submission.
func insertPending(pending []*pendingRequest, add ...*pendingRequest) []*pendingRequest {
	for _, p := range add {
		i, _ := slices.BinarySearchFunc(pending, p, comparePending)
		pending = slices.Insert(pending, i, p)
	}
	return pending
}

func comparePending(a, b *pendingRequest) int {
	if c := cmp.Compare(b.req.Priority, a.req.Priority); c != 0 {
		return c
	}
	if c := a.req.SubmittedAt.Compare(b.req.SubmittedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.req.ID, b.req.ID)
}

// shutdown stops distribution, lets running builds finish for the shutdown
// timeout, then interrupts them and waits for them to end.
func (m *Master) shutdown(stopBuilds context.CancelCauseFunc) {
	m.mu.Lock()
	m.stopping = true
	n := len(m.running) + m.starting
	m.mu.Unlock()
	m.poke()
	timeout := m.cfg.ShutdownTimeout
	if timeout == 0 {
		timeout = DefaultShutdownTimeout
	}
	if n > 0 && timeout > 0 {
		m.log.Info("waiting for running builds to finish", "builds", n, "timeout", timeout)
		allDone, done := context.WithCancel(context.Background())
		go func() {
			m.buildWG.Wait()
			done()
		}()
		if Sleep(allDone, m.clock, timeout) == nil {
			m.log.Warn("interrupting running builds: they will be built again after a restart")
		}
		done()
	}
	stopBuilds(errShutdown)
	m.buildWG.Wait()
}

// detachAll forgets every attached worker and records them
// disconnected, before the store closes.
func (m *Master) detachAll() {
	m.endDetach()
	m.watchers.Wait()
}

// poke wakes the distributor.
func (m *Master) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}
