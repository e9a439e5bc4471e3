-- The delivery-report store's statements (reports.py), one named query each; {names} as in queries.sql.

-- name: insert
INSERT INTO {reports} (provider, message_id, recipient, status, rank, provider_status, event_at, part,
                         payload, outbox_id, matched_by)
SELECT r.provider, r.message_id, r.recipient, r.status, r.rank, r.provider_status, r.event_at, r.part,
       r.payload::jsonb, m.id, CASE WHEN m.id IS NOT NULL THEN 'message_id' END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::text[], $7::timestamptz[],
            $8::integer[], $9::text[])
    WITH ORDINALITY AS r(provider, message_id, recipient, status, rank, provider_status, event_at, part,
                         payload, ord)
LEFT JOIN LATERAL (SELECT o.id FROM {outbox} o
                   WHERE o.sent_via = r.provider AND o.provider_message_id = r.message_id
                   ORDER BY o.id DESC LIMIT 1) m ON r.message_id IS NOT NULL
ORDER BY r.ord
RETURNING id, outbox_id;

-- name: bind
WITH u AS (
    SELECT provider, message_id, recipient, min(id) AS first FROM {reports}
    WHERE id = ANY($1::bigint[]) AND outbox_id IS NULL AND message_id IS NOT NULL
      AND recipient IS NOT NULL AND provider = ANY($2::text[]) AND rank IS NOT NULL
    GROUP BY 1, 2, 3),
w AS (SELECT u.*, row_number() OVER (PARTITION BY provider, recipient ORDER BY first) AS k FROM u),
c AS (SELECT o.id, o.sent_via, o.sent_to,
             row_number() OVER (PARTITION BY o.sent_via, o.sent_to ORDER BY o.id) AS k
      FROM {outbox} o
      WHERE o.status = 'sent' AND o.provider_message_id IS NULL
        AND (o.sent_via, o.sent_to) IN (SELECT provider, recipient FROM w)),
b AS (UPDATE {outbox} o SET provider_message_id = w.message_id
      FROM w JOIN c ON c.sent_via = w.provider AND c.sent_to = w.recipient AND c.k = w.k
      WHERE o.id = c.id RETURNING o.id, o.sent_via, o.provider_message_id)
UPDATE {reports} r SET outbox_id = b.id, matched_by = 'recipient' FROM b
WHERE r.outbox_id IS NULL AND r.provider = b.sent_via AND r.message_id = b.provider_message_id
RETURNING r.id, r.outbox_id;

-- name: derive
UPDATE {outbox} o SET delivery_status = b.status, delivery_rank = b.rank, delivery_at = b.event_at
FROM (SELECT DISTINCT ON (outbox_id) outbox_id, status, rank, event_at FROM {reports}
      WHERE outbox_id = ANY($1::bigint[]) AND rank IS NOT NULL
      ORDER BY outbox_id, rank DESC, event_at DESC, id DESC) b
WHERE o.id = b.outbox_id
  AND (o.delivery_rank IS NULL OR b.rank > o.delivery_rank
       OR (b.rank = o.delivery_rank AND b.event_at >= o.delivery_at))
  AND (o.delivery_status IS DISTINCT FROM b.status OR o.delivery_at IS DISTINCT FROM b.event_at);

-- name: suppress
INSERT INTO {suppressions} (address, channel, reason, source)
SELECT DISTINCT ON (a.address) a.address, '*', r.status, r.provider
FROM {reports} r LEFT JOIN {outbox} o ON o.id = r.outbox_id
CROSS JOIN LATERAL (SELECT coalesce(o.sent_to, r.recipient) AS address) a
WHERE r.id = ANY($1::bigint[]) AND r.status = ANY($2::text[]) AND a.address IS NOT NULL
ORDER BY a.address, r.id
ON CONFLICT DO NOTHING
RETURNING address;

-- name: rematch
-- each unmatched report probes the outbox by its message id (LATERAL ... LIMIT 1), whatever the
-- statistics say about either table; the reports are then updated by tuple id
WITH m AS MATERIALIZED (
    SELECT r.ctid AS tid, x.oid FROM {reports} r
    CROSS JOIN LATERAL (SELECT o.id AS oid FROM {outbox} o
                        WHERE o.sent_via = r.provider AND o.provider_message_id = r.message_id
                        ORDER BY o.id DESC LIMIT 1) x
    WHERE r.outbox_id IS NULL AND r.received_at > now() - make_interval(secs => $1)
      AND r.message_id IS NOT NULL)
UPDATE {reports} r SET outbox_id = m.oid, matched_by = 'message_id'
FROM m WHERE r.ctid = m.tid AND r.outbox_id IS NULL
RETURNING r.id, r.outbox_id;

-- name: unmatched
SELECT id FROM {reports}
WHERE outbox_id IS NULL AND received_at > now() - make_interval(secs => $1) AND provider = ANY($2::text[])
ORDER BY id LIMIT 20000;
