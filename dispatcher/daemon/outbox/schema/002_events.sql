-- Schema version 2: the status events every route produces (webhooks.py delivers them). Statement-level
-- triggers with transition tables write one event per status change, in the statement that changes it,
-- whoever runs it; payload_hash is what an API request with the row's key posted.

ALTER TABLE {outbox} ADD COLUMN payload_hash text;
CREATE TABLE {events} (
    id bigserial PRIMARY KEY,
    outbox_id bigint NOT NULL,
    key text,
    status text NOT NULL,
    code text,
    error text,
    provider text,
    message_id text,
    at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,   -- webhook POSTs that carried it
    delivered_at timestamptz,              -- the webhook receiver answered 2xx
    given_up_at timestamptz                -- older than [webhooks] max_age, never delivered
);
CREATE INDEX {name_events_due} ON {events} (id) WHERE delivered_at IS NULL AND given_up_at IS NULL;

CREATE FUNCTION {events_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE written bigint := 0;
BEGIN
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
            (1, CASE WHEN n.status IN ('sent', 'failed', 'rejected') AND n.status <> o.status THEN n.status
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
CREATE TRIGGER {name_events_insert} AFTER INSERT ON {outbox}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {events_fn}();
CREATE TRIGGER {name_events_update} AFTER UPDATE ON {outbox}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {events_fn}();
