-- Every statement the daemon runs on the outbox, one named query each (the way River's driver keeps
-- its queries): `-- name: X` starts one. {names} are the configured tables (see names.py); $n are
-- parameters, in the order the Store method of the same name passes them.

-- name: claim
-- `id = ANY(ARRAY(...))` rather than a join with the locked ids: the planner then always reaches the rows
-- through the primary key (a join was once planned as a hash of the whole table). `opted_out` answers the
-- suppression list for rows whose recipient is stored normalised (E.164, lower-case email domain): only the
-- others need a second look-up, by their normalised address.
UPDATE {outbox} o SET status = 'claimed', worker = $1, lease_until = now() + make_interval(secs => $2),
    claimed_at = now(), attempts = o.attempts + 1
WHERE o.id = ANY(ARRAY(
    SELECT id FROM {outbox}
    WHERE status = 'pending' AND not_before <= now()
      AND (campaign IS NULL OR campaign <> ALL($4::text[]))
      AND (campaign IS NOT NULL OR NOT $5::boolean)
    ORDER BY priority DESC, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED))
RETURNING o.id, o.recipient, o.channel, o.provider, o.route, o.campaign, o.body, o.template, o.variables,
    o.priority,
    EXISTS (SELECT 1 FROM {suppressions} s
            WHERE s.address = o.recipient AND s.channel IN ('*', o.channel)) AS opted_out;

-- name: record_results
-- Each result finds its row by primary key (LATERAL ... LIMIT 1: always a probe per result, whatever the
-- statistics say), then the rows are updated by their tuple ids. A plain `UPDATE ... FROM results` join was
-- planned, on a table not analyzed yet, as a scan of every claimed row for each result: seconds per write
-- instead of milliseconds. Results arrive as one JSON array of arrays (orjson: far cheaper than ten typed
-- arrays, whose every element asyncpg checks against collection ABCs, and than JSON objects), and what was
-- written comes back aggregated: counts by provider, status and code, and the insert-to-accept age of sent
-- rows in histogram buckets.
WITH r AS MATERIALIZED (
    SELECT (e->>0)::bigint AS id, e->>1 AS status, e->>2 AS provider, e->>3 AS sent_to,
        e->>4 AS message_id, (e->>5)::integer AS parts, e->>6 AS code, e->>7 AS error,
        (e->>8)::real AS latency_ms, e->9 AS meta
    FROM jsonb_array_elements($2::jsonb) e),
t AS MATERIALIZED (
    SELECT r.*, x.tid FROM r CROSS JOIN LATERAL (
        SELECT o.ctid AS tid FROM {outbox} o
        WHERE o.id = r.id AND o.worker = $1 AND o.status = 'claimed' LIMIT 1) x),
u AS (
    UPDATE {outbox} o SET status = t.status, finished_at = now(), lease_until = NULL,
        sent_via = NULLIF(t.provider, ''), sent_to = t.sent_to, provider_message_id = t.message_id,
        parts = t.parts, code = t.code, error = t.error, latency_ms = t.latency_ms,
        meta = CASE WHEN jsonb_typeof(t.meta) = 'object' THEN t.meta END
    FROM t WHERE o.ctid = t.tid
    RETURNING o.status, coalesce(o.sent_via, '') AS provider, coalesce(o.code, '') AS code,
        extract(epoch FROM now() - o.created_at)::float8 AS age)
SELECT provider, status, code, CASE WHEN status = 'sent' THEN width_bucket(age, $3::float8[]) END,
    count(*), sum(age)
FROM u GROUP BY 1, 2, 3, 4;

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
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed') FROM r;

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
(SELECT count(*) FROM (SELECT 1 FROM {outbox} WHERE status = 'pending' LIMIT 1000000) p),
(SELECT count(*) FROM (SELECT 1 FROM {outbox} WHERE status = 'pending' AND not_before <= now()
                       LIMIT 1000000) d),
(SELECT count(*) FROM {outbox} WHERE status = 'claimed');

-- name: purge_outbox
WITH d AS (DELETE FROM {outbox} WHERE id IN (
    SELECT id FROM {outbox}
    WHERE id < coalesce((SELECT id FROM {outbox} WHERE created_at >= now() - make_interval(secs => $1)
                         ORDER BY id LIMIT 1), (SELECT max(id) + 1 FROM {outbox}))
      AND status IN ('sent', 'failed', 'rejected')
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
WITH d AS (DELETE FROM {events} WHERE id IN (
    SELECT id FROM {events} WHERE at < now() - make_interval(secs => $1)
      AND (NOT $3::boolean OR delivered_at IS NOT NULL OR given_up_at IS NOT NULL)
    ORDER BY id LIMIT $2) RETURNING 1)
SELECT count(*) FROM d;
