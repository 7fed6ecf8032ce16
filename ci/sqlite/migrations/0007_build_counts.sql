-- The number of builds of each builder, kept by triggers, so that a
-- builder's page counts its builds without reading its index whole.
CREATE TABLE builder_build_counts (
	builder_id INTEGER PRIMARY KEY,
	builds     INTEGER NOT NULL
);
INSERT INTO builder_build_counts (builder_id, builds)
	SELECT builder_id, COUNT(*) FROM builds GROUP BY builder_id;

CREATE TRIGGER builds_counted AFTER INSERT ON builds BEGIN
	INSERT INTO builder_build_counts (builder_id, builds) VALUES (NEW.builder_id, 1)
		ON CONFLICT (builder_id) DO UPDATE SET builds = builds + 1;
END;
CREATE TRIGGER builds_uncounted AFTER DELETE ON builds BEGIN
	UPDATE builder_build_counts SET builds = builds - 1 WHERE builder_id = OLD.builder_id;
END;
CREATE TRIGGER builds_recounted AFTER UPDATE OF builder_id ON builds BEGIN
	UPDATE builder_build_counts SET builds = builds - 1 WHERE builder_id = OLD.builder_id;
	INSERT INTO builder_build_counts (builder_id, builds) VALUES (NEW.builder_id, 1)
		ON CONFLICT (builder_id) DO UPDATE SET builds = builds + 1;
END;
