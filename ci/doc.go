// Package ci is the core of Kiln: the master, its configuration, and the
// records and interfaces everything else is written against. A master
// decides what to build and when, keeps every record in its store, and has
// workers run the commands of its builds. The configuration is a
// MasterConfig value, Buildbot's master.cfg written in Go; NewMaster checks
// it and Master.Run runs it.
//
// Package ci imports only the standard library. Where the master needs
// something from outside (a worker connection, a scheduler, a change hook,
// a reporter, a store) it declares the interface and another package
// implements it: scheduler, hook, ci/report, ci/sqlite, worker/remote,
// worker/local, webui. Those packages use the master's exported methods
// only, and so can a user's own.
//
// # Data flow
//
// A build goes from a change to a worker's process and back, through these
// types:
//
//	Change          a commit, a tag, a push: what a change hook (package hook)
//	    │           or a test gives to Master.AddChange, which stores it
//	    ▼
//	Scheduler       told of every stored change, in order (a ChangeListener),
//	    │           or woken by a timer, a Trigger step, a person (a
//	    │           ForceScheduler): it decides that builds are wanted and
//	    ▼           calls Master.Submit with a Submission
//	Buildset        what was asked at once: source stamps, properties, a
//	BuildRequest    reason; one request per builder, stored pending before
//	    │           Submit returns
//	    ▼
//	Build           the distributor pairs the oldest request of the highest
//	    │           priority with an idle worker of its builder whose locks
//	    │           are free (collapsing requests for the same source when
//	    │           the builder says so), pings the worker, and starts a build
//	    ▼           that claims the requests
//	Step            the builder's steps run in order, each with a StepRun:
//	    │           its properties, logs, and the build's worker
//	    ▼
//	RemoteCommand   a step acts on the worker only by sending commands
//	    │           (shell, mkdir, uploadFile...) through StepRun.RunCommand
//	    ▼
//	WorkerConn      the connection to the worker: over the network with
//	                Buildbot's protocol (worker/remote, doc/protocol.md) or in
//	                the master's process (worker/local)
//
// Updates come back the same way: output into the step's logs, stored in
// chunks and readable while the step runs; the exit code into the step's
// result; the step results into the build's; the build's results into its
// requests and buildset. A step may also record test results
// (StepRun.AddTestResults, as steps.JUnit does): sets of results, as
// Buildbot's test_result_sets, kept with the build. Each record is stored
// before anyone is told of it:
// subscribers of Master.Subscribe (the web UI's live pages) then get an
// Event, and Reporters a Report when a build starts and finishes.
//
// Nothing is kept only in memory that a restart would lose. A change
// acknowledged to a webhook, a pending request and a finished build are in
// the store; a build interrupted by a stop or a crash ends as RETRY at the
// next start and its requests are built again.
//
// # The master's lifecycle
//
// NewMaster checks the whole configuration in one pass (MasterConfig.Validate)
// and returns a *ConfigError listing every problem; nothing is started yet.
// Run then:
//
//  1. locks the base folder (a second master on it gets ErrFolderInUse) and
//     opens the store (MasterConfig.Store, or the SQLite file that package
//     ci/sqlite opens), recording the configured builders and workers;
//  2. closes the builds a previous run left unfinished as RETRY and loads
//     the pending requests;
//  3. is ready (Master.Ready): it hands the schedulers the changes a crash
//     kept from them, then starts the services (MasterConfig.Services: the
//     web server, the worker listener, in-process workers, the janitor;
//     schedulers and reporters that are also a Service), the distributor and
//     the reporters;
//  4. serves until its context ends or a service fails, then stops: no new
//     build starts, running builds get ShutdownTimeout to finish and are then
//     interrupted (RETRY, built again at the next start), services are
//     stopped and waited for, workers detached, the store closed.
//
// Everything Run started has stopped when it returns. The master's methods
// are safe for concurrent use; those that act on builds wait until Run has
// opened the store and return ErrNotRunning once it has returned. Time comes
// from MasterConfig.Clock, which tests replace (ci/citest).
//
// A Service is anything that runs beside the master for as long as it runs,
// with the master's public API: webui.Server, remote.Listener, local.Worker,
// metrics.Collector, janitor.Janitor, debian.Archive are services. One that
// follows the master's events from its very start (metrics.Collector) is
// also a Preparer: its Prepare subscribes before the first build starts.
//
// # Several masters on one database
//
// A master whose store is a ClusterStore (ci/postgres) is one of several
// sharing the database, each with its own workers, web server and hooks.
// At step 2 it records itself under MasterConfig.Name and closes only its
// own unfinished builds (Build.MasterID). While it runs, every
// MasterConfig.Heartbeat (DefaultHeartbeat, 10 s) it records a heartbeat,
// expires the masters whose heartbeat is older than MasterConfig.DeadAfter
// (DefaultDeadAfter, 20 s) — their builds end as RETRY and are built again
// here or elsewhere — claims the schedulers, and re-reads the pending
// requests. Every request is built once, whichever master's worker claims
// it first. The events of the other masters reach its subscribers
// (Event.MasterID names their master), so its web UI follows every build;
// it reacts to their new requests, claims, cancellations and requests to
// stop one of its builds (StopBuild works on any master's build).
//
// One master at a time runs the schedulers (SchedulesHere): their Service
// runs there, and it hands the change listeners every change, whichever
// master stored it. AddChange on another master returns once the change
// is stored; the scheduling master builds it when it hears of it. When the
// scheduling master stops or dies, another takes the schedulers over at
// its next heartbeat, with their state from the store. Masters lists the
// masters, active or not.
//
// # Properties and renderables
//
// Every build has Properties: named values, each with the source it came
// from, as in Buildbot. They are set, each over the previous, from the
// builder's configuration ("Builder"), the worker's ("Worker"), the
// build's source stamp (branch, revision, repository, project, codebase),
// the buildset (what the scheduler, the force form or the trigger gave),
// then buildername, workername, builddir and buildnumber; steps set more as
// they run (StepRun.SetProperty), which later steps read.
//
// A step's arguments may be Renderables, computed when the step runs from
// the build's properties, source stamps and worker (Props): Interpolate, in
// Buildbot's syntax ("%(prop:dist)s", "%(src::branch)s", "%(secret:token)s"),
// Prop, or a RenderFunc for anything a format cannot say. Render,
// RenderString and RenderList do the work; the configuration check
// validates renderables before anything starts. Secrets come from
// MasterConfig.Secrets (package ci/secret has providers), and the Redactor
// hides every value read from logs, properties, states and the master's own
// log.
//
// # Errors
//
// A step's Result says how the step went: a command that ran and failed is
// FAILURE, with a nil error. A Go error from a step means the framework could
// not run it; the step ends as EXCEPTION, or as RETRY when the error wraps
// ErrWorkerLost. A remote command's own failure, as the worker reports it,
// is a *CommandError.
//
// Other errors are wrapped with what was being done and carry one of a few
// sentinel values, to test with errors.Is, never by their text:
//
//	ErrInvalidConfig    a configuration NewMaster refuses (every *ConfigError)
//	ErrFolderInUse      another master runs on the base folder
//	ErrNotRunning       the master has not started or has stopped
//	ErrUnknownBuilder   a submission names a builder the master lacks
//	ErrUnknownWorker    a worker that is not configured tried to attach
//	ErrWorkerAttached   a worker of that name is attached already
//	ErrWorkerLost       the worker went away during a command
//	ErrBuildNotRunning  a build to stop is not running
//	ErrInvalidForce     a ForceScheduler refused a request as asked
//	ErrSecretNotFound   a SecretProvider does not have the secret
//	ErrNotFound         a store has no such record
//	ErrConflict         a record is not in the state the operation needs
//	ErrDuplicate        a store already has that record
//
// For example, a web handler answering a stop:
//
//	err := m.StopBuild(ctx, id, "stopped by alice")
//	switch {
//	case errors.Is(err, ci.ErrBuildNotRunning):
//		// 409: it finished meanwhile
//	case errors.Is(err, ci.ErrNotRunning):
//		// 503: the master is stopping
//	}
//
// Package webui decides the HTTP status of each in one table.
package ci
