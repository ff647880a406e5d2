-- Grouped deliveries (digests and batches). An event of a grouped route waits as a
-- group item until its group is flushed into deliveries of at most max_events items.
ALTER TABLE deliveries ADD COLUMN group_key TEXT;
CREATE TABLE group_items (
    id          TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL REFERENCES events(id),
    destination TEXT NOT NULL,
    route       TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    created_at  REAL NOT NULL,
    delivery_id TEXT
);
CREATE INDEX group_items_open ON group_items (destination, route, group_key, delivery_id);
CREATE INDEX group_items_delivery ON group_items (delivery_id);
CREATE INDEX group_items_event ON group_items (event_id);
CREATE TABLE groups (
    destination   TEXT NOT NULL,
    route         TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    flush_at      REAL,
    last_flush_at REAL,
    PRIMARY KEY (destination, route, group_key)
);
CREATE INDEX groups_due ON groups (destination, flush_at);
