-- Every attempt on record, events searchable by field, instances known by a heartbeat.
--
-- The searchable fields are copied out of the body at enqueue so `relay events list`
-- filters on indexes, not on JSON. hwid is stored lower-cased (`relay forget` and
-- `--hwid` match case-insensitively); campaign_id as decimal text, because a uint64
-- does not fit a signed integer column. Rows stored before this migration are filled in
-- by the core's backfill (Python, the same code that fills new rows).
ALTER TABLE events ADD COLUMN event_name TEXT;
ALTER TABLE events ADD COLUMN hwid TEXT;
ALTER TABLE events ADD COLUMN user_id TEXT;
ALTER TABLE events ADD COLUMN campaign_id TEXT;
CREATE INDEX events_received ON events (received_at);
CREATE INDEX events_name ON events (event_name, id);
CREATE INDEX events_hwid ON events (hwid, id) WHERE hwid IS NOT NULL;
CREATE INDEX events_user ON events (user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX events_campaign ON events (campaign_id, id) WHERE campaign_id IS NOT NULL;
-- `relay events list --state`: the events whose deliveries are in a state.
CREATE INDEX deliveries_state_event ON deliveries (state, event_id);

-- One row per attempt, written in the same transaction that settles it. The request is
-- reproducible from the event and the destination, so only its summary is kept.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    n           INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    duration_ms REAL NOT NULL,
    outcome     TEXT NOT NULL,
    status_code INTEGER,
    error       TEXT,
    response    TEXT,
    method      TEXT,
    url         TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, n);
CREATE INDEX attempts_destination ON attempts (destination, started_at);
-- Activity over time (the console's charts, pruning by age).
CREATE INDEX attempts_started ON attempts (started_at);

-- Lease owners are random ids with a heartbeat here: an owner is dead when its
-- heartbeat is stale, never because a process table on some host lacks its pid.
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    version    TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at    REAL NOT NULL
);
DROP TABLE heartbeat;
