-- A builder's pending requests (the builder page), counted and listed
-- without reading its finished ones.
CREATE INDEX buildrequests_builder_pending ON buildrequests (builder_id, id)
	WHERE claimed = 0 AND complete = 0;

-- All pending requests in ID order (the home page and the API's
-- claimed=false&complete=false), without a scan of the finished ones.
CREATE INDEX buildrequests_pending_id ON buildrequests (id) WHERE claimed = 0 AND complete = 0;
