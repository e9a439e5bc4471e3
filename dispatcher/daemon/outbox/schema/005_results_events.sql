-- Schema version 5: the results statement (queries.sql `record_results`) writes its rows' status events
-- itself, in one INSERT ... SELECT from the rows it updated, and says so for the statement
-- (`dispatcher.events_written`, local to the transaction); the UPDATE trigger then reads that once, clears
-- it and writes nothing for that statement. Every other statement's events are the trigger's, as before.
-- Why: the trigger joins the statement's old and new rows and sorts them to find what changed, where the
-- results statement already knows (a claimed row became sent, failed or rejected): bench/daemon.py's
-- drain with and without status events, and bench/README.md, have the figures.

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
        FROM new_rows ORDER BY id;
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
