-- Test results steps record (Buildbot's test_result_sets and test_results).
-- A set belongs to a step of a build; its results are deleted with it.
-- Names and code paths are kept in the results themselves; the indexes
-- list a builder's distinct names and paths.

CREATE TABLE test_result_sets (
	id           INTEGER PRIMARY KEY,
	builder_id   INTEGER NOT NULL REFERENCES builders (id),
	build_id     INTEGER NOT NULL REFERENCES builds (id),
	step_id      INTEGER NOT NULL REFERENCES steps (id),
	description  TEXT NOT NULL DEFAULT '',
	category     TEXT NOT NULL,
	value_unit   TEXT NOT NULL,
	tests_passed INTEGER,
	tests_failed INTEGER,
	complete     INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX test_result_sets_builder ON test_result_sets (builder_id, id);
CREATE INDEX test_result_sets_build ON test_result_sets (build_id, id);
CREATE INDEX test_result_sets_step ON test_result_sets (step_id, id);

CREATE TABLE test_results (
	id                 INTEGER PRIMARY KEY,
	test_result_set_id INTEGER NOT NULL REFERENCES test_result_sets (id),
	builder_id         INTEGER NOT NULL REFERENCES builders (id),
	test_name          TEXT,
	test_code_path     TEXT,
	line               INTEGER,
	duration_ns        INTEGER,
	value              TEXT NOT NULL
);

CREATE INDEX test_results_set ON test_results (test_result_set_id, id);
CREATE INDEX test_results_names ON test_results (builder_id, test_name) WHERE test_name IS NOT NULL;
CREATE INDEX test_results_code_paths ON test_results (builder_id, test_code_path) WHERE test_code_path IS NOT NULL;
