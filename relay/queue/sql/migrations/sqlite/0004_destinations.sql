-- Destinations that fail for hours: their state, shared by every instance, and order per key.
--
-- A destination has a row once it was paused or its circuit moved. held_since marks
-- since when no attempt is made (paused or open): on resume or close, the pending
-- deliveries' budgets move forward by that long, so a hold spends no max_age.
CREATE TABLE destinations (
    name           TEXT PRIMARY KEY,
    paused         INTEGER NOT NULL DEFAULT 0,
    paused_reason  TEXT,
    paused_at      REAL,
    circuit        TEXT NOT NULL DEFAULT 'closed',
    circuit_reason TEXT,
    opened_at      REAL,
    reopen_at      REAL,
    cooldown       REAL,
    closed_at      REAL,
    probe_owner    TEXT,
    probe_until    REAL,
    held_since     REAL,
    dead_notice_at REAL,
    updated_at     REAL NOT NULL
);
-- order_by: a delivery waits while an earlier one (smaller rowid) of its key is pending.
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
CREATE INDEX deliveries_order ON deliveries (destination, order_key)
    WHERE order_key IS NOT NULL AND state = 'pending';
-- Whether an attempt counts against its destination's health (the circuit breaker).
ALTER TABLE attempts ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
