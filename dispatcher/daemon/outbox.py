"""The outbox: its tables, claims with leases, and the Source and Sink that put it on the Engine.

Applications insert rows; daemons claim them (`FOR UPDATE SKIP LOCKED`, so several
processes or hosts share one table and no row goes to two of them), send them through the
Engine (its batching, rate limits, retries and failover), and record each row's one result
on the row itself. Tables, for `table = "outbox"` (the names follow `table`, which may be
`schema.name`); created on first start (versioned, see `pg.migrate`)::

    CREATE TABLE outbox (
        id          bigserial PRIMARY KEY,
        created_at  timestamptz NOT NULL DEFAULT now(),
        key         text,                 -- optional idempotency key (unique): INSERT ... ON CONFLICT DO NOTHING
        recipient   text NOT NULL,        -- a phone number (any usual format; [daemon] region) or an email address
        channel     text NOT NULL DEFAULT 'sms',   -- sms, whatsapp, email, voice, rcs
        provider    text,                 -- a provider alias: send through it (else route)
        route       text,                 -- a name in [routes] (else the campaign's route, else the channel's)
        campaign    text,                 -- a name in [campaigns]: sender, subject, options, window, default template
        body        text,                 -- the text as is; or
        template    text,                 -- a template with {variables} and filters ({name|capitalize}); or neither:
        variables   jsonb NOT NULL DEFAULT '{}',   -- the campaign's template; the values for {variables}
        priority    smallint NOT NULL DEFAULT 0,   -- higher first
        not_before  timestamptz NOT NULL DEFAULT now(),  -- not sent before
        status      text NOT NULL DEFAULT 'pending',  -- pending, claimed, sent, failed, rejected
        attempts    integer NOT NULL DEFAULT 0,   -- claims so far
        worker      text,                 -- the daemon holding (or that finished) the row
        lease_until timestamptz,          -- the claim's lease
        claimed_at  timestamptz,
        finished_at timestamptz,
        sent_via    text,                 -- the provider alias that took it
        sent_to     text,                 -- the normalised address (E.164, lower-case email)
        provider_message_id text,         -- the provider's id (delivery reports are matched on it)
        parts       integer,              -- SMS parts
        code        text,                 -- why it failed / was rejected (provider code, suppressed, ...)
        error       text,
        latency_ms  real,                 -- the provider's answer time
        meta        jsonb,
        delivery_status text,             -- from delivery reports: accepted, sent, delivered, undelivered, read...
        delivery_rank   smallint,         -- 1 accepted < 2 sent < 3 final < 4 engagement (never goes down)
        delivery_at     timestamptz       -- the event time of delivery_status
    );

plus `outbox_reports` (reports.py), `outbox_suppressions (address, channel, reason, source,
created_at)` and `outbox_workers` (workers.py). A statement-level trigger NOTIFYs channel
`outbox_new` (the table name with '.' as '_', plus `_new`) on every INSERT; daemons LISTEN
and also poll every `poll` seconds.

Claims and leases: a claim sets `status='claimed', worker, lease_until = now() + lease`.
A live worker (heartbeating in `outbox_workers`) keeps its claims however long they take
(retries with backoff, a slow provider); when a worker stops heartbeating for `dead_after`
seconds, its claims whose lease has ended go back to `pending` (another worker sends them:
at-least-once for the requests that were on the wire when it died), and a row that has
been claimed `max_claims` times by workers that all died is `failed` with code
`abandoned` (a poison row must not kill workers forever). A graceful stop puts its
unfinished claims back at once. Results are written only while the row is still claimed
by this worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from .. import codecs
from ..address import normalize_email
from ..engine import Engine, Finisher, Prepared
from ..errors import ConfigError, SinkError
from ..model import REJECTED, Chunk, Content, Message, Result, Results
from ..pg import RETRY, Retry, explain, ident, qualified, retrying
from ..phone import to_e164
from ..providers.base import Provider
from ..render import Template, TemplateError, compile_template
from ..sinks.base import Sink
from ..sources.base import Source
from .config import CampaignSpec, DaemonConfig

log = logging.getLogger("dispatcher.daemon")
BODY = compile_template("{body}")  # the engine's template: each row brings its own text
PROVIDER_TEMPLATES = frozenset({"template", "template_id", "template_name"})  # options naming a stored template
OPTED_OUT = "the recipient opted out (suppression list); not sent"
DEFER = 30.0  # seconds a row for a halted provider waits before it is claimed again
Claimed = tuple[list[int], list[dict[str, Any]]]  # claimed rows to send: their outbox ids and fields, as columns


class Names:
    """Quoted table, index and channel names derived from `table` ("outbox" or "schema.outbox")."""

    def __init__(self, table: str) -> None:
        self.schema, _, base = table.rpartition(".")
        self.base = base
        prefix = f"{ident(self.schema)}." if self.schema else ""
        self.outbox = qualified(table)
        self.reports = prefix + ident(base + "_reports")
        self.suppressions = prefix + ident(base + "_suppressions")
        self.workers = prefix + ident(base + "_workers")
        self.events = prefix + ident(base + "_events")
        self.events_fn = prefix + ident(base + "_events_fn")
        self.table = table
        self.notify_fn = prefix + ident(base + "_notify")
        self.channel = table.replace(".", "_") + "_new"
        self.migration = f"daemon:{table}"

    def index(self, suffix: str) -> str:
        return ident(f"{self.base}_{suffix}")


def schema_sql(n: Names) -> str:
    """The DDL of schema version 1 (what `dispatcher daemon FILE --print-schema` shows)."""
    return f"""
            CREATE TABLE {n.outbox} (
                id bigserial PRIMARY KEY,
                created_at timestamptz NOT NULL DEFAULT now(),
                key text,
                recipient text NOT NULL,
                channel text NOT NULL DEFAULT 'sms',
                provider text,
                route text,
                campaign text,
                body text,
                template text,
                variables jsonb NOT NULL DEFAULT '{{}}',
                priority smallint NOT NULL DEFAULT 0,
                not_before timestamptz NOT NULL DEFAULT now(),
                status text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'claimed', 'sent', 'failed', 'rejected')),
                attempts integer NOT NULL DEFAULT 0,
                worker text,
                lease_until timestamptz,
                claimed_at timestamptz,
                finished_at timestamptz,
                sent_via text,
                sent_to text,
                provider_message_id text,
                parts integer,
                code text,
                error text,
                latency_ms real,
                meta jsonb,
                delivery_status text,
                delivery_rank smallint,
                delivery_at timestamptz
            );
            CREATE INDEX {n.index("pending")} ON {n.outbox} (priority DESC, id) WHERE status = 'pending';
            CREATE INDEX {n.index("leased")} ON {n.outbox} (lease_until) WHERE lease_until IS NOT NULL;
            CREATE INDEX {n.index("message")} ON {n.outbox} (sent_via, provider_message_id)
                WHERE provider_message_id IS NOT NULL;
            CREATE INDEX {n.index("unbound")} ON {n.outbox} (sent_via, sent_to)
                WHERE status = 'sent' AND provider_message_id IS NULL;
            CREATE UNIQUE INDEX {n.index("key")} ON {n.outbox} (key) WHERE key IS NOT NULL;

            CREATE FUNCTION {n.notify_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{n.channel}', ''); RETURN NULL; END $$;
            CREATE TRIGGER {ident(n.base + "_notify")} AFTER INSERT ON {n.outbox}
                FOR EACH STATEMENT EXECUTE FUNCTION {n.notify_fn}();

            CREATE TABLE {n.reports} (
                id bigserial PRIMARY KEY,
                received_at timestamptz NOT NULL DEFAULT now(),
                provider text NOT NULL,
                message_id text,
                recipient text,
                status text NOT NULL,
                rank smallint,
                provider_status text,
                event_at timestamptz,
                part integer,
                outbox_id bigint,
                matched_by text,
                payload jsonb NOT NULL
            );
            CREATE INDEX {n.index("reports_outbox")} ON {n.reports} (outbox_id) WHERE outbox_id IS NOT NULL;
            CREATE INDEX {n.index("reports_message")} ON {n.reports} (provider, message_id);
            CREATE INDEX {n.index("reports_unmatched")} ON {n.reports} (received_at) WHERE outbox_id IS NULL;

            CREATE TABLE {n.suppressions} (
                address text NOT NULL,
                channel text NOT NULL DEFAULT '*',
                reason text,
                source text,
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (address, channel)
            );

            CREATE TABLE {n.workers} (
                name text PRIMARY KEY,
                host text,
                pid integer,
                started_at timestamptz NOT NULL DEFAULT now(),
                heartbeat_at timestamptz NOT NULL DEFAULT now(),
                stopping boolean NOT NULL DEFAULT false,
                in_flight integer NOT NULL DEFAULT 0
            );
"""


EVENTS_CHANNEL = "dispatcher_events"  # NOTIFY channel: payload the outbox table's name, once per statement


def events_sql(n: Names) -> str:
    """Schema version 2: the status events every route produces (webhooks.py delivers them).

    Statement-level triggers with transition tables write one event per status change, in the
    statement that changes it, whoever runs it (the API, an application's SQL, the daemon's
    results, the report matcher, the reaper): queued on insert; sent, failed, rejected when a
    row finishes; deferred when a claimed row goes back to pending later than it was due; and
    delivered, undelivered (code: the report's status) or an engagement (read, opened, clicked)
    when a delivery report settles the row. `payload_hash` is what an API request with the row's
    key posted (a re-post with another payload is refused).
    """
    return f"""
            ALTER TABLE {n.outbox} ADD COLUMN payload_hash text;
            CREATE TABLE {n.events} (
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
            CREATE INDEX {n.index("events_due")} ON {n.events} (id) WHERE delivered_at IS NULL AND given_up_at IS NULL;

            CREATE FUNCTION {n.events_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE written bigint := 0;
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    INSERT INTO {n.events} (outbox_id, key, status, code, error, provider)
                    SELECT id, key, CASE status WHEN 'pending' THEN 'queued' ELSE status END, code, error, provider
                    FROM new_rows ORDER BY id;
                    GET DIAGNOSTICS written = ROW_COUNT;
                ELSIF EXISTS (SELECT 1 FROM new_rows WHERE status <> 'claimed') THEN  -- a claim changes nothing to say
                    INSERT INTO {n.events} (outbox_id, key, status, code, error, provider, message_id)
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
                    PERFORM pg_notify('{EVENTS_CHANNEL}', '{n.table}');
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER {ident(n.base + "_events_insert")} AFTER INSERT ON {n.outbox}
                REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {n.events_fn}();
            CREATE TRIGGER {ident(n.base + "_events_update")} AFTER UPDATE ON {n.outbox}
                REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {n.events_fn}();
"""


def migrations(n: Names) -> list[Callable[[asyncpg.Connection], Any]]:
    async def v1(conn: asyncpg.Connection) -> None:
        if n.schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(n.schema)}")
        await conn.execute(schema_sql(n))

    async def v2(conn: asyncpg.Connection) -> None:
        await conn.execute(events_sql(n))
    return [v1, v2]


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                              schema="pg_catalog")


class Store:
    """Every statement on the outbox, each one round trip, set-based."""

    def __init__(self, cfg: DaemonConfig, names: Names) -> None:
        self.cfg = cfg
        self.n = n = names
        # `id = ANY(ARRAY(...))` rather than a join with the locked ids: the planner then always reaches
        # the rows through the primary key (a join was once planned as a hash of the whole table).
        # `opted_out` answers the suppression list for rows whose recipient is stored normalised (E.164,
        # lower-case email): only the others need a second look-up, by their normalised address.
        self.claim_sql = f"""
            UPDATE {n.outbox} o SET status = 'claimed', worker = $1, lease_until = now() + make_interval(secs => $2),
                claimed_at = now(), attempts = o.attempts + 1
            WHERE o.id = ANY(ARRAY(
                SELECT id FROM {n.outbox}
                WHERE status = 'pending' AND not_before <= now()
                  AND (campaign IS NULL OR campaign <> ALL($4::text[]))
                  AND (campaign IS NOT NULL OR NOT $5::boolean)
                ORDER BY priority DESC, id
                LIMIT $3
                FOR UPDATE SKIP LOCKED))
            RETURNING o.id, o.recipient, o.channel, o.provider, o.route, o.campaign, o.body, o.template, o.variables,
                EXISTS (SELECT 1 FROM {n.suppressions} s
                        WHERE s.address = o.recipient AND s.channel IN ('*', o.channel)) AS opted_out"""
        # Each result finds its row by primary key (LATERAL ... LIMIT 1: always a probe per result, whatever
        # the statistics say), then the rows are updated by their tuple ids. A plain `UPDATE ... FROM results`
        # join was planned, on a table not analyzed yet, as a scan of every claimed row for each result:
        # seconds per write instead of milliseconds.
        # Results arrive as one JSON array of arrays (orjson: far cheaper than ten typed arrays, whose every
        # element asyncpg checks against collection ABCs, and than JSON objects), and what was written comes
        # back aggregated: counts by provider, status and code, and the insert-to-accept age of sent rows in
        # histogram buckets.
        self.result_sql = f"""
            WITH r AS MATERIALIZED (
                SELECT (e->>0)::bigint AS id, e->>1 AS status, e->>2 AS provider, e->>3 AS sent_to,
                    e->>4 AS message_id, (e->>5)::integer AS parts, e->>6 AS code, e->>7 AS error,
                    (e->>8)::real AS latency_ms, e->9 AS meta
                FROM jsonb_array_elements($2::jsonb) e),
            t AS MATERIALIZED (
                SELECT r.*, x.tid FROM r CROSS JOIN LATERAL (
                    SELECT o.ctid AS tid FROM {n.outbox} o
                    WHERE o.id = r.id AND o.worker = $1 AND o.status = 'claimed' LIMIT 1) x),
            u AS (
                UPDATE {n.outbox} o SET status = t.status, finished_at = now(), lease_until = NULL,
                    sent_via = NULLIF(t.provider, ''), sent_to = t.sent_to, provider_message_id = t.message_id,
                    parts = t.parts, code = t.code, error = t.error, latency_ms = t.latency_ms,
                    meta = CASE WHEN jsonb_typeof(t.meta) = 'object' THEN t.meta END
                FROM t WHERE o.ctid = t.tid
                RETURNING o.status, coalesce(o.sent_via, '') AS provider, coalesce(o.code, '') AS code,
                    extract(epoch FROM now() - o.created_at)::float8 AS age)
            SELECT provider, status, code, CASE WHEN status = 'sent' THEN width_bucket(age, $3::float8[]) END,
                count(*), sum(age)
            FROM u GROUP BY 1, 2, 3, 4"""
        self.release_sql = f"""
            WITH r AS (
                UPDATE {n.outbox} SET status = 'pending', worker = NULL, lease_until = NULL,
                    attempts = greatest(attempts - 1, 0)
                WHERE worker = $1 AND status = 'claimed' AND lease_until IS NOT NULL RETURNING 1)
            SELECT count(*) FROM r"""

    async def migrate(self, conn: asyncpg.Connection) -> int:
        from ..pg import migrate
        return await migrate(conn, self.n.migration, migrations(self.n))

    async def claim(self, conn: asyncpg.Connection, n: int, closed: list[str], default_closed: bool) -> list[Any]:
        return await conn.fetch(self.claim_sql, self.cfg.worker, float(self.cfg.lease), n, closed, default_closed)

    async def release(self, conn: asyncpg.Connection) -> int:
        """This worker's unfinished claims back to pending (a graceful stop)."""
        count = await conn.fetchval(self.release_sql, self.cfg.worker)
        if count:
            await conn.execute("SELECT pg_notify($1, '')", self.n.channel)
        return int(count or 0)

    async def reap(self, conn: asyncpg.Connection) -> tuple[int, int]:
        """Claims of dead workers whose lease ended: back to pending, or failed when claimed too often."""
        n, dead = self.n, float(self.cfg.dead_after)
        orphan = f"""lease_until < now() AND status = 'claimed' AND NOT EXISTS (
            SELECT 1 FROM {n.workers} w WHERE w.name = o.worker AND w.heartbeat_at >= now() - make_interval(secs => $1))"""
        async with conn.transaction():
            failed = await conn.fetchval(f"""
                WITH f AS (UPDATE {n.outbox} o SET status = 'failed', code = 'abandoned', finished_at = now(),
                    lease_until = NULL,
                    error = 'claimed ' || attempts || ' times by workers that died before finishing it'
                WHERE {orphan} AND attempts >= $2 RETURNING 1) SELECT count(*) FROM f""", dead, self.cfg.max_claims)
            released = await conn.fetchval(f"""
                WITH r AS (UPDATE {n.outbox} o SET status = 'pending', worker = NULL, lease_until = NULL
                WHERE {orphan} RETURNING 1) SELECT count(*) FROM r""", dead)
            if released:
                await conn.execute("SELECT pg_notify($1, '')", n.channel)
        return int(released or 0), int(failed or 0)

    async def defer(self, conn: asyncpg.Connection, ids: list[int], seconds: float) -> int:
        return int(await conn.fetchval(f"""
            WITH d AS (UPDATE {self.n.outbox} SET status = 'pending', worker = NULL, lease_until = NULL,
                attempts = greatest(attempts - 1, 0), not_before = now() + make_interval(secs => $3)
            WHERE id = ANY($1::bigint[]) AND worker = $2 AND status = 'claimed' RETURNING 1)
            SELECT count(*) FROM d""", ids, self.cfg.worker, float(seconds)) or 0)

    async def reschedule(self, conn: asyncpg.Connection, ids: list[int], code: str | None, error: str | None
                         ) -> tuple[int, int]:
        """Rows whose send failed for now (5xx, timeouts, 429s past the lane's own attempts): back to pending
        with exponential backoff and jitter, holding no claim meanwhile; a row older than its campaign's
        `retry_for` fails instead, with the last code. Returns (rescheduled, failed)."""
        cfg = self.cfg
        names = [name for name, c in cfg.campaigns.items() if c.retry_for is not None]
        secs = [float(cfg.campaigns[name].retry_for or 0) for name in names]
        default = float(cfg.defaults.retry_for if cfg.defaults.retry_for is not None else cfg.retry_for)
        row = await conn.fetchrow(f"""
            WITH lim AS (SELECT * FROM unnest($3::text[], $4::float8[]) AS c(name, secs)),
            r AS (UPDATE {self.n.outbox} o SET worker = NULL, lease_until = NULL, claimed_at = NULL,
                attempts = greatest(o.attempts - 1, 0), code = $6, error = $7,
                meta = coalesce(o.meta, '{{}}'::jsonb)
                    || jsonb_build_object('retries', coalesce((o.meta->>'retries')::int, 0) + 1),
                status = CASE WHEN o.created_at + make_interval(secs => coalesce(
                    (SELECT secs FROM lim WHERE lim.name = o.campaign), $5)) < now() THEN 'failed' ELSE 'pending' END,
                finished_at = CASE WHEN o.created_at + make_interval(secs => coalesce(
                    (SELECT secs FROM lim WHERE lim.name = o.campaign), $5)) < now() THEN now() END,
                not_before = now() + make_interval(secs => least($9::float8,
                    $8::float8 * power(2, least(coalesce((o.meta->>'retries')::int, 0), 30))) * (0.5 + random() / 2))
            WHERE o.id = ANY($1::bigint[]) AND o.worker = $2 AND o.status = 'claimed' RETURNING o.status)
            SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed') FROM r""",
            ids, cfg.worker, names, secs, default, code, error, float(cfg.retry_base), float(cfg.retry_max))
        return int(row[0] or 0), int(row[1] or 0)

    async def retry_failed(self, conn: asyncpg.Connection, campaign: str | None = None, code: str | None = None,
                           since: dt.datetime | None = None) -> int:
        """Failed rows back to pending, to be sent again (by campaign, by the provider's code, failed since a
        time). Rejected rows stay: they are bad input. Returns how many."""
        return int(await conn.fetchval(f"""
            WITH r AS (UPDATE {self.n.outbox} SET status = 'pending', attempts = 0, worker = NULL,
                lease_until = NULL, claimed_at = NULL, finished_at = NULL, code = NULL, error = NULL,
                not_before = now()
            WHERE status = 'failed' AND ($1::text IS NULL OR campaign = $1) AND ($2::text IS NULL OR code = $2)
                AND ($3::timestamptz IS NULL OR finished_at >= $3) RETURNING 1)
            SELECT count(*) FROM r""", campaign, code, since) or 0)

    async def suppressed(self, conn: asyncpg.Connection, addresses: list[str]) -> dict[str, set[str]]:
        rows = await conn.fetch(f"SELECT address, channel FROM {self.n.suppressions} WHERE address = ANY($1::text[])",
                                addresses)
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r[0], set()).add(r[1])
        return out

    async def depth(self, conn: asyncpg.Connection) -> dict[str, int]:
        n = self.n
        row = await conn.fetchrow(f"""SELECT
            (SELECT count(*) FROM (SELECT 1 FROM {n.outbox} WHERE status = 'pending' LIMIT 1000000) p),
            (SELECT count(*) FROM (SELECT 1 FROM {n.outbox} WHERE status = 'pending' AND not_before <= now()
                                   LIMIT 1000000) d),
            (SELECT count(*) FROM {n.outbox} WHERE status = 'claimed')""")
        return {"pending": row[0], "due": row[1], "claimed": row[2]}

    async def purge(self, conn: asyncpg.Connection, days: float, limit: int = 10000) -> int:
        """Rows created and reports received more than `days` ago (finished rows only): a bounded batch a call.

        Ids grow with time, so the first id past the cutoff bounds the scan: a purge that finds nothing
        reads a few index pages, not the table.
        """
        n = self.n
        gone = await conn.fetchval(f"""WITH d AS (DELETE FROM {n.outbox} WHERE id IN (
                SELECT id FROM {n.outbox}
                WHERE id < coalesce((SELECT id FROM {n.outbox} WHERE created_at >= now() - make_interval(secs => $1)
                                     ORDER BY id LIMIT 1), (SELECT max(id) + 1 FROM {n.outbox}))
                  AND status IN ('sent', 'failed', 'rejected')
                ORDER BY id LIMIT $2) RETURNING 1)
            SELECT count(*) FROM d""", days * 86400.0, limit)
        gone += await conn.fetchval(f"""WITH d AS (DELETE FROM {n.reports} WHERE id IN (
                SELECT id FROM {n.reports}
                WHERE id < coalesce((SELECT id FROM {n.reports} WHERE received_at >= now() - make_interval(secs => $1)
                                     ORDER BY id LIMIT 1), (SELECT max(id) + 1 FROM {n.reports}))
                ORDER BY id LIMIT $2) RETURNING 1)
            SELECT count(*) FROM d""", days * 86400.0, limit)
        return int(gone)

    async def purge_events(self, conn: asyncpg.Connection, days: float, limit: int = 10000) -> int:
        """Events older than `days`: delivered or given up ones when webhooks are on, all of them when off."""
        n = self.n
        return int(await conn.fetchval(f"""WITH d AS (DELETE FROM {n.events} WHERE id IN (
                SELECT id FROM {n.events} WHERE at < now() - make_interval(secs => $1)
                  AND (NOT $3::boolean OR delivered_at IS NOT NULL OR given_up_at IS NOT NULL)
                ORDER BY id LIMIT $2) RETURNING 1)
            SELECT count(*) FROM d""", days * 86400.0, limit, self.cfg.webhooks is not None) or 0)




class Rows:
    """Claimed rows into engine records: campaign, route, address, text, content; or a rejected result."""

    def __init__(self, cfg: DaemonConfig, providers: Mapping[str, Provider] | None = None) -> None:
        self.cfg = cfg
        self._templates: dict[str, Template | TemplateError] = {}
        self._contents: dict[tuple[str, str], Content | ConfigError] = {}
        self._engine_providers = providers if providers is not None else {}  # the engine's, once built
        self._providers: dict[str, Provider] = {}  # built here only where the engine's are not at hand

    def content(self, c: CampaignSpec, channel: str, alias: str) -> Content:
        """The campaign's content as `alias` will send it, checked by that provider once (sender rules,
        template ids...): a campaign the provider would refuse for every row raises ConfigError, so its
        rows are rejected before anything is sent."""
        key = (c.name, alias)
        content = self._contents.get(key)
        if content is None:
            provider = self._engine_providers.get(alias) or self._providers.get(alias)
            if provider is None:
                provider = self._providers[alias] = self.cfg.providers[alias].build()
            try:
                content = provider.validate(channel, Content(channel, BODY, c.sender, c.subject, dict(c.options)))
            except ConfigError as e:
                content = e
            self._contents[key] = content
        if isinstance(content, ConfigError):
            raise content
        return content

    def template(self, source: str) -> Template:
        t = self._templates.get(source)
        if t is None:
            if len(self._templates) >= 1024:
                self._templates.clear()
            try:
                t = compile_template(source)
            except TemplateError as e:
                t = e
            self._templates[source] = t
        if isinstance(t, TemplateError):
            raise t
        return t

    def check(self, raw: str, channel: str, alias: str | None, route: str | None, campaign: str | None,
              body: str | None, template: str | None, variables: Any) -> tuple[str, str, dict[str, Any]] | Problem:
        """One row's (address, provider alias, fields with the rendered body), or the Problem that rejects it.

        The one validator of outbox rows: the claim path (`build`) rejects with it what applications wrote
        in SQL, and the HTTP API refuses with it before storing, so both routes accept exactly the same rows.
        """
        cfg = self.cfg
        c = cfg.campaigns.get(campaign) if campaign else cfg.defaults
        if c is None:
            return Problem("unknown_campaign", "campaign", f"no campaign '{campaign}' in the daemon's configuration",
                           raw)
        region = cfg.region
        to = normalize_email(raw) if channel == "email" else to_e164(raw, region)
        if to is None:
            return Problem("invalid_address" if channel == "email" else "invalid_number", "to",
                           f"'{raw}' is not {'an email address' if channel == 'email' else 'a valid phone number'}"
                           + (f" (default region {region})" if region and channel != "email" else ""), raw)
        alias = alias or c.provider
        if alias is None:
            name = route or c.route or channel
            r = cfg.routes.get(name)
            alias = r.pick(to) if r is not None else None
            if alias is None:
                return Problem("no_route", "route" if route else "channel", f"no provider for route '{name}'", to)
        spec = cfg.providers.get(alias)
        if spec is None:
            return Problem("no_route", "provider", f"no provider named '{alias}'", to)
        if spec.channel != channel:
            return Problem("channel_mismatch", "channel", f"provider '{alias}' carries {spec.channel}, not {channel}",
                           to, alias)
        fields = dict(variables) if type(variables) is dict else {}
        if body is None:
            try:
                t = self.template(template) if template is not None else c.template
            except TemplateError as e:
                return Problem("bad_template", "template", str(e), to, alias)
            if t is not None:
                try:
                    body = t.render(fields)
                except KeyError as e:
                    return Problem("missing_variable", "variables",
                                   f"template variable '{e.args[0]}' has no value in this row", to, alias)
            elif channel == "whatsapp" or not PROVIDER_TEMPLATES.isdisjoint(c.options):
                body = ""  # the provider's stored template, filled from the row's variables
            else:
                return Problem("no_body", "body", "the row has no body or template, and its campaign no template",
                               to, alias)
        fields["body"] = body
        fields["_to"] = to
        fields["_alias"] = alias
        try:
            fields["_content"] = self.content(c, channel, alias)
        except ConfigError as e:
            where = f"campaign '{c.name}'" if c.name else "the [defaults]"
            return Problem("bad_campaign", "campaign", f"{where} cannot go through {alias}: {e}", to, alias)
        return to, alias, fields

    def build(self, rows: list[Any]) -> tuple[Claimed, list[Result], Claimed]:
        """Rows to send (their outbox ids and fields), rejected results, and the rows whose suppression is
        still to be looked up (stored in another form than their normalised address)."""
        send: Claimed = ([], [])
        bad: list[Result] = []
        unsure: Claimed = ([], [])
        check = self.check
        for row in rows:
            oid, raw, channel, alias, route, campaign, body, template, variables, opted_out = row
            raw = raw or ""
            got = check(raw, channel, alias, route, campaign, body, template, variables)
            if type(got) is Problem:
                bad.append(_rejected(oid, got.to, channel, got.code, got.message, got.alias))
                continue
            to, alias, fields = got  # type: ignore[misc]
            if to != raw:
                unsure[0].append(oid)
                unsure[1].append(fields)
            elif opted_out:
                bad.append(_rejected(oid, to, channel, "suppressed", OPTED_OUT, alias))
            else:
                send[0].append(oid)
                send[1].append(fields)
        return send, bad, unsure


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a row cannot be sent: its result code, the field at fault (the API's name for it), and the text."""

    code: str
    field: str
    message: str
    to: str = ""  # the address as far as it was understood (the rejected result's recipient)
    alias: str = ""


def _rejected(oid: int, to: str, channel: str, code: str, error: str, provider: str = "") -> Result:
    return Result(oid, str(oid), to, provider, REJECTED, code=code, error=error, channel=channel)


class OutboxSource(Source):
    """Claims rows forever: an infinite source that waits for work (NOTIFY or the poll timer)."""

    name = "outbox"

    def __init__(self, cfg: DaemonConfig, pool: asyncpg.Pool, store: Store, rows: Rows,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.rows = rows
        self.ready = ready  # false while this worker may not claim (starting, heartbeat lost)
        self.engine: Engine | None = None
        self.wake = asyncio.Event()
        self._ahead: tuple[asyncio.Future[tuple[list[Any], Claimed, list[Result]]], int] | None = None
        self.stopping = False
        self.deferred: list[int] = []  # outbox ids to put back to pending (see defer_later)
        self.deferred_rows = 0  # rows put back so far
        self.retrying: list[tuple[list[int], str | None, str | None]] = []  # (ids, code, error) to reschedule
        self.rescheduled = 0  # rows rescheduled after a transient failure
        self.retries_failed = 0  # rows failed: their retry_for ran out
        self.claimed = 0
        self.suppressed = 0
        self.claims = 0
        self.errors = 0

    def attach(self, engine: Engine) -> None:
        self.engine = engine

    def notify(self, *args: Any) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def _room(self) -> int:
        e = self.engine
        if e is None:
            return self.cfg.claim
        return min(self.cfg.claim, max(e.room(), self.cfg.claim // 4, 1))

    def _flush_idle(self) -> bool:
        """Partial batches go out when their lane has nothing queued: small batches only when idle."""
        return self.engine.flush_idle() if self.engine is not None else False

    def defer_later(self, seqs: list[int]) -> None:
        """Rows whose provider cannot take them now (the engine deferred them): back to pending, in a moment."""
        self.deferred.extend(seqs)
        self.wake.set()

    def retry_later(self, seqs: list[int], code: str | None, error: str | None) -> None:
        """Rows whose send failed for now: rescheduled in the outbox with backoff (see Store.reschedule)."""
        self.retrying.append((seqs, code, error))
        self.wake.set()

    def _closed(self) -> tuple[list[str], bool]:
        now = dt.datetime.now(dt.UTC)
        closed = [name for name, c in self.cfg.campaigns.items() if not c.schedule.is_open(now)]
        return closed, not self.cfg.defaults.schedule.is_open(now)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    async def _claim(self, want: int) -> tuple[list[Any], Claimed, list[Result]]:
        """One claim: rows, the ones to send, and the ones rejected already (bad input, opted out)."""
        async with self.pool.acquire() as conn:
            closed, default_closed = self._closed()
            rows = await self.store.claim(conn, want, closed, default_closed)
            if not rows:
                return rows, ([], []), []
            send, bad, unsure = self.rows.build(rows)
            if unsure[0]:
                (oids, fields), more = await self._suppress(conn, unsure)
                send[0].extend(oids)
                send[1].extend(fields)
                bad.extend(more)
        self.suppressed += sum(1 for r in bad if r.code == "suppressed")
        self.claims += 1
        self.claimed += len(rows)
        return rows, send, bad

    async def chunks(self, skip: Callable[[int], bool] | None = None) -> AsyncIterator[tuple[Chunk, list[Result]]]:
        """Claim, yield, repeat; the next claim is already on its way while the engine takes a chunk in."""
        cfg = self.cfg
        failures = 0
        partial = False
        while not self.stopping:
            if partial:
                self._flush_idle()
            if self.deferred or self.retrying:
                await self._defer()
            ahead, self._ahead = self._ahead, None
            if ahead is None and not self.ready():
                await self._sleep(min(cfg.poll, 0.2))
                self.wake.clear()
                continue
            want = ahead[1] if ahead is not None else self._room()
            if ahead is None:
                self.wake.clear()
            try:
                rows, send, bad = await (ahead[0] if ahead is not None else self._claim(want))
                failures = 0
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as e:
                self.errors += 1
                failures += 1
                log.warning("claim failed (%s); retrying", explain(e, cfg.dsn))
                await self._sleep(RETRY.delay(min(failures, 6)))
                continue
            if rows:
                partial = len(rows) < want
                if self.stopping:  # claimed while a stop came: the release puts them back
                    return
                e = self.engine
                if not partial and e is not None and self.ready() and e.room() >= len(rows) + want:
                    self.wake.clear()
                    self._ahead = (asyncio.ensure_future(self._claim(want)), want)
                yield Chunk.of_dicts(*send), bad
                continue
            partial = False
            # nothing due: flush what waits in partial batches, then sleep until NOTIFY or the poll
            deadline = time.monotonic() + cfg.poll
            while not self.stopping and not self.wake.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                waiting = self._flush_idle()
                await self._sleep(min(left, 0.02) if waiting else left)

    async def close(self) -> None:
        """A claim still on its way when the engine stopped reading: let it land (the release puts it back)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            with contextlib.suppress(Exception):
                await ahead[0]

    async def _defer(self) -> None:
        ids, self.deferred = self.deferred, []
        retrying, self.retrying = self.retrying, []
        try:
            async with self.pool.acquire() as conn:
                if ids:
                    n = await self.store.defer(conn, ids, DEFER)
                    self.deferred_rows += n
                    log.info("%d row(s) for a provider that cannot take them now put back for %g s", n, DEFER)
                for seqs, code, error in retrying:
                    later, failed = await self.store.reschedule(conn, seqs, code, error)
                    self.rescheduled += later
                    self.retries_failed += failed
                    if failed:
                        log.warning("%d row(s) failed after retrying for their campaign's retry_for: %s %s",
                                    failed, code, error)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as e:
            log.warning("could not put %d row(s) back (%s): their claims end with their lease",
                        len(ids) + sum(len(s) for s, _, _ in retrying), explain(e, self.cfg.dsn))

    async def _suppress(self, conn: asyncpg.Connection, rows: Claimed) -> tuple[Claimed, list[Result]]:
        """`rows` split into the ones to send and the opted-out ones, rejected."""
        oids, fields = rows
        found = await self.store.suppressed(conn, list({f["_to"] for f in fields}))
        if not found:
            return rows, []
        keep: Claimed = ([], [])
        bad = []
        for oid, f in zip(oids, fields, strict=True):
            channels = found.get(f["_to"])
            ch = f["_content"].channel
            if channels and ("*" in channels or ch in channels):
                bad.append(_rejected(oid, f["_to"], ch, "suppressed", OPTED_OUT, f["_alias"]))
            else:
                keep[0].append(oid)
                keep[1].append(f)
        return keep, bad


class RowsPreparer:
    """Outbox rows into messages. Routing, address normalisation and rendering happened in `Rows.build`
    (per row, with the row's template and variables); this builds the messages and hands them to the
    engine's `Finisher` (one codec call for the SMS texts, each provider's `check`), as a campaign's
    preparer does. Rows for a provider that halted are deferred by the engine's lane, not here."""

    def __init__(self, finish: Finisher, channels: dict[str, str]) -> None:
        self.finish = finish
        self.channels = channels

    def warm_up(self) -> None:
        if "sms" in self.channels.values():
            codecs.warm_up()

    def prepare(self, rows: Chunk) -> Prepared:
        channels = self.channels
        out: dict[str, list[Message]] = {}
        sms: list[Message] = []
        for i, (seq, alias, text, to, content) in enumerate(zip(
                rows.seq, rows.column("_alias"), rows.column("body"), rows.column("_to"), rows.column("_content"),
                strict=True)):
            m = Message(seq, str(seq), to, text, rows.fields(i), {"body": text}, alias, channels[alias],
                        content=content)
            if m.channel == "sms":
                sms.append(m)
            g = out.get(alias)
            if g is None:
                g = out[alias] = []
            g.append(m)
        return self.finish(out, sms, [])


class Histogram:
    """Bucket counts kept by hand: one observe per batch or row costs a bisect, not a lock."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.buckets, value)] += n
        self.sum += value * n
        self.count += n

    def quantile(self, q: float) -> float | None:
        """An estimate (the bucket's upper bound) for quick reports."""
        if not self.count:
            return None
        target = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return None


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUEUE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)


class OutboxSink(Sink):
    """Results onto their outbox rows: one UPDATE ... FROM unnest(arrays) a write."""

    name = "outbox"

    def __init__(self, cfg: DaemonConfig, pool: asyncpg.Pool, store: Store) -> None:
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.results: Counter[tuple[str, str, str]] = Counter()  # (provider, status, code)
        self.request_latency: dict[str, Histogram] = {}
        self.queue_latency = Histogram(QUEUE_BUCKETS)  # insert -> provider accepted
        self.written = 0
        self.lost = 0  # results for rows no longer claimed by this worker (reclaimed after a lost heartbeat)
        self.on_write: list[Callable[[], None]] = []
        self.on_fatal: list[Callable[[], None]] = []  # results cannot be recorded: the daemon must stop

    async def write(self, results: Results) -> None:
        col = results.column
        seqs, providers, latencies = col("seq"), col("provider"), col("latency_ms")
        rows = await self._update([  # the connections' jsonb codec is orjson
            list(r) for r in zip(seqs, col("status"), providers, col("to"), col("message_id"), col("parts"),
                                 col("code"), col("error"), latencies, col("meta"), strict=True)])
        counts = self.results
        q = self.queue_latency
        written = 0
        for provider, status, code, bucket, n, age in rows:
            counts[(provider, status, code)] += n
            written += n
            if bucket is not None:
                q.counts[bucket] += n
                q.count += n
                q.sum += age
        self.written += written
        if written < len(results):
            self.lost += len(results) - written
            log.warning("%d results for rows this worker no longer holds (its claims were taken back)",
                        len(results) - written)
        for provider, ms in set(zip(providers, latencies, strict=True)):  # one observation a request
            if ms is None:
                continue
            h = self.request_latency.get(provider)
            if h is None:
                h = self.request_latency[provider] = Histogram(LATENCY_BUCKETS)
            h.observe(ms / 1000)
        for cb in self.on_write:
            cb()

    async def _update(self, payload: list[list[Any]]) -> list[Any]:
        async def attempt(n: int) -> list[Any]:
            async with self.pool.acquire() as conn:
                return await conn.fetch(self.store.result_sql, self.cfg.worker, payload, QUEUE_BUCKETS)

        async def failed(e: BaseException, n: int, final: bool) -> None:
            if not final:
                log.warning("recording results failed (%s); retrying", explain(e, self.cfg.dsn))
                return
            for cb in self.on_fatal:
                cb()
            raise SinkError(f"outbox: cannot record results: {explain(e, self.cfg.dsn)}") from None

        return await retrying(attempt, retry=Retry(RETRY.attempts + 3, RETRY.base, RETRY.cap), failed=failed)


__all__ = ["Names", "OutboxSink", "OutboxSource", "Problem", "Rows", "RowsPreparer", "Store", "init_connection"]
