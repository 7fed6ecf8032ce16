-- The pending requests in the master's order (priority, then age) are read
-- once, when the master starts: sorting the pending ones, found through
-- buildrequests_pending_id, costs that start little, and every build
-- request then changes one index fewer when it is submitted and claimed.
DROP INDEX buildrequests_pending;
