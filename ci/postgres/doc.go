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
// What is safe today with several masters on one database: the records
// themselves. Requests are claimed once, numbers and IDs stay consistent,
// buildsets complete once, dedup keys and ExternalIDs are honoured across
// masters, migrations are applied once.
//
// What is not yet: the masters do not know of each other. A master that
// starts closes every unfinished build as an interrupted one of its own
// (UnfinishedBuilds does not say which master runs a build), so masters
// must not restart while another runs builds; there are no heartbeats to
// close a dead master's builds, no LISTEN/NOTIFY to tell a master of
// requests, builds and log lines another one made (its web UI shows them
// when it reads the store again, not live), and schedulers that must
// decide once (Nightly, Periodic) run on every master. Until that work is
// done, run one master per database, or several with the schedulers and
// restarts above in mind.
package postgres
