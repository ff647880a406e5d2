-- Less index work per accepted event and per lease (SQLite's 0006 does the same, and
-- also splits its depth triggers; PostgreSQL counts depth through 0005's partial
-- indexes and has none).
--
-- relay_deliveries_settled serves pruning and dead-letter listings, which only look at
-- settled rows; pending rows were in it too, so every accepted delivery and every lease
-- (which stamps updated_at) rewrote an entry nothing reads. PostgreSQL's planner proves
-- that `state = 'dead'` or `state = 'succeeded'` implies `state <> 'pending'`, so the
-- statements need no change to use it.
DROP INDEX relay_deliveries_settled;
CREATE INDEX relay_deliveries_settled ON relay_deliveries (state, updated_at)
    WHERE state <> 'pending';
