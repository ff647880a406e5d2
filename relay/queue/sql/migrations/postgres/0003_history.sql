-- Every attempt on record, events searchable by field, instances known by a heartbeat.
--
-- The searchable fields are copied out of the body at enqueue so `relay events list`
-- filters on indexes, not on JSON. hwid is stored lower-cased (`relay forget` and
-- `--hwid` match case-insensitively); campaign_id as decimal text, because a uint64
-- does not fit a bigint. Rows stored before this migration are filled in by the core's
-- backfill (Python, the same code that fills new rows).
ALTER TABLE relay_events ADD COLUMN event_name text;
ALTER TABLE relay_events ADD COLUMN hwid text;
ALTER TABLE relay_events ADD COLUMN user_id text;
ALTER TABLE relay_events ADD COLUMN campaign_id text;
CREATE INDEX relay_events_name ON relay_events (event_name, id);
CREATE INDEX relay_events_hwid ON relay_events (hwid, id) WHERE hwid IS NOT NULL;
CREATE INDEX relay_events_user ON relay_events (user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX relay_events_campaign ON relay_events (campaign_id, id)
    WHERE campaign_id IS NOT NULL;
-- `relay events list --state`: the events whose deliveries are in a state.
CREATE INDEX relay_deliveries_state_event ON relay_deliveries (state, event_id);

-- One row per attempt, written in the same transaction that settles it. The request is
-- reproducible from the event and the destination, so only its summary is kept.
CREATE TABLE relay_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id text NOT NULL,
    destination text NOT NULL,
    n           integer NOT NULL,
    started_at  double precision NOT NULL,
    duration_ms double precision NOT NULL,
    outcome     text NOT NULL,
    status_code integer,
    error       text,
    response    text,
    method      text,
    url         text
);
CREATE INDEX relay_attempts_delivery ON relay_attempts (delivery_id, n);
CREATE INDEX relay_attempts_destination ON relay_attempts (destination, started_at);
-- Activity over time (the console's charts, pruning by age).
CREATE INDEX relay_attempts_started ON relay_attempts (started_at);

-- Lease owners are random ids with a heartbeat here: an owner is dead when its
-- heartbeat is stale, never because a process table on some host lacks its pid.
CREATE TABLE relay_instances (
    id         text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    version    text NOT NULL,
    started_at double precision NOT NULL,
    seen_at    double precision NOT NULL
);
DROP TABLE relay_heartbeat;
