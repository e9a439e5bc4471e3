-- Schema version 3: control of what is queued. The `cancelled` status; the campaigns table, whose `state`
-- (active, paused, cancelled) every claim reads and whose `weight` sets a campaign's share of a provider;
-- the index the fair-share claim walks (one campaign at a time, highest priority first).
-- The same operations from SQL as over HTTP:
--   UPDATE {campaigns} SET state = 'paused' WHERE name = 'spring';       -- or INSERT ... ON CONFLICT
--   UPDATE {campaigns} SET state = 'cancelled' WHERE name = 'spring';    -- its queued rows: cancelled
-- A row's campaign NULL is the campaign '' here.

ALTER TABLE {outbox} DROP CONSTRAINT IF EXISTS {name_status_check};
ALTER TABLE {outbox} ADD CONSTRAINT {name_status_check}
    CHECK (status IN ('pending', 'claimed', 'sent', 'failed', 'rejected', 'cancelled'));
CREATE INDEX {name_fair} ON {outbox} ((coalesce(campaign, '')), priority DESC, id) WHERE status = 'pending';

CREATE TABLE {campaigns} (
    name text PRIMARY KEY,                                    -- a name in [campaigns]; '' for rows without one
    state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'cancelled')),
    weight integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),  -- its share: weight / sum of the active
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A cancel turns the campaign's queued rows into `cancelled` in the statement that cancels it, whoever
-- runs it; every change NOTIFYs the daemons (they also read the table at every claim).
CREATE FUNCTION {control_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        IF NEW.state = 'cancelled' THEN
            UPDATE {outbox} SET status = 'cancelled', code = 'cancelled', error = 'the campaign was cancelled',
                finished_at = now(), lease_until = NULL
            WHERE coalesce(campaign, '') = NEW.name AND status = 'pending';
        END IF;
        RETURN NULL;
    END IF;
    PERFORM pg_notify('{control}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER {name_control_rows} AFTER INSERT OR UPDATE OF state ON {campaigns}
    FOR EACH ROW EXECUTE FUNCTION {control_fn}();
CREATE TRIGGER {name_control} AFTER INSERT OR UPDATE OR DELETE ON {campaigns}
    FOR EACH STATEMENT EXECUTE FUNCTION {control_fn}();

-- The status events of 002_events.sql, with `cancelled` among the final statuses.
CREATE OR REPLACE FUNCTION {events_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
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
