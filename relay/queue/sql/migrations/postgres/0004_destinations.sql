-- Destinations that fail for hours: their state, shared by every instance, and order per key.
--
-- A destination has a row once it was paused or its circuit moved. held_since marks
-- since when no attempt is made (paused or open): on resume or close, the pending
-- deliveries' budgets move forward by that long, so a hold spends no max_age.
CREATE TABLE relay_destinations (
    name           text PRIMARY KEY,
    paused         boolean NOT NULL DEFAULT false,
    paused_reason  text,
    paused_at      double precision,
    circuit        text NOT NULL DEFAULT 'closed',
    circuit_reason text,
    opened_at      double precision,
    reopen_at      double precision,
    cooldown       double precision,
    closed_at      double precision,
    probe_owner    text,
    probe_until    double precision,
    held_since     double precision,
    dead_notice_at double precision,
    updated_at     double precision NOT NULL
);
-- order_by: a delivery waits while an earlier one (smaller seq) of its key is pending.
-- seq is acceptance order (rows already stored are numbered in table order).
ALTER TABLE relay_deliveries ADD COLUMN order_key text;
ALTER TABLE relay_deliveries ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX relay_deliveries_order ON relay_deliveries (destination, order_key, seq)
    WHERE order_key IS NOT NULL AND state = 'pending';
-- Whether an attempt counts against its destination's health (the circuit breaker).
ALTER TABLE relay_attempts ADD COLUMN failed boolean NOT NULL DEFAULT false;
