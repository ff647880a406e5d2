-- Less index and trigger work per accepted event, lease and settle, and no full walk of
-- the pending deliveries per heartbeat.
--
-- 1. The depth triggers of 0005, one trigger per change, each guarded by its own WHEN.
-- 0005's triggers ran every statement of their body for every row, most of them to
-- find nothing to change: an accepted delivery (pending, no error) also ran the
-- 'retrying' upsert, and a lease or a success ran three statements that matched no
-- row. A trigger whose WHEN is false costs almost nothing, so each row now runs only
-- the one or two statements that change a count. The counts are the same as 0005's.
DROP TRIGGER depth_insert;
DROP TRIGGER depth_update;
DROP TRIGGER depth_delete;

CREATE TRIGGER depth_insert AFTER INSERT ON deliveries
 WHEN NEW.state IN ('pending', 'dead')
BEGIN
    INSERT INTO depth (destination, state, n) VALUES (NEW.destination, NEW.state, 1)
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER depth_insert_retrying AFTER INSERT ON deliveries
 WHEN NEW.state = 'pending' AND NEW.last_error IS NOT NULL
BEGIN
    INSERT INTO depth (destination, state, n) VALUES (NEW.destination, 'retrying', 1)
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;

-- A state left: its count goes down.
CREATE TRIGGER depth_leave AFTER UPDATE OF state ON deliveries
 WHEN OLD.state IS NOT NEW.state AND OLD.state IN ('pending', 'dead')
BEGIN
    UPDATE depth SET n = n - 1 WHERE destination = OLD.destination AND state = OLD.state;
END;

-- A state entered: its count goes up.
CREATE TRIGGER depth_enter AFTER UPDATE OF state ON deliveries
 WHEN OLD.state IS NOT NEW.state AND NEW.state IN ('pending', 'dead')
BEGIN
    INSERT INTO depth (destination, state, n) VALUES (NEW.destination, NEW.state, 1)
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;

-- Retrying = pending with an error: counted when a row becomes that, uncounted when
-- it stops being that (by a state change, a cleared error, or both).
CREATE TRIGGER depth_retrying_leave AFTER UPDATE OF state, last_error ON deliveries
 WHEN OLD.state = 'pending' AND OLD.last_error IS NOT NULL
  AND NOT (NEW.state IS 'pending' AND NEW.last_error IS NOT NULL)
BEGIN
    UPDATE depth SET n = n - 1 WHERE destination = OLD.destination AND state = 'retrying';
END;

CREATE TRIGGER depth_retrying_enter AFTER UPDATE OF state, last_error ON deliveries
 WHEN NEW.state = 'pending' AND NEW.last_error IS NOT NULL
  AND NOT (OLD.state IS 'pending' AND OLD.last_error IS NOT NULL)
BEGIN
    INSERT INTO depth (destination, state, n) VALUES (NEW.destination, 'retrying', 1)
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER depth_delete AFTER DELETE ON deliveries
 WHEN OLD.state IN ('pending', 'dead')
BEGIN
    UPDATE depth SET n = n - 1 WHERE destination = OLD.destination AND state = OLD.state;
END;

CREATE TRIGGER depth_delete_retrying AFTER DELETE ON deliveries
 WHEN OLD.state = 'pending' AND OLD.last_error IS NOT NULL
BEGIN
    UPDATE depth SET n = n - 1 WHERE destination = OLD.destination AND state = 'retrying';
END;

-- 2. deliveries_settled serves pruning and dead-letter listings, which only ever look at
-- settled rows; pending rows were in it too, so every accepted delivery and every lease
-- (which stamps updated_at) rewrote an entry nothing reads. The statements that use it
-- say `state <> 'pending'`, which lets SQLite choose it.
DROP INDEX deliveries_settled;
CREATE INDEX deliveries_settled ON deliveries (state, updated_at) WHERE state <> 'pending';

-- 3. Taking back a dead instance's leases (every heartbeat, in the writer's transaction)
-- walked every pending delivery to find the leased ones: 0.2 s with a million pending,
-- which every request waiting on the writer paid. Leased rows are few (settling clears
-- lease_owner), so an index of them makes that a short walk.
CREATE INDEX deliveries_leased ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;
