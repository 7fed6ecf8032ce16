-- Indexes for the web UI's queries. The builds made for a change (the
-- grid's rows) are found from the change through its source stamps, their
-- buildsets and requests; the incomplete buildsets are listed often.

CREATE INDEX sourcestamp_changes_change ON sourcestamp_changes (change_id);
CREATE INDEX buildset_sourcestamps_sourcestamp ON buildset_sourcestamps (sourcestamp_id);
CREATE INDEX builds_request ON builds (buildrequest_id);
CREATE INDEX buildsets_incomplete ON buildsets (id) WHERE complete = 0;
