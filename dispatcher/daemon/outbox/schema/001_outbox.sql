-- Schema version 1: the outbox, its reports, suppressions and workers. {names} are filled in by schema.py
-- from the configured table ("outbox" or "schema.outbox"); see dispatcher/daemon/outbox/names.py.

CREATE TABLE {outbox} (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    key text,                                                -- optional idempotency key (unique): INSERT ... ON CONFLICT DO NOTHING
    recipient text NOT NULL,                                 -- a phone number (any usual format; [daemon] region) or an email address
    channel text NOT NULL DEFAULT 'sms',                     -- sms, whatsapp, email, voice, rcs
    provider text,                                           -- a provider alias: send through it (else route)
    route text,                                              -- a name in [routes] (else the campaign's route, else the channel's)
    campaign text,                                           -- a name in [campaigns]: sender, subject, options, window, default template
    body text,                                               -- the text as is; or
    template text,                                           -- a template with {variables} and filters ({name|capitalize}); or neither:
    variables jsonb NOT NULL DEFAULT '{}',                   -- the campaign's template; the values for {variables}
    priority smallint NOT NULL DEFAULT 0,                    -- higher first
    not_before timestamptz NOT NULL DEFAULT now(),           -- not sent before
    status text NOT NULL DEFAULT 'pending'                   -- pending, claimed, sent, failed, rejected
        CHECK (status IN ('pending', 'claimed', 'sent', 'failed', 'rejected')),
    attempts integer NOT NULL DEFAULT 0,                     -- claims so far
    worker text,                                             -- the daemon holding (or that finished) the row
    lease_until timestamptz,                                 -- the claim's lease
    claimed_at timestamptz,
    finished_at timestamptz,
    sent_via text,                                           -- the provider alias that took it
    sent_to text,                                            -- the normalised address (E.164; an email with its domain lower-cased)
    provider_message_id text,                                -- the provider's id (delivery reports are matched on it)
    parts integer,                                           -- SMS parts
    code text,                                               -- why it failed / was rejected (provider code, suppressed, ...)
    error text,
    latency_ms real,                                         -- the provider's answer time
    meta jsonb,
    delivery_status text,                                    -- from delivery reports: accepted, sent, delivered, undelivered, read...
    delivery_rank smallint,                                  -- 1 accepted < 2 sent < 3 final < 4 engagement (never goes down)
    delivery_at timestamptz                                  -- the event time of delivery_status
);
CREATE INDEX {name_pending} ON {outbox} (priority DESC, id) WHERE status = 'pending';
CREATE INDEX {name_leased} ON {outbox} (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX {name_message} ON {outbox} (sent_via, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX {name_unbound} ON {outbox} (sent_via, sent_to)
    WHERE status = 'sent' AND provider_message_id IS NULL;
CREATE UNIQUE INDEX {name_key} ON {outbox} (key) WHERE key IS NOT NULL;

CREATE FUNCTION {notify_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$;
CREATE TRIGGER {name_notify} AFTER INSERT ON {outbox}
    FOR EACH STATEMENT EXECUTE FUNCTION {notify_fn}();

-- every delivery report is kept, matched or not, duplicates included (daemon/delivery_reports.py)
CREATE TABLE {reports} (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    provider text NOT NULL,       -- the alias it came for
    message_id text,              -- the provider's message id
    recipient text,               -- normalised (+E.164, email with its domain lower-cased) when the report has one
    status text NOT NULL,         -- accepted, sent, delivered, undelivered, failed, expired, rejected, bounced, read, ...
    rank smallint,                -- 1 accepted < 2 sent < 3 final < 4 engagement; NULL: no bearing on delivery
    provider_status text,         -- as the provider said it (DELIVRD, Delivered, 7...)
    event_at timestamptz,         -- the provider's event time (receive time when it gives none)
    part integer,                 -- SMS part (360nrs reports each part)
    outbox_id bigint,             -- the outbox row; NULL while unmatched
    matched_by text,              -- 'message_id' or 'recipient'
    payload jsonb NOT NULL        -- what was received (without the secret)
);
CREATE INDEX {name_reports_outbox} ON {reports} (outbox_id) WHERE outbox_id IS NOT NULL;
CREATE INDEX {name_reports_message} ON {reports} (provider, message_id);
CREATE INDEX {name_reports_unmatched} ON {reports} (received_at) WHERE outbox_id IS NULL;

CREATE TABLE {suppressions} (
    address text NOT NULL,
    channel text NOT NULL DEFAULT '*',
    reason text,
    source text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (address, channel)
);

-- the live daemons (daemon/heartbeat.py): each provider's rate is split between them
CREATE TABLE {workers} (
    name text PRIMARY KEY,        -- [daemon] worker, default host-pid-random
    host text,
    pid integer,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopping boolean NOT NULL DEFAULT false,
    in_flight integer NOT NULL DEFAULT 0
);
