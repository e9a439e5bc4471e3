-- Schema version 7: an event costs its table two index entries fewer, and a queued row no sort.
-- - The primary key goes: event ids come from the table's own sequence, unique by construction, and
--   every look-up has an index of its own: a message's events (views.py) and those after an id (the SQL
--   reader's `id > $last`), by the BRIN index, now on (outbox_id, id) at the cost of one on outbox_id;
--   the undelivered ones (webhooks.py), by the due index; old ones (the cleaner), by tuple id.
-- - The due index goes from the schema to the webhooks: the first daemon that delivers them builds it
--   (webhooks.py `DUE_INDEX`), so an outbox without webhooks does not index every event for them.
-- - The insert trigger writes a statement's `queued` events in the order it inserted the rows, unsorted:
--   a message has one, so nothing of theirs can be out of order.
-- Why: every status change writes an event. PostgreSQL time to insert 100,000 of them: 1.4 us each with
-- no index, +1.0 us for the due index, +0.9 us for the key; `python -m bench.daemon_events` has the drain.

ALTER TABLE {events} DROP CONSTRAINT {name_events_pkey};
DROP INDEX {events_due};
DROP INDEX {events_message};
CREATE INDEX {name_events_message} ON {events} USING brin (outbox_id, id) WITH (pages_per_range = 16, autosummarize = on);

CREATE OR REPLACE FUNCTION {events_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE written bigint := 0;
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('dispatcher.events_written', true) = 'on' THEN
        PERFORM set_config('dispatcher.events_written', '', true);  -- the statement wrote its own (record_results)
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {events} (outbox_id, key, status, code, error, provider)
        SELECT id, key, CASE status WHEN 'pending' THEN 'queued' ELSE status END, code, error, provider
        FROM new_rows;
        GET DIAGNOSTICS written = ROW_COUNT;
    ELSIF EXISTS (SELECT 1 FROM new_rows WHERE status <> 'claimed') THEN  -- a claim changes nothing to say
        INSERT INTO {events} (outbox_id, key, status, code, error, provider, message_id)
        SELECT n.id, n.key, e.status, e.code, CASE WHEN e.k = 1 THEN n.error END, e.provider,
               CASE WHEN e.status <> 'deferred' THEN n.provider_message_id END
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (VALUES
            (1, CASE WHEN n.status IN ('sent', 'failed', 'rejected', 'cancelled') AND n.status <> o.status
                     THEN n.status
                     WHEN o.status = 'claimed' AND n.status = 'pending' AND n.not_before > o.not_before
                     THEN 'deferred' END,
             n.code, coalesce(n.sent_via, o.sent_via, n.provider)),
            (2, CASE WHEN n.delivery_rank >= 3 AND n.delivery_status IS DISTINCT FROM o.delivery_status
                     THEN CASE WHEN n.delivery_rank = 4 OR n.delivery_status = 'delivered'
                               THEN n.delivery_status ELSE 'undelivered' END END,
             CASE WHEN n.delivery_rank = 3 AND n.delivery_status <> 'delivered' THEN n.delivery_status END,
             n.sent_via)
        ) AS e(k, status, code, provider)
        WHERE e.status IS NOT NULL
        ORDER BY n.id, e.k;
        GET DIAGNOSTICS written = ROW_COUNT;
    END IF;
    IF written > 0 THEN
        PERFORM pg_notify('{events_channel}', '{table}');
    END IF;
    RETURN NULL;
END $$;
