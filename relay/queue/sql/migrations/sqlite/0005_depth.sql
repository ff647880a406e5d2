-- Queue depth without counting rows. The console, /metrics and notices ask for it
-- often, and counting a million pending rows, even through an index, took 60-100 ms
-- (through the table, most of a second). SQLite has one writer at a time, so a small
-- table of counts kept by triggers costs each write one upsert and never contends.
-- (PostgreSQL counts through partial indexes instead: there, a shared counter row would
-- serialise every instance's transactions.)
--
-- state: 'pending' (every unsettled delivery), 'retrying' (the pending ones that failed
-- at least once) and 'dead'.
CREATE TABLE depth (
    destination TEXT NOT NULL,
    state       TEXT NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (destination, state)
) WITHOUT ROWID;

INSERT INTO depth (destination, state, n)
SELECT destination, state, COUNT(*) FROM deliveries
 WHERE state IN ('pending', 'dead') GROUP BY destination, state;
INSERT INTO depth (destination, state, n)
SELECT destination, 'retrying', COUNT(*) FROM deliveries
 WHERE state = 'pending' AND last_error IS NOT NULL GROUP BY destination;

CREATE TRIGGER depth_insert AFTER INSERT ON deliveries
 WHEN NEW.state IN ('pending', 'dead')
BEGIN
    INSERT INTO depth (destination, state, n) VALUES (NEW.destination, NEW.state, 1)
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
    INSERT INTO depth (destination, state, n)
    SELECT NEW.destination, 'retrying', 1
     WHERE NEW.state = 'pending' AND NEW.last_error IS NOT NULL
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER depth_update AFTER UPDATE OF state, last_error ON deliveries
 WHEN OLD.state IS NOT NEW.state
   OR (OLD.last_error IS NULL) IS NOT (NEW.last_error IS NULL)
BEGIN
    UPDATE depth SET n = n - 1
     WHERE destination = OLD.destination
       AND ((state = OLD.state AND OLD.state IN ('pending', 'dead'))
            OR (state = 'retrying' AND OLD.state = 'pending'
                AND OLD.last_error IS NOT NULL));
    INSERT INTO depth (destination, state, n)
    SELECT NEW.destination, NEW.state, 1 WHERE NEW.state IN ('pending', 'dead')
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
    INSERT INTO depth (destination, state, n)
    SELECT NEW.destination, 'retrying', 1
     WHERE NEW.state = 'pending' AND NEW.last_error IS NOT NULL
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER depth_delete AFTER DELETE ON deliveries
 WHEN OLD.state IN ('pending', 'dead')
BEGIN
    UPDATE depth SET n = n - 1
     WHERE destination = OLD.destination
       AND (state = OLD.state
            OR (state = 'retrying' AND OLD.state = 'pending'
                AND OLD.last_error IS NOT NULL));
END;

-- The oldest pending delivery of a destination: the first entry of its range.
CREATE INDEX deliveries_pending ON deliveries (destination, created_at)
    WHERE state = 'pending';
