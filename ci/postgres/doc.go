// Package postgres keeps a Kiln master's records in a PostgreSQL database:
// it implements [ci.Store] on github.com/jackc/pgx/v5, for installations
// that outgrow one machine. It passes the same conformance suite as
// ci/sqlite (ci/storetest) and keeps the same numbering: build numbers
// per builder follow the builder's last build, changes are numbered in
// the order they are stored.
//
// Importing the package registers the store driver "postgres" with
// [ci.RegisterStoreDriver]; a master whose MasterConfig.Database is a
// postgres:// or postgresql:// URL opens it through it. [Open] can also be
// called directly:
//
//	store, err := postgres.Open(ctx, "postgres://kiln:secret@db.example.org/kiln")
//	if err != nil {
//		return err
//	}
//	defer store.Close()
//
// The URL takes every parameter libpq does (sslmode, connect_timeout,
// pool_max_conns for the pool's size...), and the driver reads libpq's
// environment variables (PGPASSWORD...) and ~/.pgpass for what the URL
// leaves out. A URL's password is never shown: errors of the package take
// it out (the driver's messages may quote the URL), and [Redact] gives a
// URL fit for a log.
//
// # Schema
//
// The tables are those of ci/sqlite, with PostgreSQL's types: times are
// timestamptz (microseconds, returned in UTC; the zero time is NULL),
// flags are booleans, JSON columns are jsonb, log chunks and state values
// are bytea. Logs are chunked and compressed as ci/sqlite does it, so a
// log reads the same from either store. IDs are identity columns; unlike
// SQLite's rowids they are never reused, even after the newest record is
// deleted, and a transaction rolled back leaves a gap.
//
// The schema is made and changed by migrations, SQL files embedded in the
// binary and applied in name order when the store is opened, each in a
// transaction with its record in the migrations table. An advisory lock
// makes masters starting at once on a new database apply them once.
//
// # Transactions and locks
//
// Every method that changes records is one transaction (READ COMMITTED);
// reads are one READ ONLY, REPEATABLE READ transaction each, so that a
// page and its total count agree. Where ci/sqlite relies on its single
// writer, this store takes row locks, so that several connections, and
// several masters, can write at once:
//
//   - StartBuild claims requests with SELECT ... FOR UPDATE SKIP LOCKED: a
//     request being claimed or cancelled elsewhere is a conflict at once
//     (ci.ErrConflict), never claimed twice. It then locks the builder's
//     row while it takes the next build number.
//   - FinishBuild locks the build's row (a build finishes once), then
//     each buildset's before completing it, so that two builds finishing
//     a buildset's last requests at once complete it exactly once.
//   - CancelRequest locks the request's row; AppendLog and FinishLog lock
//     the log's row (lines numbered one after the other), AddLog the
//     step's (unique slugs).
//   - AddChange takes an advisory lock held until its commit: changes are
//     stored one at a time, so their IDs are in commit order and a reader
//     following them by ID (ChangesAfter) never skips one committed late,
//     and a dedup key is stored once. AddBuildset takes an advisory lock
//     on its ExternalID, when it has one.
//   - EnsureBuilder, EnsureWorker and SetState are single upserts.
//
// The space log lines take (LogBytes) is a running total kept in a few
// rows picked by log ID, so that concurrent appends rarely wait for one
// another. Compact runs a plain VACUUM of the tables the janitor deletes
// from (it does not block writers) and reports the pages given back;
// autovacuum does the same on its own schedule.
//
// # Several masters
//
// Several masters share one database, each with its own workers, web
// server and change hooks, and nothing else between them: the store is a
// [ci.ClusterStore], and PostgreSQL's row locks, advisory locks and
// LISTEN/NOTIFY do the coordination. Each master needs a name of its own
// (ci.MasterConfig.Name), kept from one run to the next.
//
//   - The masters table records each master (ID, name, active, last
//     heartbeat, on the master's clock). A master starting marks itself
//     active and closes its own unfinished builds as RETRY (builds.master_id
//     says which master runs a build; builds from before, with none, are
//     closed only when no other master is active). It refuses to start
//     while a master of its name has a heartbeat younger than DeadAfter,
//     unless that name is its default one and it holds its base folder's
//     lock: then the record is its own killed previous run's.
//   - Every Heartbeat (10 s) a master records that it is alive and looks
//     at the others: one whose heartbeat is older than DeadAfter (20 s) is
//     expired in one transaction that claims its row with FOR NO KEY UPDATE
//     SKIP LOCKED (of masters expiring it at once, one does it): marked
//     inactive, its schedulers freed, its builds ended as RETRY and their
//     requests pending again, for the workers of the living masters.
//   - The schedulers table holds the claim on the schedulers (Buildbot's
//     scheduler_masters): one master runs them all, and hands the
//     change-based ones every change, whichever master stored it. Claims
//     are made all or none under an advisory lock; a master that stops or
//     is expired frees them and another takes them at its next heartbeat.
//     The schedulers keep their state in the shared state store, so a
//     takeover neither fires a Nightly twice nor skips one; their
//     submissions carry ExternalIDs, which AddBuildset honours across
//     masters.
//   - Events cross masters on the channel kiln_events ([Store.RelayEvents]):
//     a master sends its events in batches, each notification a JSON
//     document under PostgreSQL's 8000 bytes ({"m": master, "e": [events
//     with short field names]}), and receives the others' on a connection
//     of its own, outside the pool, publishing them to its subscribers
//     (web UI streams, live logs: a log.lines event names the lines, which
//     are read from the store). A master learns so of requests submitted
//     elsewhere, of claims and cancellations, of builds to stop. A master
//     starts no build before it listens (10 s at most), so that a stop
//     asked through another master finds every build. When that
//     connection drops it connects again (after a second) and the master
//     re-reads the pending requests, as it does at every heartbeat. A stop
//     asked through another master is asked again every 2 s while the
//     build runs (a minute at most), so that one asked while the build's
//     master was connecting again reaches it.
//
// Each master so uses its pool (pool_max_conns in the URL; by default the
// larger of 4 and the number of CPUs) plus one connection for LISTEN.
package postgres
