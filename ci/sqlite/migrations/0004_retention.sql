-- Retention: a running total of the space log lines take, builds whose
-- logs the janitor deleted, and the indexes its queries use.
CREATE TABLE store_stats (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO store_stats (key, value)
	SELECT 'log_bytes', COALESCE(SUM(LENGTH(content)), 0) FROM logchunks;

ALTER TABLE builds ADD COLUMN logs_deleted INTEGER NOT NULL DEFAULT 0;

-- Finished builds whose logs are kept, oldest first.
CREATE INDEX builds_logs_kept ON builds (complete_at, id) WHERE complete = 1 AND logs_deleted = 0;
-- Finished builds by age.
CREATE INDEX builds_completed ON builds (complete_at, id) WHERE complete = 1;
