-- The initial schema, modelled on Buildbot's. Times are integer
-- microseconds since the Unix epoch, NULL for "never"; results are
-- Buildbot's codes, NULL until there is one; flags are 0 or 1; JSON columns
-- hold what their comment says.

CREATE TABLE builders (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	tags        TEXT NOT NULL DEFAULT '[]' -- JSON list of strings
);

CREATE TABLE workers (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	info       TEXT NOT NULL DEFAULT '{}', -- JSON object
	connected  INTEGER NOT NULL DEFAULT 0,
	changed_at INTEGER
);

CREATE TABLE sourcestamps (
	id         INTEGER PRIMARY KEY,
	codebase   TEXT NOT NULL DEFAULT '',
	repository TEXT NOT NULL DEFAULT '',
	branch     TEXT NOT NULL DEFAULT '',
	revision   TEXT NOT NULL DEFAULT '',
	project    TEXT NOT NULL DEFAULT '',
	created_at INTEGER
);

CREATE TABLE changes (
	id             INTEGER PRIMARY KEY,
	author         TEXT NOT NULL DEFAULT '',
	committer      TEXT NOT NULL DEFAULT '',
	comments       TEXT NOT NULL DEFAULT '',
	branch         TEXT NOT NULL DEFAULT '',
	revision       TEXT NOT NULL DEFAULT '',
	revlink        TEXT NOT NULL DEFAULT '',
	when_at        INTEGER,
	category       TEXT NOT NULL DEFAULT '',
	repository     TEXT NOT NULL DEFAULT '',
	codebase       TEXT NOT NULL DEFAULT '',
	project        TEXT NOT NULL DEFAULT '',
	properties     TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> value
	dedup_key      TEXT UNIQUE, -- NULL when the change has none
	sourcestamp_id INTEGER NOT NULL REFERENCES sourcestamps (id)
);

CREATE TABLE change_files (
	change_id INTEGER NOT NULL REFERENCES changes (id),
	ord       INTEGER NOT NULL,
	filename  TEXT NOT NULL,
	PRIMARY KEY (change_id, ord)
) WITHOUT ROWID;

-- The changes that led to a source stamp (SourceStamp.Changes).
CREATE TABLE sourcestamp_changes (
	sourcestamp_id INTEGER NOT NULL REFERENCES sourcestamps (id),
	change_id      INTEGER NOT NULL REFERENCES changes (id),
	PRIMARY KEY (sourcestamp_id, change_id)
) WITHOUT ROWID;

CREATE TABLE buildsets (
	id              INTEGER PRIMARY KEY,
	external_id     TEXT NOT NULL DEFAULT '',
	reason          TEXT NOT NULL DEFAULT '',
	submitted_at    INTEGER,
	complete        INTEGER NOT NULL DEFAULT 0,
	complete_at     INTEGER,
	results         INTEGER,
	properties      TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [value, source]
	parent_build_id INTEGER REFERENCES builds (id),
	scheduler       TEXT NOT NULL DEFAULT ''
);

CREATE TABLE buildset_sourcestamps (
	buildset_id    INTEGER NOT NULL REFERENCES buildsets (id),
	ord            INTEGER NOT NULL,
	sourcestamp_id INTEGER NOT NULL REFERENCES sourcestamps (id),
	PRIMARY KEY (buildset_id, ord)
) WITHOUT ROWID;

CREATE TABLE buildrequests (
	id           INTEGER PRIMARY KEY,
	buildset_id  INTEGER NOT NULL REFERENCES buildsets (id),
	builder_id   INTEGER NOT NULL REFERENCES builders (id),
	priority     INTEGER NOT NULL DEFAULT 0,
	submitted_at INTEGER,
	claimed      INTEGER NOT NULL DEFAULT 0,
	claimed_at   INTEGER,
	build_id     INTEGER REFERENCES builds (id),
	complete     INTEGER NOT NULL DEFAULT 0,
	complete_at  INTEGER,
	results      INTEGER,
	waited_for   INTEGER NOT NULL DEFAULT 0
);

-- PendingRequests, in its order.
CREATE INDEX buildrequests_pending ON buildrequests (priority DESC, submitted_at, id)
	WHERE claimed = 0 AND complete = 0;
CREATE INDEX buildrequests_buildset ON buildrequests (buildset_id);
CREATE INDEX buildrequests_builder ON buildrequests (builder_id, id);
CREATE INDEX buildrequests_build ON buildrequests (build_id);

CREATE TABLE builds (
	id              INTEGER PRIMARY KEY,
	number          INTEGER NOT NULL,
	builder_id      INTEGER NOT NULL REFERENCES builders (id),
	buildrequest_id INTEGER NOT NULL REFERENCES buildrequests (id),
	worker_id       INTEGER REFERENCES workers (id),
	started_at      INTEGER,
	complete_at     INTEGER,
	complete        INTEGER NOT NULL DEFAULT 0,
	state_string    TEXT NOT NULL DEFAULT '',
	results         INTEGER,
	properties      TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [value, source]
	UNIQUE (builder_id, number)
);

-- Pages of a builder's or a worker's builds, newest first.
CREATE INDEX builds_builder ON builds (builder_id, id);
CREATE INDEX builds_worker ON builds (worker_id, id);
CREATE INDEX builds_unfinished ON builds (id) WHERE complete = 0;

CREATE TABLE steps (
	id           INTEGER PRIMARY KEY,
	build_id     INTEGER NOT NULL REFERENCES builds (id),
	number       INTEGER NOT NULL,
	name         TEXT NOT NULL,
	started_at   INTEGER,
	complete_at  INTEGER,
	complete     INTEGER NOT NULL DEFAULT 0,
	state_string TEXT NOT NULL DEFAULT '',
	results      INTEGER,
	hidden       INTEGER NOT NULL DEFAULT 0,
	urls         TEXT NOT NULL DEFAULT '[]' -- JSON list of {"name", "url"}
);

CREATE INDEX steps_build ON steps (build_id, number);

CREATE TABLE logs (
	id        INTEGER PRIMARY KEY,
	step_id   INTEGER NOT NULL REFERENCES steps (id),
	name      TEXT NOT NULL,
	slug      TEXT NOT NULL,
	type      TEXT NOT NULL,
	num_lines INTEGER NOT NULL DEFAULT 0,
	complete  INTEGER NOT NULL DEFAULT 0,
	UNIQUE (step_id, slug)
);

-- Each chunk holds lines first_line to last_line (inclusive, from 0) of its
-- log, each ending in "\n"; zlib-compressed when compressed = 1.
CREATE TABLE logchunks (
	id         INTEGER PRIMARY KEY,
	log_id     INTEGER NOT NULL REFERENCES logs (id),
	first_line INTEGER NOT NULL,
	last_line  INTEGER NOT NULL,
	content    BLOB NOT NULL,
	compressed INTEGER NOT NULL DEFAULT 0,
	UNIQUE (log_id, first_line)
);

CREATE TABLE object_state (
	object TEXT NOT NULL,
	key    TEXT NOT NULL,
	value  BLOB NOT NULL,
	PRIMARY KEY (object, key)
) WITHOUT ROWID;
