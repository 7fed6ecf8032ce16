// Package sqlite keeps a Kiln master's records in one SQLite file: it
// implements [ci.Store] on the pure-Go driver modernc.org/sqlite, so the
// master stays a single static binary with its state.sqlite beside it.
//
// Importing the package registers the store driver "sqlite" with
// [ci.RegisterStoreDriver]; a master opens its database through it. [Open]
// can also be called directly:
//
//	store, err := sqlite.Open(ctx, "state.sqlite")
//	if err != nil {
//		return err
//	}
//	defer store.Close()
//
// # Schema
//
// The tables follow Buildbot's schema, so its data model carries over:
// builders, workers, changes (with change_files, and a unique nullable
// dedup_key for webhook deliveries seen before), sourcestamps (linked to
// the changes that led to them through sourcestamp_changes), buildsets
// (with buildset_sourcestamps), buildrequests, builds (numbered per
// builder), steps, logs, logchunks and object_state (the small values of
// [ci.StateStore]).
//
// Times are stored as integer microseconds since the Unix epoch and come
// back in UTC; the zero time is stored as NULL and comes back as the zero
// time. Properties of buildsets and builds are a JSON object mapping each
// name to [value, source], as Buildbot's data API shows them; like any
// JSON, numbers come back as float64. Results are Buildbot's codes.
//
// The schema is created and changed by migrations, SQL files embedded in
// the binary and applied in name order when the store is opened. Each is
// recorded in the migrations table in the same transaction that applies
// it, so reopening a file applies only the migrations it lacks, and a
// failed migration leaves the file as it was.
//
// # Durability
//
// The database is in write-ahead-log (WAL) mode with synchronous=NORMAL:
// a transaction is committed once it is in the log file, and the log is
// copied into the database file from time to time (a checkpoint). Every
// method that changes records is atomic. Those that record a buildset, a
// change, a build's end, a worker, a state or test results return only
// once the transaction holding their change is committed: when they
// return nil the change is on disk and survives the master crashing or
// being killed. Writes that arrive while another commits are committed
// together (group commit): one transaction, each write in a savepoint of
// its own, so that a write that fails is undone alone, and concurrent
// builds share the cost of a commit.
//
// The records of a running build's progress (StartBuild, AddStep,
// UpdateStep, AddStepLogs, AddLog, AppendLog, FinishLog, SetBuildState)
// are progress writes: they return once made, and their transaction is
// committed with the next write of the first kind, before the next read,
// or at most 10 ms later, whichever comes first. A build's start, its
// steps and its logs are then committed together with its end or with
// other builds' writes, instead of one commit each. Every read sees every
// write that returned, whatever its kind (a read commits the progress
// writes first, see Sync for other connections). A crash loses at most
// the last 10 ms of progress, as if it had not been made: a build whose
// start is lost leaves no record, and its request, still pending, is
// built again.
//
// A power failure or operating system crash may lose the last
// transactions committed before it (never leaving the database
// inconsistent); that is the price of not waiting for the disk on every
// commit. Foreign keys are enforced.
//
// # Logs
//
// A log is stored in chunks of whole lines: each call to AppendLog makes
// one chunk (several, when it brings more than 64 KiB), recording the
// numbers of its first and last lines. Chunks of 256 bytes or more are
// compressed with zlib when that makes them smaller; each chunk says
// whether it is. LogLines reads only the chunks holding the lines asked
// for, so following the end of a long log costs the same as reading a
// short one. Lines are readable as soon as AppendLog returns, while the
// log is still being written.
//
// # Concurrency
//
// A Store is safe for concurrent use. It holds two pools of connections
// to the file, each configured through the data source name so that every
// connection gets the same pragmas (busy_timeout, foreign_keys,
// synchronous). Writes are made by one goroutine, which keeps the single
// connection of its pool, in transactions that begin with BEGIN IMMEDIATE
// and run statements prepared once on that connection, so they queue in Go
// rather than fail with SQLITE_BUSY, and no two writes interleave: a
// read-modify-write such as claiming build requests in StartBuild cannot
// race another. That connection keeps its temporary data in memory
// (temp_store=MEMORY): the journal of the savepoints of a group of writes
// is never written to a file. Reads use a
// second pool of read-only connections; in WAL mode they never wait for
// the writer, and each read method sees one consistent snapshot (a page of
// a list and its total count agree). Another process opening the same file
// waits up to [BusyTimeout] for the write lock, which the writer holds
// while progress writes wait for their commit (10 ms at most).
package sqlite
