-- The queue: accepted events, one delivery per (event, destination), dedupe fingerprints.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    body        BLOB NOT NULL
);
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL REFERENCES events(id),
    destination  TEXT NOT NULL,
    route        TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    created_at   REAL NOT NULL,
    budget_start REAL NOT NULL,
    updated_at   REAL NOT NULL,
    lease_owner  TEXT,
    last_error   TEXT,
    last_status  INTEGER
);
CREATE INDEX deliveries_due ON deliveries (destination, state, available_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_settled ON deliveries (state, updated_at);
CREATE TABLE fingerprints (
    digest     BLOB PRIMARY KEY,
    event_id   TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX fingerprints_age ON fingerprints (created_at);
CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);
