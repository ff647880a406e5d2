-- The SQLite dialect of the queue's statements (the embedded default).
--
-- Every statement is a named block; relay/queue/sql/postgres.sql holds the same names
-- (a test compares the sets), and relay/queue/core.py is the only code that uses them.
-- Parameters are named (:name). A list parameter arrives as JSON text and is read with
-- json_each(); the PostgreSQL dialect reads the same lists as arrays. A statement with
-- {where} takes fragments named where_*, joined with AND by the core.

-- name: insert_event
INSERT INTO events (id, received_at, body, event_name, hwid, user_id, campaign_id)
VALUES (:id, :now, :body, :event_name, :hwid, :user_id, :campaign_id);

-- name: insert_delivery
INSERT INTO deliveries (id, event_id, destination, route, available_at, created_at,
                        budget_start, updated_at, group_key, order_key)
VALUES (:id, :event_id, :destination, :route, :now, :now, :now, :now, :group_key, :order_key);

-- name: insert_group_item
INSERT INTO group_items (id, event_id, destination, route, group_key, created_at)
VALUES (:id, :event_id, :destination, :route, :group_key, :now);

-- name: open_group
-- A new group goes out `wait` after its first event; a group that went out within the
-- last `interval` goes out again no sooner than `interval` after that.
INSERT INTO groups (destination, route, group_key, flush_at, last_flush_at)
VALUES (:destination, :route, :group_key, :now + :wait, NULL)
ON CONFLICT (destination, route, group_key) DO UPDATE
   SET flush_at = COALESCE(groups.flush_at,
                           MAX(:now + :wait, COALESCE(groups.last_flush_at + :interval, 0)));

-- name: claim_fingerprint
-- A new digest, or one older than the window, becomes ours and comes back; a fresh one
-- stays and does not come back: the body is a duplicate.
INSERT INTO fingerprints (digest, event_id, created_at) VALUES (:digest, :event_id, :now)
ON CONFLICT (digest) DO UPDATE SET event_id = excluded.event_id, created_at = excluded.created_at
 WHERE fingerprints.created_at < :since
RETURNING digest;

-- name: find_fingerprint
SELECT digest, event_id FROM fingerprints WHERE digest = :digest;

-- name: lease
-- Taking a lease pushes available_at past the lease: a crashed holder's rows come back by
-- themselves. The attempt is counted when taken, so a crash mid-send still uses budget.
-- The event's body comes back with the row: one statement gives all a send needs.
-- A delivery with an order key waits while an earlier one of its key (smaller rowid:
-- accepted before) is pending, leased or not: one at a time per key, in order.
-- A held destination (paused, or its circuit open, or half-open and probed by another
-- instance) gives nothing, whatever an instance's cached view says.
UPDATE deliveries
   SET available_at = :until, attempts = attempts + 1, lease_owner = :owner, updated_at = :now
 WHERE id IN (SELECT c.id FROM deliveries c
               WHERE c.destination = :destination AND c.state = 'pending'
                 AND c.available_at <= :now
                 AND (c.order_key IS NULL
                      OR NOT EXISTS (SELECT 1 FROM deliveries p
                                      WHERE p.destination = c.destination
                                        AND p.order_key = c.order_key
                                        AND p.state = 'pending' AND p.rowid < c.rowid))
                 AND NOT EXISTS (SELECT 1 FROM destinations h
                                  WHERE h.name = :destination
                                    AND (h.paused = 1
                                         OR (h.circuit <> 'closed'
                                             AND NOT (h.circuit = 'half-open'
                                                      AND h.probe_owner = :owner))))
               ORDER BY c.available_at LIMIT :limit)
RETURNING id, event_id, destination, route, attempts, budget_start, group_key,
          (SELECT body FROM events WHERE events.id = deliveries.event_id);

-- name: group_bodies
-- Every event of grouped deliveries, oldest first.
SELECT g.delivery_id, e.body
  FROM group_items g JOIN events e ON e.id = g.event_id
 WHERE g.delivery_id IN (SELECT value FROM json_each(:ids))
 ORDER BY g.created_at, g.rowid;

-- name: settle
-- Parameters come through a table of values, so the writer settles a whole batch in one
-- step (relay/queue/multirow.py); for one row it is the plain update.
WITH v(id, state, available_at, error, status_code, now, owner) AS (
    VALUES (:id, :state, :available_at, :error, :status_code, :now, :owner))
UPDATE deliveries
   SET state = v.state, available_at = v.available_at, last_error = v.error,
       last_status = v.status_code, lease_owner = NULL, updated_at = v.now
  FROM v
 WHERE deliveries.id = v.id AND deliveries.state = 'pending'
   AND deliveries.lease_owner = v.owner;

-- name: insert_attempt
-- Recorded even when the lease was lost meanwhile (the attempt did happen), but never for
-- a delivery that no longer exists (`relay forget` may have erased it mid-attempt).
-- A table of values, as in settle: one step for a batch.
WITH v(id, destination, n, started_at, duration_ms, outcome, status_code, error, response,
       method, url, failed) AS (
    VALUES (:id, :destination, :n, :started_at, :duration_ms, :outcome, :status_code, :error,
            :response, :method, :url, :failed))
INSERT INTO attempts (delivery_id, destination, n, started_at, duration_ms, outcome,
                      status_code, error, response, method, url, failed)
SELECT v.id, v.destination, v.n, v.started_at, v.duration_ms, v.outcome, v.status_code,
       v.error, v.response, v.method, v.url, v.failed
  FROM v
 WHERE EXISTS (SELECT 1 FROM deliveries WHERE deliveries.id = v.id);

-- name: dead_letters
SELECT d.id, d.destination, d.event_id, e.event_name, d.attempts, d.last_error,
       d.last_status, d.updated_at, d.route
  FROM deliveries d JOIN events e ON e.id = d.event_id
 WHERE d.state = 'dead' AND d.state <> 'pending'  -- on deliveries_settled, in order
   AND (:destination IS NULL OR d.destination = :destination)
 ORDER BY d.updated_at LIMIT :limit;

-- name: replay_dead
-- Dead deliveries back to pending with a fresh attempt budget (same id: same
-- Idempotency-Key, since the destination never accepted it).
UPDATE deliveries
   SET state = 'pending', attempts = 0, available_at = :now, budget_start = :now,
       lease_owner = NULL, last_error = NULL, last_status = NULL, updated_at = :now
 WHERE state = 'dead'
   AND (:destination IS NULL OR destination = :destination)
   AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
RETURNING destination;

-- name: due_groups
SELECT route, group_key FROM groups
 WHERE destination = :destination AND flush_at IS NOT NULL AND flush_at <= :now
 ORDER BY flush_at LIMIT 100;

-- name: group_open_items
SELECT id, event_id FROM group_items
 WHERE destination = :destination AND route = :route AND group_key = :group_key
   AND delivery_id IS NULL
 ORDER BY created_at, rowid;

-- name: assign_items
UPDATE group_items SET delivery_id = :delivery_id
 WHERE id IN (SELECT value FROM json_each(:ids));

-- name: close_group
UPDATE groups SET flush_at = NULL, last_flush_at = :now
 WHERE destination = :destination AND route = :route AND group_key = :group_key;

-- name: next_due
-- The earlier of the next pending delivery and the next group flush (MIN skips NULLs).
SELECT MIN(due) FROM (
    SELECT MIN(available_at) AS due FROM deliveries
     WHERE destination = :destination AND state = 'pending'
    UNION ALL
    SELECT MIN(flush_at) FROM groups WHERE destination = :destination AND flush_at IS NOT NULL);

-- name: depth
-- Open deliveries per destination and state, from the counts the triggers keep.
SELECT destination, state, n FROM depth WHERE state IN ('pending', 'dead') AND n > 0;

-- name: oldest_pending
-- When the oldest pending delivery of :destination was accepted: the first entry of its
-- range in deliveries_pending (SQLite uses a partial index only when the query repeats
-- its condition; INDEXED BY, because without statistics the planner may not).
SELECT MIN(created_at) FROM deliveries INDEXED BY deliveries_pending
 WHERE destination = :destination AND state = 'pending';

-- name: depth_retrying
-- Pending deliveries that failed at least once (a part of pending).
SELECT destination, n FROM depth WHERE state = 'retrying' AND n > 0;

-- name: group_flush_times
-- When each destination's earliest group is due (the flusher sleeps until then).
SELECT destination, MIN(flush_at) FROM groups WHERE flush_at IS NOT NULL GROUP BY destination;

-- name: open_groups
SELECT destination, COUNT(*) FROM groups WHERE flush_at IS NOT NULL GROUP BY destination;

-- name: heartbeat
-- An instance says it is alive; also the write `/readyz` probes with.
INSERT INTO instances (id, host, pid, version, started_at, seen_at)
VALUES (:id, :host, :pid, :version, :now, :now)
ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at;

-- name: forget_instance
DELETE FROM instances WHERE id = :id;

-- name: release_orphans
-- Leases whose owner's heartbeat went stale come back now, not when the lease runs out.
-- On deliveries_leased (only leased rows): `+state` keeps the planner off the index of
-- every pending row, which it would otherwise pick.
UPDATE deliveries SET available_at = :now, lease_owner = NULL
 WHERE +state = 'pending' AND lease_owner IS NOT NULL AND available_at > :now
   AND lease_owner NOT IN (SELECT id FROM instances WHERE seen_at >= :alive_since);

-- name: release_unsent
-- Leased ahead of a free slot and never sent (the destination was held, or the relay is
-- stopping): back to due now, and the attempt the lease counted is taken back.
UPDATE deliveries SET available_at = :now, lease_owner = NULL, attempts = attempts - 1
 WHERE state = 'pending' AND lease_owner = :owner AND destination = :destination
   AND id IN (SELECT value FROM json_each(:ids));
-- name: release_own
UPDATE deliveries SET available_at = :now, lease_owner = NULL
 WHERE state = 'pending' AND lease_owner = :owner;

-- name: release_stray
-- Leases of ours that no attempt of ours is using: a lease whose transaction we gave up
-- on (the database went silent) may still have committed once it came back.
UPDATE deliveries SET available_at = :now, lease_owner = NULL
 WHERE state = 'pending' AND lease_owner = :owner AND destination = :destination
   AND id NOT IN (SELECT value FROM json_each(:keep));

-- name: prune_instances
DELETE FROM instances WHERE seen_at < :before;

-- name: old_deliveries
-- Settled deliveries past their retention: succeeded after `retention`, dead after
-- `dead_retention`.
-- (`state <> 'pending'` repeated in each branch: how SQLite sees that the partial index
-- deliveries_settled covers them.)
SELECT id, event_id FROM deliveries
 WHERE (state = 'succeeded' AND state <> 'pending' AND updated_at < :succeeded_before)
    OR (state = 'dead' AND state <> 'pending' AND updated_at < :dead_before)
 LIMIT :limit;

-- name: delete_attempts_of
DELETE FROM attempts WHERE delivery_id = :id;

-- name: item_events_of
SELECT DISTINCT event_id FROM group_items WHERE delivery_id IN (SELECT value FROM json_each(:ids));

-- name: delete_items_of
DELETE FROM group_items WHERE delivery_id = :id;

-- name: delete_delivery
DELETE FROM deliveries WHERE id = :id;

-- name: delete_event_if_done
-- An event goes once nothing refers to it any more.
DELETE FROM events
 WHERE id = :id
   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)
   AND NOT EXISTS (SELECT 1 FROM group_items g WHERE g.event_id = events.id);

-- name: old_orphan_events
-- Events that never made a delivery (no route matched) or whose deliveries are gone.
SELECT e.id FROM events e
 WHERE e.received_at < :before
   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
   AND NOT EXISTS (SELECT 1 FROM group_items g WHERE g.event_id = e.id)
 LIMIT :limit;

-- name: prune_fingerprints
DELETE FROM fingerprints WHERE rowid IN (
    SELECT rowid FROM fingerprints WHERE created_at < :before LIMIT :limit);

-- name: events_page
-- Stored events, newest first (ids are time-ordered), filtered by where_* fragments.
SELECT e.id, e.received_at, e.body FROM events e
 WHERE {where}
 ORDER BY e.id DESC LIMIT :limit;

-- name: where_event_name
e.event_name = :event_name

-- name: where_hwid
e.hwid = :hwid

-- name: where_user_id
e.user_id = :user_id

-- name: where_campaign_id
e.campaign_id = :campaign_id

-- name: where_before
e.id < :before

-- name: where_since
e.id >= :since

-- name: where_until
e.id < :until

-- name: where_delivery
-- A delivery of the event to :destination (NULL: any) in :state (NULL: any). A grouped
-- event's delivery is its group item's: pending until the group goes out.
(EXISTS (SELECT 1 FROM deliveries d
          WHERE d.event_id = e.id AND d.group_key IS NULL
            AND (:destination IS NULL OR d.destination = :destination)
            AND (:state IS NULL OR :state = CASE WHEN d.state = 'pending'
                                                  AND d.last_error IS NOT NULL
                                                 THEN 'retrying' ELSE d.state END))
 OR EXISTS (SELECT 1 FROM group_items g LEFT JOIN deliveries d ON d.id = g.delivery_id
             WHERE g.event_id = e.id
               AND (:destination IS NULL OR g.destination = :destination)
               AND (:state IS NULL OR :state = CASE WHEN d.id IS NULL THEN 'pending'
                                                     WHEN d.state = 'pending'
                                                      AND d.last_error IS NOT NULL
                                                     THEN 'retrying' ELSE d.state END)))

-- name: event
SELECT id, received_at, body FROM events WHERE id = :id;

-- name: event_deliveries
-- Per (event, destination): the plain delivery, or the group item and the grouped
-- delivery it went out in (NULL columns while the group waits).
SELECT d.event_id, d.id, d.destination, d.route,
       CASE WHEN d.state = 'pending' AND d.last_error IS NOT NULL THEN 'retrying'
            ELSE d.state END,
       d.attempts, d.last_error, d.last_status, d.updated_at, d.group_key, d.id
  FROM deliveries d
 WHERE d.event_id IN (SELECT value FROM json_each(:ids)) AND d.group_key IS NULL
UNION ALL
SELECT g.event_id, COALESCE(d.id, g.id), g.destination, g.route,
       CASE WHEN d.id IS NULL THEN 'pending'
            WHEN d.state = 'pending' AND d.last_error IS NOT NULL THEN 'retrying'
            ELSE d.state END,
       COALESCE(d.attempts, 0), d.last_error, d.last_status, COALESCE(d.updated_at, g.created_at),
       g.group_key, d.id
  FROM group_items g LEFT JOIN deliveries d ON d.id = g.delivery_id
 WHERE g.event_id IN (SELECT value FROM json_each(:ids));

-- name: attempts_of
SELECT delivery_id, n, started_at, duration_ms, outcome, status_code, error, response,
       method, url
  FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(:ids))
 ORDER BY delivery_id, n, id;

-- name: delivery_for_replay
-- What a resend of one event to one destination needs: the route and group of its delivery.
SELECT d.id, d.destination, d.route, d.group_key, d.order_key FROM deliveries d
 WHERE d.event_id = :event_id AND d.group_key IS NULL
UNION ALL
SELECT g.id, g.destination, g.route, g.group_key, NULL FROM group_items g
 WHERE g.event_id = :event_id;

-- name: insert_replay_item
-- A grouped event's resend is a group of one, delivered at once.
INSERT INTO group_items (id, event_id, destination, route, group_key, created_at, delivery_id)
VALUES (:id, :event_id, :destination, :route, :group_key, :now, :delivery_id);

-- name: events_of_address
SELECT id FROM events WHERE hwid = :hwid AND id > :after ORDER BY id LIMIT :limit;

-- name: plain_deliveries_of_events
SELECT id, state FROM deliveries
 WHERE event_id IN (SELECT value FROM json_each(:ids)) AND group_key IS NULL;

-- name: items_of_events
SELECT id, delivery_id FROM group_items WHERE event_id IN (SELECT value FROM json_each(:ids));

-- name: grouped_deliveries_of_events
-- Grouped deliveries carrying any of these events: all their items, how many are these
-- events', and their state.
SELECT g.delivery_id, COUNT(*),
       SUM(CASE WHEN g.event_id IN (SELECT value FROM json_each(:ids)) THEN 1 ELSE 0 END),
       (SELECT d.state FROM deliveries d WHERE d.id = g.delivery_id)
  FROM group_items g
 WHERE g.delivery_id IN (SELECT delivery_id FROM group_items
                          WHERE event_id IN (SELECT value FROM json_each(:ids))
                            AND delivery_id IS NOT NULL)
 GROUP BY g.delivery_id;

-- name: count_attempts_of
SELECT COUNT(*) FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(:ids));

-- name: count_fingerprints_of
SELECT COUNT(*) FROM fingerprints WHERE event_id IN (SELECT value FROM json_each(:ids));

-- name: attempt_texts_of
SELECT id, error, response FROM attempts WHERE delivery_id = :id;

-- name: set_attempt_texts
UPDATE attempts SET error = :error, response = :response WHERE id = :id;

-- name: delivery_error
SELECT last_error FROM deliveries WHERE id = :id;

-- name: set_delivery_error
UPDATE deliveries SET last_error = :error WHERE id = :id;

-- name: repoint_grouped_delivery
-- A grouped delivery that also carries other people's events stays, pointing at one of them.
UPDATE deliveries
   SET event_id = (SELECT g.event_id FROM group_items g WHERE g.delivery_id = deliveries.id
                    ORDER BY g.created_at, g.rowid LIMIT 1)
 WHERE id = :id;

-- name: delete_item
DELETE FROM group_items WHERE id = :id;

-- name: forget_fingerprints
DELETE FROM fingerprints WHERE event_id IN (SELECT value FROM json_each(:ids));

-- name: forget_events
DELETE FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: forget_groups
-- Group keys are event fields: a group keyed by this address goes once it holds nothing.
DELETE FROM groups
 WHERE instr(relay_lower(group_key), :needle) > 0
   AND NOT EXISTS (SELECT 1 FROM group_items g
                    WHERE g.destination = groups.destination AND g.route = groups.route
                      AND g.group_key = groups.group_key AND g.delivery_id IS NULL);

-- name: prune_groups
-- Idle groups (nothing waiting, last sent before :before) are forgotten; a new event
-- opens them again.
DELETE FROM groups WHERE rowid IN (
    SELECT rowid FROM groups
     WHERE flush_at IS NULL AND (last_flush_at IS NULL OR last_flush_at < :before)
     LIMIT :limit);

-- name: events_to_backfill
-- Events stored before their searchable fields existed (migration 3).
SELECT id, body FROM events WHERE id > :after AND event_name IS NULL ORDER BY id LIMIT :limit;

-- name: set_event_fields
UPDATE events
   SET event_name = :event_name, hwid = :hwid, user_id = :user_id, campaign_id = :campaign_id
 WHERE id = :id;

-- name: destination_states
-- Every destination's shared state (paused, circuit), as each instance caches it.
SELECT name, paused, paused_reason, paused_at, circuit, circuit_reason, opened_at, reopen_at,
       cooldown, closed_at, probe_owner, probe_until, held_since, updated_at
  FROM destinations;

-- name: ensure_destination
INSERT INTO destinations (name, updated_at) VALUES (:name, :now)
ON CONFLICT (name) DO NOTHING;

-- name: destination_for_update
-- One destination's state, read to change it in the same transaction.
SELECT paused, circuit, held_since, cooldown, probe_owner FROM destinations WHERE name = :name;

-- name: pause_destination
UPDATE destinations
   SET paused = 1, paused_reason = :reason, paused_at = :now,
       held_since = COALESCE(held_since, :now), updated_at = :now
 WHERE name = :name AND paused = 0;

-- name: resume_destination
UPDATE destinations
   SET paused = 0, paused_reason = NULL, paused_at = NULL,
       held_since = CASE WHEN circuit = 'closed' THEN NULL ELSE held_since END,
       updated_at = :now
 WHERE name = :name AND paused = 1;

-- name: shift_budgets
-- A hold spends no budget: the pending deliveries' max_age clocks move forward by the
-- time held (one accepted during the hold starts its budget now).
UPDATE deliveries
   SET budget_start = :now - MAX(0, :held_since - budget_start)
 WHERE destination = :destination AND state = 'pending';

-- name: open_circuit
-- Closed -> open, by one instance only (the one whose update matched).
UPDATE destinations
   SET circuit = 'open', circuit_reason = :reason, opened_at = :now,
       reopen_at = :now + :cooldown, cooldown = :cooldown, probe_owner = NULL,
       probe_until = NULL, held_since = COALESCE(held_since, :now), updated_at = :now
 WHERE name = :name AND circuit = 'closed';

-- name: claim_probe
-- After the cooldown one instance takes the probe (again if its prober went silent).
UPDATE destinations
   SET circuit = 'half-open', probe_owner = :owner, probe_until = :until, updated_at = :now
 WHERE name = :name
   AND ((circuit = 'open' AND reopen_at <= :now)
        OR (circuit = 'half-open' AND (probe_until IS NULL OR probe_until < :now)));

-- name: restart_hold
-- The time held so far was credited to the budgets: the hold counts again from now.
UPDATE destinations SET held_since = :now WHERE name = :name AND held_since IS NOT NULL;

-- name: close_circuit
UPDATE destinations
   SET circuit = 'closed', circuit_reason = NULL, closed_at = :now, opened_at = NULL,
       reopen_at = NULL, cooldown = NULL, probe_owner = NULL, probe_until = NULL,
       held_since = CASE WHEN paused = 1 THEN held_since ELSE NULL END, updated_at = :now
 WHERE name = :name AND circuit = 'half-open' AND probe_owner = :owner;

-- name: reopen_circuit
UPDATE destinations
   SET circuit = 'open', circuit_reason = :reason, reopen_at = :now + :cooldown,
       cooldown = :cooldown, probe_owner = NULL, probe_until = NULL, updated_at = :now
 WHERE name = :name AND circuit = 'half-open' AND probe_owner = :owner;

-- name: health_window
-- Attempts of a destination since :since, and how many counted against it.
SELECT COUNT(*), COALESCE(SUM(failed), 0) FROM attempts
 WHERE destination = :destination AND started_at >= :since;

-- name: destination_activity
SELECT COUNT(*), COALESCE(SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END), 0)
  FROM attempts WHERE destination = :destination AND started_at >= :since;

-- name: duration_at_rank
-- The :rank-th fastest attempt since :since (the p95 with rank = 95% of the count).
SELECT duration_ms FROM attempts
 WHERE destination = :destination AND started_at >= :since
 ORDER BY duration_ms LIMIT 1 OFFSET :rank;

-- name: last_failure
SELECT error, started_at, status_code FROM attempts
 WHERE destination = :destination AND started_at >= :since AND outcome <> 'succeeded'
 ORDER BY started_at DESC LIMIT 1;

-- name: note_dead_letters
-- At most one dead-letter notice per destination per interval: the first to update wins.
UPDATE destinations SET dead_notice_at = :now, updated_at = :now
 WHERE name = :name AND (dead_notice_at IS NULL OR dead_notice_at <= :before);

-- name: dead_count
SELECT COUNT(*) FROM deliveries WHERE destination = :destination AND state = 'dead';

-- name: minute_events
-- Events received per minute since :since (the console's chart), on events_received.
SELECT CAST(received_at / 60 AS INTEGER), COUNT(*) FROM events
 WHERE received_at >= :since GROUP BY 1;

-- name: minute_attempts
-- Attempts per minute, destination and outcome since :since, on attempts_started.
SELECT CAST(started_at / 60 AS INTEGER), destination, outcome, COUNT(*) FROM attempts
 WHERE started_at >= :since GROUP BY 1, 2, 3;

-- name: dead_groups
-- Dead letters by destination and last error, the largest groups first.
SELECT destination, COALESCE(last_error, ''), COUNT(*), MIN(updated_at), MAX(updated_at)
  FROM deliveries
 WHERE state = 'dead' AND (:destination IS NULL OR destination = :destination)
 GROUP BY destination, COALESCE(last_error, '')
 ORDER BY COUNT(*) DESC, destination LIMIT :limit;

-- name: dead_count_matching
-- Dead letters of :destination (NULL: any) whose last error is :error (NULL: any).
SELECT COUNT(*) FROM deliveries
 WHERE state = 'dead' AND (:destination IS NULL OR destination = :destination)
   AND (:error IS NULL OR COALESCE(last_error, '') = :error);

-- name: dead_matching
-- The newest dead letters of that filter, as `relay dlq list` shows them.
SELECT d.id, d.destination, d.event_id, e.event_name, d.attempts, d.last_error,
       d.last_status, d.updated_at, d.route
  FROM deliveries d JOIN events e ON e.id = d.event_id
 WHERE d.state = 'dead' AND d.state <> 'pending'  -- on deliveries_settled, in order
   AND (:destination IS NULL OR d.destination = :destination)
   AND (:error IS NULL OR COALESCE(d.last_error, '') = :error)
 ORDER BY d.updated_at DESC LIMIT :limit;

-- name: dead_ids
-- Up to :limit ids of that filter (replaying a filter takes them a batch at a time).
SELECT id FROM deliveries
 WHERE state = 'dead' AND (:destination IS NULL OR destination = :destination)
   AND (:error IS NULL OR COALESCE(last_error, '') = :error)
 LIMIT :limit;

-- name: event_ids_by_state
-- Newest events with a plain delivery in a state (the index on (state, event_id) walks
-- them newest first): how `events list --state` finds rare states fast.
SELECT DISTINCT d.event_id FROM deliveries d
 WHERE d.state = :db_state AND d.group_key IS NULL
   AND (:errored IS NULL OR (d.last_error IS NOT NULL) = :errored)
   AND (:destination IS NULL OR d.destination = :destination)
   AND d.event_id < :before AND d.event_id >= :since
 ORDER BY d.event_id DESC LIMIT :limit;

-- name: item_event_ids_by_state
-- The same for grouped events: by their group item, waiting or gone out.
SELECT DISTINCT g.event_id FROM group_items g LEFT JOIN deliveries d ON d.id = g.delivery_id
 WHERE ((:waiting = 1 AND g.delivery_id IS NULL)
        OR (d.state = :db_state
            AND (:errored IS NULL OR (d.last_error IS NOT NULL) = :errored)))
   AND (:destination IS NULL OR g.destination = :destination)
   AND g.event_id < :before AND g.event_id >= :since
 ORDER BY g.event_id DESC LIMIT :limit;

-- name: events_by_ids
SELECT e.id, e.received_at, e.body FROM events e
 WHERE e.id IN (SELECT value FROM json_each(:ids)) AND {where}
 ORDER BY e.id DESC;
