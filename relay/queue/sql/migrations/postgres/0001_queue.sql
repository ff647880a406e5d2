-- The queue: accepted events, one delivery per (event, destination), dedupe fingerprints.
-- The logical tables are SQLite's, prefixed relay_ so they can share a schema with others.
CREATE TABLE relay_events (
    id          text PRIMARY KEY,
    received_at double precision NOT NULL,
    body        bytea NOT NULL
);
CREATE TABLE relay_deliveries (
    id           text PRIMARY KEY,
    event_id     text NOT NULL REFERENCES relay_events(id),
    destination  text NOT NULL,
    route        text NOT NULL,
    state        text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    available_at double precision NOT NULL,
    created_at   double precision NOT NULL,
    budget_start double precision NOT NULL,
    updated_at   double precision NOT NULL,
    lease_owner  text,
    last_error   text,
    last_status  integer
);
-- The lease and next_due queries: (destination, state = 'pending', available_at).
-- Partial, so settled rows (the bulk of the table) cost this index nothing.
CREATE INDEX relay_deliveries_due ON relay_deliveries (destination, available_at)
    WHERE state = 'pending';
CREATE INDEX relay_deliveries_event ON relay_deliveries (event_id);
-- Pruning succeeded rows, listing dead letters oldest first.
CREATE INDEX relay_deliveries_settled ON relay_deliveries (state, updated_at);
CREATE INDEX relay_events_received ON relay_events (received_at);
CREATE TABLE relay_fingerprints (
    digest     bytea PRIMARY KEY,
    event_id   text NOT NULL,
    created_at double precision NOT NULL
);
CREATE INDEX relay_fingerprints_age ON relay_fingerprints (created_at);
CREATE TABLE relay_heartbeat (
    id integer PRIMARY KEY CHECK (id = 1),
    at double precision NOT NULL
);
