-- Every statement the daemon runs on the outbox, one named query each (the way River's driver keeps
-- its queries): `-- name: X` starts one. {names} are the configured tables (see names.py); $n are
-- parameters, in the order the OutboxQueries method of the same name passes them.

-- name: claim
-- Rows due, leased to this worker, in two parts. `urgent`: rows of priority >= $6, highest first, whatever
-- their campaign (a priority message overtakes every backlog). `fair`: each active campaign of $5 ('' for
-- rows without one) that has rows due takes its share of $3 by weight (the campaigns table; 1 when it has no
-- row there), highest priority first within it. The shares are whole rows that add up to $3: systematic
-- rounding, one random offset laid over the cumulative shares, so a claim of one row (at 1 request/s, or
-- as each slot frees) goes to a campaign with the chance of its weight, and shares hold over many small
-- claims (rounding each up gave every campaign one row a claim: weights 3:1 came out 1:1). Paused and
-- cancelled campaigns (the campaigns table, read by
-- every claim) and campaigns whose sending window is closed ($4) are left alone. `id = ANY(ARRAY(...))`
-- rather than a join with the locked ids: the planner then always reaches the rows through the primary key.
-- `opted_out` answers the suppression list for rows whose recipient is stored normalised (E.164, lower-case
-- email domain): only the others need a second look-up, by their normalised address. RowValidator.build
-- reads the returned columns by name: their order is free.
WITH active AS (
    SELECT q.name, coalesce(c.weight, 1)::float8 AS weight
    FROM unnest($5::text[]) AS q(name) LEFT JOIN {campaigns} c ON c.name = q.name
    WHERE coalesce(c.state, 'active') = 'active' AND EXISTS (
        SELECT 1 FROM {outbox} d WHERE d.status = 'pending' AND coalesce(d.campaign, '') = q.name
          AND d.not_before <= now())),
cum AS (SELECT name, weight, sum(weight) OVER (ORDER BY name) AS upto, sum(weight) OVER () AS total FROM active),
share AS (SELECT name, (floor($3 * upto / total + u) - floor($3 * (upto - weight) / total + u))::int AS quota
          FROM cum CROSS JOIN (SELECT random() AS u) r),
urgent AS (
    SELECT o.id FROM {outbox} o
    WHERE o.status = 'pending' AND o.priority >= $6 AND o.not_before <= now()
      AND coalesce(o.campaign, '') <> ALL($4::text[])
      AND NOT EXISTS (SELECT 1 FROM {campaigns} c WHERE c.name = coalesce(o.campaign, '') AND c.state <> 'active')
    ORDER BY o.priority DESC, o.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED),
fair AS (
    SELECT x.id FROM share CROSS JOIN LATERAL (
        SELECT f.id FROM {outbox} f
        WHERE f.status = 'pending' AND coalesce(f.campaign, '') = share.name AND f.not_before <= now()
        ORDER BY f.priority DESC, f.id
        LIMIT share.quota
        FOR UPDATE SKIP LOCKED) x)
UPDATE {outbox} o SET status = 'claimed', worker = $1, lease_until = now() + make_interval(secs => $2),
    claimed_at = now(), attempts = o.attempts + 1
WHERE o.id = ANY(ARRAY(SELECT id FROM urgent UNION SELECT id FROM fair))
RETURNING o.id, o.recipient, o.channel, o.provider, o.route, o.campaign, o.body, o.template, o.variables,
    o.priority,
    EXISTS (SELECT 1 FROM {suppressions} s
            WHERE s.address = o.recipient AND s.channel IN ('*', o.channel)) AS opted_out;

-- name: cancel_message
-- A queued row (pending) into `cancelled`; nothing for a row claimed, sent or finished (its status answers).
UPDATE {outbox} SET status = 'cancelled', code = 'cancelled', error = 'cancelled over the API',
    finished_at = now(), lease_until = NULL
WHERE id = $1 AND status = 'pending'
RETURNING id;

-- name: set_campaign
-- A campaign's state (active, paused, cancelled) and, when given, its weight; the table's triggers cancel
-- its queued rows and NOTIFY every daemon.
INSERT INTO {campaigns} AS c (name, state, weight) VALUES ($1, $2, coalesce($3, 1))
ON CONFLICT (name) DO UPDATE SET state = $2, weight = coalesce($3, c.weight), updated_at = now()
RETURNING name, state, weight, updated_at;

-- name: give_back
-- Rows this worker claimed and took back before they went on the wire, their campaign ($3) paused or
-- cancelled: cancelled if it is cancelled now, else queued again as they were (the claim not counted).
-- The campaigns' rows are read FOR SHARE, so a cancel running meanwhile is waited for and its state read:
-- rows put back to queued after a cancel's trigger cancelled the queued ones would stay queued for ever.
WITH c AS MATERIALIZED (SELECT name, state = 'cancelled' AS gone FROM {campaigns}
                        WHERE name = ANY($3::text[]) FOR SHARE),
r AS (UPDATE {outbox} o SET status = CASE WHEN c.gone THEN 'cancelled' ELSE 'pending' END,
    worker = CASE WHEN c.gone THEN o.worker END, lease_until = NULL,
    attempts = CASE WHEN c.gone THEN o.attempts ELSE greatest(o.attempts - 1, 0) END,
    code = CASE WHEN c.gone THEN 'cancelled' ELSE o.code END,
    error = CASE WHEN c.gone THEN 'the campaign was cancelled' ELSE o.error END,
    finished_at = CASE WHEN c.gone THEN now() ELSE o.finished_at END
FROM c WHERE o.id = ANY($1::bigint[]) AND o.worker = $2 AND o.status = 'claimed'
    AND coalesce(o.campaign, '') = c.name
RETURNING 1)
SELECT count(*) FROM r;

-- name: sweep_cancelled
-- Queued rows of the cancelled campaigns $1: rows put back to queued after the cancel's trigger ran (a
-- release, a deferral or a retry racing it) or inserted since; cancelled like the others. The fair-share
-- index (campaign, pending) makes it a probe when there are none.
WITH r AS (UPDATE {outbox} SET status = 'cancelled', code = 'cancelled', error = 'the campaign was cancelled',
    finished_at = now(), lease_until = NULL
WHERE coalesce(campaign, '') = ANY($1::text[]) AND status = 'pending' RETURNING 1)
SELECT count(*) FROM r;

-- name: settling
-- What a pause or cancel of campaign $2 still waits for: transactions that were running when it committed
-- ($1, the xip of a snapshot taken after it: a claim among them may have read the campaign as active), and
-- the campaign's claimed rows (taken back by their daemon, or on the wire until their answer).
SELECT (SELECT count(*) FROM unnest($1::text[]) x WHERE pg_xact_status(x::xid8) = 'in progress')
     + (SELECT count(*) FROM {outbox}
        WHERE lease_until IS NOT NULL AND status = 'claimed' AND coalesce(campaign, '') = $2);

-- name: set_weight
-- A campaign's weight (its share of a provider against the other active campaigns), its state kept.
INSERT INTO {campaigns} AS c (name, weight) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET weight = $2, updated_at = now()
RETURNING name, state, weight, updated_at;

-- name: campaign_states
SELECT name, state, weight, updated_at FROM {campaigns};

-- name: campaign_counts
-- Rows by campaign ('' for none), status and the provider that took them, delivery outcomes of sent rows
-- beside them, the rows sent in the last $2 seconds, and the units (SMS parts, else 1 a message) sent and
-- delivered: what the provider's price multiplies, as the blast's --dry-run does.
SELECT coalesce(campaign, '') AS campaign, status, sent_via, count(*) AS n,
    count(*) FILTER (WHERE delivery_status = 'delivered') AS delivered,
    count(*) FILTER (WHERE delivery_rank >= 3 AND delivery_status <> 'delivered') AS undelivered,
    count(*) FILTER (WHERE status = 'sent' AND finished_at >= now() - make_interval(secs => $2)) AS recent,
    coalesce(sum(coalesce(parts, 1)) FILTER (WHERE status = 'sent'), 0) AS units,
    coalesce(sum(coalesce(parts, 1)) FILTER (WHERE status = 'sent' AND delivery_status = 'delivered'), 0)
        AS delivered_units
FROM {outbox} WHERE $1::text IS NULL OR coalesce(campaign, '') = $1
GROUP BY 1, 2, 3;

-- name: list_messages
-- A page of rows in the order of the transactions that inserted them, then by id (keyset: after ($6, $1);
-- $6 NULL: after row $1, wherever it sorts), filtered by campaign, status and creation time; only rows of
-- transactions older than the oldest one still running. A transaction that commits later sorts after
-- every row listed so far, so each row is listed exactly once while new ones arrive (by id alone, a row
-- whose id was taken by a transaction that committed after larger ids were listed was skipped).
SELECT id, key, status, recipient, channel, campaign, coalesce(sent_via, provider) AS provider,
    provider_message_id, sent_to, parts, code, error, attempts, priority, created_at, not_before,
    claimed_at, finished_at, delivery_status, delivery_at, created_xid::text AS xid
FROM {outbox}
WHERE (created_xid, id) > (coalesce($6::text::xid8, (SELECT c.created_xid FROM {outbox} c WHERE c.id = $1),
                                     '0'::xid8), $1)
  AND created_xid < pg_snapshot_xmin(pg_current_snapshot())
  AND ($2::text IS NULL OR campaign = $2) AND ($3::text[] IS NULL OR status = ANY($3::text[]))
  AND ($4::timestamptz IS NULL OR created_at >= $4)
ORDER BY created_xid, id
LIMIT $5;

-- name: list_messages_desc
-- The same page newest first (keyset: `id < cursor`): the last failures, read from the top.
SELECT id, key, status, recipient, channel, campaign, coalesce(sent_via, provider) AS provider,
    provider_message_id, sent_to, parts, code, error, attempts, priority, created_at, not_before,
    claimed_at, finished_at, delivery_status, delivery_at
FROM {outbox}
WHERE id < $1 AND ($2::text IS NULL OR campaign = $2) AND ($3::text[] IS NULL OR status = ANY($3::text[]))
  AND ($4::timestamptz IS NULL OR created_at >= $4)
ORDER BY id DESC
LIMIT $5;

-- name: record_results
-- Each result finds its row by primary key (LATERAL ... LIMIT 1: always a probe per result, whatever the
-- statistics say), then the rows are updated by their tuple ids. A plain `UPDATE ... FROM results` join was
-- planned, on a table not analyzed yet, as a scan of every claimed row for each result: seconds per write
-- instead of milliseconds. Results arrive as one JSON array of arrays (orjson: far cheaper than ten typed
-- arrays, whose every element asyncpg checks against collection ABCs, and than JSON objects), and what was
-- written comes back aggregated: counts by provider, status and code, and the insert-to-accept age of sent
-- rows in histogram buckets. The rows' status events are written here (`ev`: what the UPDATE trigger would
-- write for a claimed row become sent, failed or rejected, in the same order, without its join of the old
-- and new rows), with one NOTIFY, and `dispatcher.events_written` tells the trigger so (schema v5); none
-- while that trigger is disabled (ALTER TABLE ... DISABLE TRIGGER: no status events, as before v5).
WITH r AS MATERIALIZED (
    SELECT (e->>0)::bigint AS id, e->>1 AS status, e->>2 AS provider, e->>3 AS sent_to,
        e->>4 AS message_id, (e->>5)::integer AS parts, e->>6 AS code, e->>7 AS error,
        (e->>8)::real AS latency_ms, e->9 AS meta
    FROM jsonb_array_elements($2::jsonb) e),
t AS MATERIALIZED (
    SELECT r.*, x.tid, x.was_via FROM r CROSS JOIN LATERAL (
        SELECT o.ctid AS tid, o.sent_via AS was_via FROM {outbox} o
        WHERE o.id = r.id AND o.worker = $1 AND o.status = 'claimed' LIMIT 1) x),
u AS (
    UPDATE {outbox} o SET status = t.status, finished_at = now(), lease_until = NULL,
        sent_via = NULLIF(t.provider, ''), sent_to = t.sent_to, provider_message_id = t.message_id,
        parts = t.parts, code = t.code, error = t.error, latency_ms = t.latency_ms,
        meta = CASE WHEN jsonb_typeof(t.meta) = 'object' THEN t.meta END
    FROM t WHERE o.ctid = t.tid
    RETURNING o.id, o.key, o.status, o.code, o.error, o.provider_message_id,
        coalesce(o.sent_via, t.was_via, o.provider) AS via, coalesce(o.sent_via, '') AS provider,
        extract(epoch FROM now() - o.created_at)::float8 AS age),
fires AS (  -- the UPDATE trigger is enabled (as it fires, session_replication_role read): else no events
    SELECT 1 FROM pg_trigger g
    WHERE g.tgrelid = '{outbox}'::regclass AND '"' || replace(g.tgname, '"', '""') || '"' = '{name_events_update}'
      AND CASE g.tgenabled WHEN 'A' THEN true
                           WHEN 'O' THEN current_setting('session_replication_role') <> 'replica'
                           WHEN 'R' THEN current_setting('session_replication_role') = 'replica'
                           ELSE false END),
ev AS (
    INSERT INTO {events} (outbox_id, key, status, code, error, provider, message_id)
    SELECT id, key, status, code, error, via, provider_message_id FROM u
    WHERE status IN ('sent', 'failed', 'rejected', 'cancelled') AND EXISTS (SELECT 1 FROM fires)
    ORDER BY id
    RETURNING 1),
told AS (
    SELECT pg_notify('{events_channel}', '{table}'), set_config('dispatcher.events_written', 'on', true)
    WHERE EXISTS (SELECT 1 FROM ev))
SELECT provider, status, coalesce(code, '') AS code,
    CASE WHEN status = 'sent' THEN width_bucket(age, $3::float8[]) END, count(*), sum(age)
FROM u LEFT JOIN told ON true GROUP BY 1, 2, 3, 4;

-- name: release
WITH r AS (
    UPDATE {outbox} SET status = 'pending', worker = NULL, lease_until = NULL,
        attempts = greatest(attempts - 1, 0)
    WHERE worker = $1 AND status = 'claimed' AND lease_until IS NOT NULL RETURNING 1)
SELECT count(*) FROM r;

-- name: reap_abandoned
WITH f AS (UPDATE {outbox} o SET status = 'failed', code = 'abandoned', finished_at = now(),
        lease_until = NULL,
        error = 'claimed ' || attempts || ' times by workers that died before finishing it'
    WHERE lease_until < now() AND status = 'claimed' AND NOT EXISTS (
SELECT 1 FROM {workers} w WHERE w.name = o.worker AND w.heartbeat_at >= now() - make_interval(secs => $1)) AND attempts >= $2 RETURNING 1) SELECT count(*) FROM f;

-- name: reap_released
WITH r AS (UPDATE {outbox} o SET status = 'pending', worker = NULL, lease_until = NULL
    WHERE lease_until < now() AND status = 'claimed' AND NOT EXISTS (
SELECT 1 FROM {workers} w WHERE w.name = o.worker AND w.heartbeat_at >= now() - make_interval(secs => $1)) RETURNING 1) SELECT count(*) FROM r;

-- name: defer
WITH d AS (UPDATE {outbox} SET status = 'pending', worker = NULL, lease_until = NULL,
    attempts = greatest(attempts - 1, 0), not_before = now() + make_interval(secs => $3)
WHERE id = ANY($1::bigint[]) AND worker = $2 AND status = 'claimed' RETURNING 1)
SELECT count(*) FROM d;

-- name: reschedule
WITH lim AS (SELECT * FROM unnest($3::text[], $4::float8[]) AS c(name, secs)),
r AS (UPDATE {outbox} o SET worker = NULL, lease_until = NULL, claimed_at = NULL,
    attempts = greatest(o.attempts - 1, 0), code = $6, error = $7,
    meta = coalesce(o.meta, '{}'::jsonb)
        || jsonb_build_object('retries', coalesce((o.meta->>'retries')::int, 0) + 1),
    status = CASE WHEN o.created_at + make_interval(secs => coalesce(
        (SELECT secs FROM lim WHERE lim.name = o.campaign), $5)) < now() THEN 'failed' ELSE 'pending' END,
    finished_at = CASE WHEN o.created_at + make_interval(secs => coalesce(
        (SELECT secs FROM lim WHERE lim.name = o.campaign), $5)) < now() THEN now() END,
    not_before = now() + make_interval(secs => least($9::float8,
        $8::float8 * power(2, least(coalesce((o.meta->>'retries')::int, 0), 30))) * (0.5 + random() / 2))
WHERE o.id = ANY($1::bigint[]) AND o.worker = $2 AND o.status = 'claimed' RETURNING o.status)
SELECT count(*) FILTER (WHERE status = 'pending') AS rescheduled, count(*) FILTER (WHERE status = 'failed') AS failed
FROM r;

-- name: retry_failed
WITH r AS (UPDATE {outbox} SET status = 'pending', attempts = 0, worker = NULL,
    lease_until = NULL, claimed_at = NULL, finished_at = NULL, code = NULL, error = NULL,
    not_before = now()
WHERE status = 'failed' AND ($1::text IS NULL OR campaign = $1) AND ($2::text IS NULL OR code = $2)
    AND ($3::timestamptz IS NULL OR finished_at >= $3) RETURNING 1)
SELECT count(*) FROM r;

-- name: suppressed
SELECT address, channel FROM {suppressions} WHERE address = ANY($1::text[]);

-- name: depth
SELECT
(SELECT count(*) FROM (SELECT 1 FROM {outbox} WHERE status = 'pending' LIMIT 1000000) p) AS pending,
(SELECT count(*) FROM (SELECT 1 FROM {outbox} WHERE status = 'pending' AND not_before <= now()
                       LIMIT 1000000) d) AS due,
(SELECT count(*) FROM {outbox} WHERE status = 'claimed') AS claimed;

-- name: purge_outbox
WITH d AS (DELETE FROM {outbox} WHERE id IN (
    SELECT id FROM {outbox}
    WHERE id < coalesce((SELECT id FROM {outbox} WHERE created_at >= now() - make_interval(secs => $1)
                         ORDER BY id LIMIT 1), (SELECT max(id) + 1 FROM {outbox}))
      AND status IN ('sent', 'failed', 'rejected', 'cancelled')
    ORDER BY id LIMIT $2) RETURNING 1)
SELECT count(*) FROM d;

-- name: purge_reports
WITH d AS (DELETE FROM {reports} WHERE id IN (
    SELECT id FROM {reports}
    WHERE id < coalesce((SELECT id FROM {reports} WHERE received_at >= now() - make_interval(secs => $1)
                         ORDER BY id LIMIT 1), (SELECT max(id) + 1 FROM {reports}))
    ORDER BY id LIMIT $2) RETURNING 1)
SELECT count(*) FROM d;

-- name: purge_events
-- By tuple id (the events have no primary key, schema v7): the oldest are first in the heap, so the scan
-- stops after a batch.
WITH d AS (DELETE FROM {events} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {events} WHERE at < now() - make_interval(secs => $1)
      AND (NOT $3::boolean OR delivered_at IS NOT NULL OR given_up_at IS NOT NULL)
    LIMIT $2)) RETURNING 1)
SELECT count(*) FROM d;
