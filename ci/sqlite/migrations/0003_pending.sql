-- A builder's pending requests (the builder page), counted and listed
-- without reading its finished ones.
CREATE INDEX buildrequests_builder_pending ON buildrequests (builder_id, id)
	WHERE claimed = 0 AND complete = 0;
