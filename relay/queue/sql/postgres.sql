-- The PostgreSQL dialect of the queue's statements (several instances, one database).
--
-- Every statement is a named block; relay/queue/sql/sqlite.sql holds the same names (a
-- test compares the sets), and relay/queue/core.py is the only code that uses them.
-- Parameters are named (%(name)s); a list parameter is an array. Tables are prefixed
-- relay_ so they can share a schema. A statement with {where} takes fragments named
-- where_*, joined with AND by the core. Where many writers could meet, statements take
-- row locks in a fixed order or skip locked rows, so instances never deadlock.

-- name: insert_event
INSERT INTO relay_events (id, received_at, body, event_name, hwid, user_id, campaign_id)
VALUES (%(id)s, %(now)s, %(body)s, %(event_name)s, %(hwid)s, %(user_id)s, %(campaign_id)s);

-- name: insert_delivery
INSERT INTO relay_deliveries (id, event_id, destination, route, available_at, created_at,
                              budget_start, updated_at, group_key, order_key)
VALUES (%(id)s, %(event_id)s, %(destination)s, %(route)s, %(now)s, %(now)s, %(now)s, %(now)s,
        %(group_key)s, %(order_key)s);

-- name: insert_group_item
INSERT INTO relay_group_items (id, event_id, destination, route, group_key, created_at)
VALUES (%(id)s, %(event_id)s, %(destination)s, %(route)s, %(group_key)s, %(now)s);

-- name: open_group
-- A new group goes out `wait` after its first event; a group that went out within the
-- last `interval` goes out again no sooner than `interval` after that. The core upserts
-- in key order, so concurrent batches touching the same groups cannot deadlock.
INSERT INTO relay_groups AS g (destination, route, group_key, flush_at, last_flush_at)
VALUES (%(destination)s, %(route)s, %(group_key)s, %(now)s + %(wait)s, NULL)
ON CONFLICT (destination, route, group_key) DO UPDATE
   SET flush_at = coalesce(g.flush_at, greatest(%(now)s + %(wait)s,
                                                coalesce(g.last_flush_at + %(interval)s, 0)));

-- name: claim_fingerprint
-- A new digest, or one older than the window, becomes ours and comes back; a fresh one
-- stays and does not come back: the body is a duplicate. A concurrent claim of the same
-- digest waits for ours to commit and then sees it; the core claims in digest order.
INSERT INTO relay_fingerprints (digest, event_id, created_at)
VALUES (%(digest)s, %(event_id)s, %(now)s)
ON CONFLICT (digest) DO UPDATE SET event_id = excluded.event_id, created_at = excluded.created_at
 WHERE relay_fingerprints.created_at < %(since)s
RETURNING digest;

-- name: find_fingerprint
SELECT digest, event_id FROM relay_fingerprints WHERE digest = %(digest)s;

-- name: lease
-- Taking a lease pushes available_at past the lease: a crashed holder's rows come back by
-- themselves. The attempt is counted when taken, so a crash mid-send still uses budget.
-- SKIP LOCKED: rows another instance is leasing right now are passed over, not waited for.
-- A delivery with an order key waits while an earlier one of its key (smaller seq:
-- accepted before) is pending, leased or not: one at a time per key, in order.
-- A held destination (paused, or its circuit open, or half-open and probed by another
-- instance) gives nothing, whatever an instance's cached view says.
UPDATE relay_deliveries d
   SET available_at = %(until)s, attempts = d.attempts + 1, lease_owner = %(owner)s,
       updated_at = %(now)s
  FROM (SELECT c.id FROM relay_deliveries c
         WHERE c.destination = %(destination)s AND c.state = 'pending'
           AND c.available_at <= %(now)s
           AND (c.order_key IS NULL
                OR NOT EXISTS (SELECT 1 FROM relay_deliveries p
                                WHERE p.destination = c.destination
                                  AND p.order_key = c.order_key
                                  AND p.state = 'pending' AND p.seq < c.seq))
           AND NOT EXISTS (SELECT 1 FROM relay_destinations h
                            WHERE h.name = %(destination)s
                              AND (h.paused
                                   OR (h.circuit <> 'closed'
                                       AND NOT (h.circuit = 'half-open'
                                                AND h.probe_owner = %(owner)s))))
         ORDER BY c.available_at LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED) due, relay_events e
 WHERE d.id = due.id AND e.id = d.event_id
RETURNING d.id, d.event_id, d.destination, d.route, d.attempts, d.budget_start, d.group_key,
          e.body;

-- name: group_bodies
-- Every event of grouped deliveries, oldest first.
SELECT g.delivery_id, e.body
  FROM relay_group_items g JOIN relay_events e ON e.id = g.event_id
 WHERE g.delivery_id = ANY(%(ids)s::text[])
 ORDER BY g.created_at, g.seq;

-- name: settle
UPDATE relay_deliveries
   SET state = %(state)s, available_at = %(available_at)s, last_error = %(error)s,
       last_status = %(status_code)s, lease_owner = NULL, updated_at = %(now)s
 WHERE id = %(id)s AND state = 'pending' AND lease_owner = %(owner)s;

-- name: insert_attempt
-- Recorded even when the lease was lost meanwhile (the attempt did happen), but never for
-- a delivery that no longer exists (`relay forget` may have erased it mid-attempt).
INSERT INTO relay_attempts (delivery_id, destination, n, started_at, duration_ms, outcome,
                            status_code, error, response, method, url, failed)
SELECT %(id)s, %(destination)s, %(n)s, %(started_at)s, %(duration_ms)s, %(outcome)s,
       %(status_code)s, %(error)s, %(response)s, %(method)s, %(url)s, %(failed)s
 WHERE EXISTS (SELECT 1 FROM relay_deliveries WHERE id = %(id)s);

-- name: dead_letters
SELECT d.id, d.destination, d.event_id, e.event_name, d.attempts, d.last_error,
       d.last_status, d.updated_at, d.route
  FROM relay_deliveries d JOIN relay_events e ON e.id = d.event_id
 WHERE d.state = 'dead'
   AND (%(destination)s::text IS NULL OR d.destination = %(destination)s::text)
 ORDER BY d.updated_at LIMIT %(limit)s;

-- name: replay_dead
-- Dead deliveries back to pending with a fresh attempt budget (same id: same
-- Idempotency-Key, since the destination never accepted it).
UPDATE relay_deliveries
   SET state = 'pending', attempts = 0, available_at = %(now)s, budget_start = %(now)s,
       lease_owner = NULL, last_error = NULL, last_status = NULL, updated_at = %(now)s
 WHERE state = 'dead'
   AND (%(destination)s::text IS NULL OR destination = %(destination)s::text)
   AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
RETURNING destination;

-- name: due_groups
-- SKIP LOCKED: a group another instance is flushing right now is its business.
SELECT route, group_key FROM relay_groups
 WHERE destination = %(destination)s AND flush_at IS NOT NULL AND flush_at <= %(now)s
 ORDER BY flush_at LIMIT 100
   FOR UPDATE SKIP LOCKED;

-- name: group_open_items
SELECT id, event_id FROM relay_group_items
 WHERE destination = %(destination)s AND route = %(route)s AND group_key = %(group_key)s
   AND delivery_id IS NULL
 ORDER BY created_at, seq;

-- name: assign_items
UPDATE relay_group_items SET delivery_id = %(delivery_id)s WHERE id = ANY(%(ids)s::text[]);

-- name: close_group
UPDATE relay_groups SET flush_at = NULL, last_flush_at = %(now)s
 WHERE destination = %(destination)s AND route = %(route)s AND group_key = %(group_key)s;

-- name: next_due
-- The earlier of the next pending delivery and the next group flush (min skips NULLs).
SELECT min(due) FROM (
    SELECT min(available_at) AS due FROM relay_deliveries
     WHERE destination = %(destination)s AND state = 'pending'
    UNION ALL
    SELECT min(flush_at) FROM relay_groups
     WHERE destination = %(destination)s AND flush_at IS NOT NULL) AS dues;

-- name: depth
-- Open deliveries per destination and state, from relay_deliveries_open (a partial
-- index of pending and dead rows).
SELECT destination, state, count(*) FROM relay_deliveries
 WHERE state IN ('pending', 'dead') GROUP BY destination, state;

-- name: oldest_pending
-- When the oldest pending delivery of :destination was accepted.
SELECT min(created_at) FROM relay_deliveries
 WHERE destination = %(destination)s AND state = 'pending';

-- name: depth_retrying
-- Pending deliveries that failed at least once (a part of pending).
SELECT destination, count(*) FROM relay_deliveries
 WHERE state = 'pending' AND last_error IS NOT NULL GROUP BY destination;

-- name: group_flush_times
-- When each destination's earliest group is due (the flusher sleeps until then).
SELECT destination, MIN(flush_at) FROM relay_groups WHERE flush_at IS NOT NULL GROUP BY destination;

-- name: open_groups
SELECT destination, count(*) FROM relay_groups WHERE flush_at IS NOT NULL
 GROUP BY destination;

-- name: heartbeat
-- An instance says it is alive; also the write `/readyz` probes with.
INSERT INTO relay_instances (id, host, pid, version, started_at, seen_at)
VALUES (%(id)s, %(host)s, %(pid)s, %(version)s, %(now)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at;

-- name: forget_instance
DELETE FROM relay_instances WHERE id = %(id)s;

-- name: release_orphans
-- Leases whose owner's heartbeat went stale come back now, not when the lease runs out.
UPDATE relay_deliveries SET available_at = %(now)s, lease_owner = NULL
 WHERE state = 'pending' AND lease_owner IS NOT NULL AND available_at > %(now)s
   AND lease_owner NOT IN (SELECT id FROM relay_instances WHERE seen_at >= %(alive_since)s);

-- name: release_unsent
-- Leased ahead of a free slot and never sent (the destination was held, or the relay is
-- stopping): back to due now, and the attempt the lease counted is taken back.
UPDATE relay_deliveries SET available_at = %(now)s, lease_owner = NULL, attempts = attempts - 1
 WHERE state = 'pending' AND lease_owner = %(owner)s AND destination = %(destination)s
   AND id = ANY(%(ids)s::text[]);
-- name: release_own
UPDATE relay_deliveries SET available_at = %(now)s, lease_owner = NULL
 WHERE state = 'pending' AND lease_owner = %(owner)s;

-- name: release_stray
-- Leases of ours that no attempt of ours is using: a lease whose transaction we gave up
-- on (the database went silent) may still have committed once it came back.
UPDATE relay_deliveries SET available_at = %(now)s, lease_owner = NULL
 WHERE state = 'pending' AND lease_owner = %(owner)s AND destination = %(destination)s
   AND NOT (id = ANY(%(keep)s::text[]));

-- name: prune_instances
DELETE FROM relay_instances WHERE seen_at < %(before)s;

-- name: old_deliveries
-- Settled deliveries past their retention: succeeded after `retention`, dead after
-- `dead_retention`.
SELECT id, event_id FROM relay_deliveries
 WHERE (state = 'succeeded' AND updated_at < %(succeeded_before)s)
    OR (state = 'dead' AND updated_at < %(dead_before)s)
 LIMIT %(limit)s;

-- name: delete_attempts_of
DELETE FROM relay_attempts WHERE delivery_id = %(id)s;

-- name: item_events_of
SELECT DISTINCT event_id FROM relay_group_items WHERE delivery_id = ANY(%(ids)s::text[]);

-- name: delete_items_of
DELETE FROM relay_group_items WHERE delivery_id = %(id)s;

-- name: delete_delivery
DELETE FROM relay_deliveries WHERE id = %(id)s;

-- name: delete_event_if_done
-- An event goes once nothing refers to it any more.
DELETE FROM relay_events e
 WHERE e.id = %(id)s
   AND NOT EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.event_id = e.id)
   AND NOT EXISTS (SELECT 1 FROM relay_group_items g WHERE g.event_id = e.id);

-- name: old_orphan_events
-- Events that never made a delivery (no route matched) or whose deliveries are gone.
SELECT e.id FROM relay_events e
 WHERE e.received_at < %(before)s
   AND NOT EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.event_id = e.id)
   AND NOT EXISTS (SELECT 1 FROM relay_group_items g WHERE g.event_id = e.id)
 LIMIT %(limit)s;

-- name: prune_fingerprints
DELETE FROM relay_fingerprints WHERE digest IN (
    SELECT digest FROM relay_fingerprints WHERE created_at < %(before)s LIMIT %(limit)s);

-- name: events_page
-- Stored events, newest first (ids are time-ordered), filtered by where_* fragments.
SELECT e.id, e.received_at, e.body FROM relay_events e
 WHERE {where}
 ORDER BY e.id DESC LIMIT %(limit)s;

-- name: where_event_name
e.event_name = %(event_name)s

-- name: where_hwid
e.hwid = %(hwid)s

-- name: where_user_id
e.user_id = %(user_id)s

-- name: where_campaign_id
e.campaign_id = %(campaign_id)s

-- name: where_before
e.id < %(before)s

-- name: where_since
e.id >= %(since)s

-- name: where_until
e.id < %(until)s

-- name: where_delivery
-- A delivery of the event to :destination (NULL: any) in :state (NULL: any). A grouped
-- event's delivery is its group item's: pending until the group goes out.
(EXISTS (SELECT 1 FROM relay_deliveries d
          WHERE d.event_id = e.id AND d.group_key IS NULL
            AND (%(destination)s::text IS NULL OR d.destination = %(destination)s::text)
            AND (%(state)s::text IS NULL
                 OR %(state)s::text = CASE WHEN d.state = 'pending'
                                            AND d.last_error IS NOT NULL
                                           THEN 'retrying' ELSE d.state END))
 OR EXISTS (SELECT 1 FROM relay_group_items g LEFT JOIN relay_deliveries d
                   ON d.id = g.delivery_id
             WHERE g.event_id = e.id
               AND (%(destination)s::text IS NULL OR g.destination = %(destination)s::text)
               AND (%(state)s::text IS NULL
                    OR %(state)s::text = CASE WHEN d.id IS NULL THEN 'pending'
                                               WHEN d.state = 'pending'
                                                AND d.last_error IS NOT NULL
                                               THEN 'retrying' ELSE d.state END)))

-- name: event
SELECT id, received_at, body FROM relay_events WHERE id = %(id)s;

-- name: event_deliveries
-- Per (event, destination): the plain delivery, or the group item and the grouped
-- delivery it went out in (NULL columns while the group waits).
SELECT d.event_id, d.id, d.destination, d.route,
       CASE WHEN d.state = 'pending' AND d.last_error IS NOT NULL THEN 'retrying'
            ELSE d.state END,
       d.attempts, d.last_error, d.last_status, d.updated_at, d.group_key, d.id
  FROM relay_deliveries d
 WHERE d.event_id = ANY(%(ids)s::text[]) AND d.group_key IS NULL
UNION ALL
SELECT g.event_id, coalesce(d.id, g.id), g.destination, g.route,
       CASE WHEN d.id IS NULL THEN 'pending'
            WHEN d.state = 'pending' AND d.last_error IS NOT NULL THEN 'retrying'
            ELSE d.state END,
       coalesce(d.attempts, 0), d.last_error, d.last_status,
       coalesce(d.updated_at, g.created_at), g.group_key, d.id
  FROM relay_group_items g LEFT JOIN relay_deliveries d ON d.id = g.delivery_id
 WHERE g.event_id = ANY(%(ids)s::text[]);

-- name: attempts_of
SELECT delivery_id, n, started_at, duration_ms, outcome, status_code, error, response,
       method, url
  FROM relay_attempts WHERE delivery_id = ANY(%(ids)s::text[])
 ORDER BY delivery_id, n, id;

-- name: delivery_for_replay
-- What a resend of one event to one destination needs: the route and group of its delivery.
SELECT d.id, d.destination, d.route, d.group_key, d.order_key FROM relay_deliveries d
 WHERE d.event_id = %(event_id)s AND d.group_key IS NULL
UNION ALL
SELECT g.id, g.destination, g.route, g.group_key, NULL FROM relay_group_items g
 WHERE g.event_id = %(event_id)s;

-- name: insert_replay_item
-- A grouped event's resend is a group of one, delivered at once.
INSERT INTO relay_group_items (id, event_id, destination, route, group_key, created_at,
                               delivery_id)
VALUES (%(id)s, %(event_id)s, %(destination)s, %(route)s, %(group_key)s, %(now)s,
        %(delivery_id)s);

-- name: events_of_address
SELECT id FROM relay_events WHERE hwid = %(hwid)s AND id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: plain_deliveries_of_events
SELECT id, state FROM relay_deliveries
 WHERE event_id = ANY(%(ids)s::text[]) AND group_key IS NULL;

-- name: items_of_events
SELECT id, delivery_id FROM relay_group_items WHERE event_id = ANY(%(ids)s::text[]);

-- name: grouped_deliveries_of_events
-- Grouped deliveries carrying any of these events: all their items, how many are these
-- events', and their state.
SELECT g.delivery_id, count(*),
       sum(CASE WHEN g.event_id = ANY(%(ids)s::text[]) THEN 1 ELSE 0 END),
       (SELECT d.state FROM relay_deliveries d WHERE d.id = g.delivery_id)
  FROM relay_group_items g
 WHERE g.delivery_id IN (SELECT delivery_id FROM relay_group_items
                          WHERE event_id = ANY(%(ids)s::text[]) AND delivery_id IS NOT NULL)
 GROUP BY g.delivery_id;

-- name: count_attempts_of
SELECT count(*) FROM relay_attempts WHERE delivery_id = ANY(%(ids)s::text[]);

-- name: count_fingerprints_of
SELECT count(*) FROM relay_fingerprints WHERE event_id = ANY(%(ids)s::text[]);

-- name: attempt_texts_of
SELECT id, error, response FROM relay_attempts WHERE delivery_id = %(id)s;

-- name: set_attempt_texts
UPDATE relay_attempts SET error = %(error)s, response = %(response)s WHERE id = %(id)s;

-- name: delivery_error
SELECT last_error FROM relay_deliveries WHERE id = %(id)s;

-- name: set_delivery_error
UPDATE relay_deliveries SET last_error = %(error)s WHERE id = %(id)s;

-- name: repoint_grouped_delivery
-- A grouped delivery that also carries other people's events stays, pointing at one of them.
UPDATE relay_deliveries d
   SET event_id = (SELECT g.event_id FROM relay_group_items g WHERE g.delivery_id = d.id
                    ORDER BY g.created_at, g.seq LIMIT 1)
 WHERE d.id = %(id)s;

-- name: delete_item
DELETE FROM relay_group_items WHERE id = %(id)s;

-- name: forget_fingerprints
DELETE FROM relay_fingerprints WHERE event_id = ANY(%(ids)s::text[]);

-- name: forget_events
DELETE FROM relay_events WHERE id = ANY(%(ids)s::text[]);

-- name: forget_groups
-- Group keys are event fields: a group keyed by this address goes once it holds nothing.
DELETE FROM relay_groups gr
 WHERE strpos(lower(gr.group_key), %(needle)s) > 0
   AND NOT EXISTS (SELECT 1 FROM relay_group_items g
                    WHERE g.destination = gr.destination AND g.route = gr.route
                      AND g.group_key = gr.group_key AND g.delivery_id IS NULL);

-- name: prune_groups
-- Idle groups (nothing waiting, last sent before :before) are forgotten; a new event
-- opens them again.
DELETE FROM relay_groups WHERE (destination, route, group_key) IN (
    SELECT destination, route, group_key FROM relay_groups
     WHERE flush_at IS NULL AND (last_flush_at IS NULL OR last_flush_at < %(before)s)
     LIMIT %(limit)s);

-- name: events_to_backfill
-- Events stored before their searchable fields existed (migration 3).
SELECT id, body FROM relay_events
 WHERE id > %(after)s AND event_name IS NULL ORDER BY id LIMIT %(limit)s;

-- name: set_event_fields
UPDATE relay_events
   SET event_name = %(event_name)s, hwid = %(hwid)s, user_id = %(user_id)s,
       campaign_id = %(campaign_id)s
 WHERE id = %(id)s;

-- name: destination_states
-- Every destination's shared state (paused, circuit), as each instance caches it.
SELECT name, paused, paused_reason, paused_at, circuit, circuit_reason, opened_at, reopen_at,
       cooldown, closed_at, probe_owner, probe_until, held_since, updated_at
  FROM relay_destinations;

-- name: ensure_destination
INSERT INTO relay_destinations (name, updated_at) VALUES (%(name)s, %(now)s)
ON CONFLICT (name) DO NOTHING;

-- name: destination_for_update
-- One destination's state, locked to change it in the same transaction.
SELECT paused, circuit, held_since, cooldown, probe_owner FROM relay_destinations
 WHERE name = %(name)s FOR UPDATE;

-- name: pause_destination
UPDATE relay_destinations
   SET paused = true, paused_reason = %(reason)s, paused_at = %(now)s,
       held_since = coalesce(held_since, %(now)s), updated_at = %(now)s
 WHERE name = %(name)s AND NOT paused;

-- name: resume_destination
UPDATE relay_destinations
   SET paused = false, paused_reason = NULL, paused_at = NULL,
       held_since = CASE WHEN circuit = 'closed' THEN NULL ELSE held_since END,
       updated_at = %(now)s
 WHERE name = %(name)s AND paused;

-- name: shift_budgets
-- A hold spends no budget: the pending deliveries' max_age clocks move forward by the
-- time held (one accepted during the hold starts its budget now).
UPDATE relay_deliveries
   SET budget_start = %(now)s - greatest(0, %(held_since)s - budget_start)
 WHERE destination = %(destination)s AND state = 'pending';

-- name: open_circuit
-- Closed -> open, by one instance only (the one whose update matched).
UPDATE relay_destinations
   SET circuit = 'open', circuit_reason = %(reason)s, opened_at = %(now)s,
       reopen_at = %(now)s + %(cooldown)s, cooldown = %(cooldown)s, probe_owner = NULL,
       probe_until = NULL, held_since = coalesce(held_since, %(now)s), updated_at = %(now)s
 WHERE name = %(name)s AND circuit = 'closed';

-- name: claim_probe
-- After the cooldown one instance takes the probe (again if its prober went silent).
UPDATE relay_destinations
   SET circuit = 'half-open', probe_owner = %(owner)s, probe_until = %(until)s,
       updated_at = %(now)s
 WHERE name = %(name)s
   AND ((circuit = 'open' AND reopen_at <= %(now)s)
        OR (circuit = 'half-open' AND (probe_until IS NULL OR probe_until < %(now)s)));

-- name: restart_hold
-- The time held so far was credited to the budgets: the hold counts again from now.
UPDATE relay_destinations SET held_since = %(now)s WHERE name = %(name)s AND held_since IS NOT NULL;

-- name: close_circuit
UPDATE relay_destinations
   SET circuit = 'closed', circuit_reason = NULL, closed_at = %(now)s, opened_at = NULL,
       reopen_at = NULL, cooldown = NULL, probe_owner = NULL, probe_until = NULL,
       held_since = CASE WHEN paused THEN held_since ELSE NULL END, updated_at = %(now)s
 WHERE name = %(name)s AND circuit = 'half-open' AND probe_owner = %(owner)s;

-- name: reopen_circuit
UPDATE relay_destinations
   SET circuit = 'open', circuit_reason = %(reason)s, reopen_at = %(now)s + %(cooldown)s,
       cooldown = %(cooldown)s, probe_owner = NULL, probe_until = NULL, updated_at = %(now)s
 WHERE name = %(name)s AND circuit = 'half-open' AND probe_owner = %(owner)s;

-- name: health_window
-- Attempts of a destination since :since, and how many counted against it.
SELECT count(*), count(*) FILTER (WHERE failed) FROM relay_attempts
 WHERE destination = %(destination)s AND started_at >= %(since)s;

-- name: destination_activity
SELECT count(*), count(*) FILTER (WHERE outcome = 'succeeded')
  FROM relay_attempts WHERE destination = %(destination)s AND started_at >= %(since)s;

-- name: duration_at_rank
-- The :rank-th fastest attempt since :since (the p95 with rank = 95% of the count).
SELECT duration_ms FROM relay_attempts
 WHERE destination = %(destination)s AND started_at >= %(since)s
 ORDER BY duration_ms LIMIT 1 OFFSET %(rank)s;

-- name: last_failure
SELECT error, started_at, status_code FROM relay_attempts
 WHERE destination = %(destination)s AND started_at >= %(since)s AND outcome <> 'succeeded'
 ORDER BY started_at DESC LIMIT 1;

-- name: note_dead_letters
-- At most one dead-letter notice per destination per interval: the first to update wins.
UPDATE relay_destinations SET dead_notice_at = %(now)s, updated_at = %(now)s
 WHERE name = %(name)s AND (dead_notice_at IS NULL OR dead_notice_at <= %(before)s);

-- name: dead_count
SELECT count(*) FROM relay_deliveries WHERE destination = %(destination)s AND state = 'dead';

-- name: minute_events
-- Events received per minute since :since (the console's chart), on relay_events_received.
SELECT floor(received_at / 60)::bigint, count(*) FROM relay_events
 WHERE received_at >= %(since)s GROUP BY 1;

-- name: minute_attempts
-- Attempts per minute, destination and outcome since :since, on relay_attempts_started.
SELECT floor(started_at / 60)::bigint, destination, outcome, count(*) FROM relay_attempts
 WHERE started_at >= %(since)s GROUP BY 1, 2, 3;

-- name: dead_groups
-- Dead letters by destination and last error, the largest groups first.
SELECT destination, COALESCE(last_error, ''), count(*), min(updated_at), max(updated_at)
  FROM relay_deliveries
 WHERE state = 'dead'
   AND (%(destination)s::text IS NULL OR destination = %(destination)s::text)
 GROUP BY destination, COALESCE(last_error, '')
 ORDER BY count(*) DESC, destination LIMIT %(limit)s;

-- name: dead_count_matching
-- Dead letters of :destination (NULL: any) whose last error is :error (NULL: any).
SELECT count(*) FROM relay_deliveries
 WHERE state = 'dead'
   AND (%(destination)s::text IS NULL OR destination = %(destination)s::text)
   AND (%(error)s::text IS NULL OR COALESCE(last_error, '') = %(error)s::text);

-- name: dead_matching
-- The newest dead letters of that filter, as `relay dlq list` shows them.
SELECT d.id, d.destination, d.event_id, e.event_name, d.attempts, d.last_error,
       d.last_status, d.updated_at, d.route
  FROM relay_deliveries d JOIN relay_events e ON e.id = d.event_id
 WHERE d.state = 'dead'
   AND (%(destination)s::text IS NULL OR d.destination = %(destination)s::text)
   AND (%(error)s::text IS NULL OR COALESCE(d.last_error, '') = %(error)s::text)
 ORDER BY d.updated_at DESC LIMIT %(limit)s;

-- name: dead_ids
-- Up to :limit ids of that filter (replaying a filter takes them a batch at a time).
SELECT id FROM relay_deliveries
 WHERE state = 'dead'
   AND (%(destination)s::text IS NULL OR destination = %(destination)s::text)
   AND (%(error)s::text IS NULL OR COALESCE(last_error, '') = %(error)s::text)
 LIMIT %(limit)s;

-- name: event_ids_by_state
-- Newest events with a plain delivery in a state (the index on (state, event_id) walks
-- them newest first): how `events list --state` finds rare states fast.
SELECT DISTINCT d.event_id FROM relay_deliveries d
 WHERE d.state = %(db_state)s AND d.group_key IS NULL
   AND (%(errored)s::boolean IS NULL OR (d.last_error IS NOT NULL) = %(errored)s::boolean)
   AND (%(destination)s::text IS NULL OR d.destination = %(destination)s::text)
   AND d.event_id < %(before)s AND d.event_id >= %(since)s
 ORDER BY d.event_id DESC LIMIT %(limit)s;

-- name: item_event_ids_by_state
-- The same for grouped events: by their group item, waiting or gone out.
SELECT DISTINCT g.event_id FROM relay_group_items g
  LEFT JOIN relay_deliveries d ON d.id = g.delivery_id
 WHERE ((%(waiting)s::boolean AND g.delivery_id IS NULL)
        OR (d.state = %(db_state)s
            AND (%(errored)s::boolean IS NULL
                 OR (d.last_error IS NOT NULL) = %(errored)s::boolean)))
   AND (%(destination)s::text IS NULL OR g.destination = %(destination)s::text)
   AND g.event_id < %(before)s AND g.event_id >= %(since)s
 ORDER BY g.event_id DESC LIMIT %(limit)s;

-- name: events_by_ids
SELECT e.id, e.received_at, e.body FROM relay_events e
 WHERE e.id = ANY(%(ids)s::text[]) AND {where}
 ORDER BY e.id DESC;
