-- Grouped deliveries (digests and batches). An event of a grouped route waits as a
-- group item until its group is flushed into deliveries of at most max_events items.
ALTER TABLE relay_deliveries ADD COLUMN group_key text;
CREATE TABLE relay_group_items (
    id          text PRIMARY KEY,
    seq         bigint GENERATED ALWAYS AS IDENTITY,  -- arrival order within one instant
    event_id    text NOT NULL REFERENCES relay_events(id),
    destination text NOT NULL,
    route       text NOT NULL,
    group_key   text NOT NULL,
    created_at  double precision NOT NULL,
    delivery_id text
);
CREATE INDEX relay_group_items_open ON relay_group_items
    (destination, route, group_key, created_at, seq) WHERE delivery_id IS NULL;
CREATE INDEX relay_group_items_delivery ON relay_group_items (delivery_id);
CREATE INDEX relay_group_items_event ON relay_group_items (event_id);
CREATE TABLE relay_groups (
    destination   text NOT NULL,
    route         text NOT NULL,
    group_key     text NOT NULL,
    flush_at      double precision,
    last_flush_at double precision,
    PRIMARY KEY (destination, route, group_key)
);
CREATE INDEX relay_groups_due ON relay_groups (destination, flush_at)
    WHERE flush_at IS NOT NULL;
