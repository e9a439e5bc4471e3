"""Signed status webhooks: the outbox's events table POSTed to `[webhooks] url`, at least once, in order.

The events are written by triggers on the outbox (outbox.events_sql), so every route that
changes a status produces them. One daemon at a time delivers (a transaction-level advisory
lock held while a batch is on the wire), the oldest events first, so each message's events
arrive in the order they happened; the first to deliver builds the index of undelivered events
(`DUE`), which an outbox without webhooks does without. A batch is

    POST <url>   {"events": [{"event_id", "id", "key", "status", "code", "error", "provider",
                              "message_id", "at"}, ...]}
    webhook-id: evt_<first event id>_<last event id>     (the same when the same batch is sent again)
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body"> [v1,... for each further secret]

signed the Standard Webhooks way (standardwebhooks.com; its libraries verify it), so a captured POST
cannot be replayed once the receiver's tolerance for the timestamp has passed. `secret_env` holds one
secret, or several separated by spaces while one is rotated out: each is `whsec_<base64>` (the
libraries' form) or plain text (its UTF-8 bytes are the key). A batch

is marked delivered only on a 2xx answer; otherwise it is sent again after a backoff
(doubling, with jitter, at most `backoff_max`; at least the `Retry-After` of a 429 or 503), for as
long as its events are younger than `max_age`. Older undelivered events are given up on: marked,
counted, kept in the table. A 410 Gone means the receiver wants no more: delivery stops (logged once)
until the daemon is restarted, and the events wait in the table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..pg import PG_ERRORS, explain
from ..tasks import Tasks, cancel
from .config import DaemonConfig, WebhookSpec
from .database import Connections
from .metrics import counter
from .outbox import TableNames

log = logging.getLogger("dispatcher.daemon")
# An event not delivered yet: the predicate of the due index, by which every query below finds them (ids
# by `= ANY` too: the events have no other index on id). The first daemon that delivers builds the index
# (`Webhooks.index`), not the schema: an outbox without webhooks does not index each event for them.
DUE = "delivered_at IS NULL AND given_up_at IS NULL"


def keys(secrets: str) -> list[bytes]:
    """The signing keys a `secret_env` value holds: whitespace-separated, `whsec_<base64>` or plain text."""
    return [base64.b64decode(s[6:] + "==") if s.startswith("whsec_") else s.encode() for s in secrets.split()]


def signed(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one POST: one `v1,` signature per key."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    sigs = " ".join("v1," + base64.b64encode(hmac.new(k, content, hashlib.sha256).digest()).decode() for k in keys)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": sigs}


def retry_after(value: str | None, most: float = 3600.0) -> float:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), 0 when none or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return min(float(value), most)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return min(max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0), most)
    return 0.0


class Webhooks:
    """The delivery loop, and what /metrics says about it (backlog, oldest age, given up)."""

    def __init__(self, cfg: DaemonConfig, spec: WebhookSpec, pool: Connections, names: TableNames) -> None:
        self.cfg = cfg
        self.spec = spec
        self.keys = keys(spec.secret)
        self.pool = pool
        self.wake = asyncio.Event()
        self.delivered = 0
        self.posts: dict[str, int] = {"ok": 0, "failed": 0}
        self.given_up = 0
        self.backlog = 0
        self.oldest_age = 0.0
        self.failures = 0
        self.retry_after = 0.0  # seconds the receiver asked to wait (Retry-After of its last 429/503)
        self.gone = False  # the receiver answered 410: no more POSTs
        self._task: asyncio.Task[None] | None = None
        e = names.events
        self.lock = f"{names.events}:webhooks"
        self.due_index = names.events_due
        self.index_sql = (f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {names.index('events_due')} "
                          f"ON {e} (id) WHERE {DUE}")
        self.give_up_sql = f"""
            WITH g AS (UPDATE {e} SET given_up_at = now()
                       WHERE {DUE} AND at < now() - make_interval(secs => $1)
                       RETURNING 1)
            SELECT count(*) FROM g"""
        self.batch_sql = f"""
            SELECT id, outbox_id, key, status, code, error, provider, message_id, at FROM {e}
            WHERE {DUE} ORDER BY id LIMIT $1"""
        self.done_sql = (f"UPDATE {e} SET delivered_at = now(), attempts = attempts + 1 "
                         f"WHERE id = ANY($1::bigint[]) AND {DUE}")
        self.tried_sql = f"UPDATE {e} SET attempts = attempts + 1 WHERE id = ANY($1::bigint[]) AND {DUE}"
        self.backlog_sql = f"""
            SELECT (SELECT count(*) FROM (SELECT 1 FROM {e} WHERE {DUE} LIMIT 1000000) b),
                   extract(epoch FROM now() - (SELECT at FROM {e} WHERE {DUE} ORDER BY id LIMIT 1))::float8,
                   (SELECT count(*) FROM {e} WHERE given_up_at IS NOT NULL)"""

    def collect(self) -> Iterator[Metric]:
        """/metrics: the backlog (sampled), what was delivered or given up, and the POSTs."""
        yield GaugeMetricFamily("dispatcher_webhook_backlog", "Events not delivered yet (sampled)", value=self.backlog)
        yield GaugeMetricFamily("dispatcher_webhook_oldest_seconds", "Age of the oldest undelivered event (sampled)",
                                value=self.oldest_age)
        yield CounterMetricFamily("dispatcher_webhook_events_delivered", "Events the receiver took (2xx)",
                                  value=self.delivered)
        yield CounterMetricFamily("dispatcher_webhook_events_given_up", "Events older than max_age, not delivered",
                                  value=self.given_up)
        yield counter("dispatcher_webhook_posts", "Webhook POSTs by result", ["result"], self.posts)

    def start(self, tasks: Tasks) -> None:
        """Delivery as a task of `tasks`, restarted (logged, with backoff, a new HTTP session) if a bug ends
        its loop; a 410 ends it for good (see the module's docstring)."""
        self._task = tasks.keep(self._run, "webhooks")

    async def stop(self) -> None:
        await cancel(self._task)

    def notify(self, *args: Any) -> None:
        """NOTIFY dispatcher_events (or results written): events may be waiting."""
        self.wake.set()

    async def index(self) -> None:
        """The due index (see DUE), built once, concurrently (the outbox takes writes while it is), by one
        daemon: the one that gets the webhooks' lock, which the others' deliveries wait on meanwhile. A
        build that failed midway left an invalid index behind: it is dropped and built again. Checked every
        2 s (one catalog look-up)."""
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)"
        async with self.pool.acquire() as conn:
            if await conn.fetchval(valid, self.due_index):
                return
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.lock):
                return  # another daemon builds it (a blocking wait here would deadlock with its build)
            try:
                state = await conn.fetchval(valid, self.due_index)
                if state is False:
                    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {self.due_index}")
                if not state:
                    log.info("webhooks: indexing the undelivered events (once, for every daemon)")
                    await conn.execute(self.index_sql)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self.lock)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.spec.timeout)
        last_backlog = 0.0
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                self.wake.clear()
                try:
                    if time.monotonic() - last_backlog >= 2.0:
                        await self.index()  # at the first turn; again later, should another daemon's build fail
                        await self._measure()
                        last_backlog = time.monotonic()
                    sent = await self.deliver(http)
                except PG_ERRORS as e:
                    log.warning("webhooks: database: %s", explain(e, self.cfg.dsn))
                    sent = -1
                except Exception as e:  # a bug must not end delivery for the life of the process
                    log.error("webhooks: %s: %s", type(e).__name__, e)
                    sent = -1
                if self.gone:
                    log.error("webhooks: %s answered 410 Gone: no more webhooks until the daemon restarts "
                              "(the events wait in the table)", self.spec.url)
                    return
                if sent < 0:  # the receiver (or the database) failed: back off
                    self.failures += 1
                    delay = min(self.spec.backoff_max, 0.5 * 2 ** min(self.failures, 16))
                    await asyncio.sleep(max(random.uniform(delay / 2, delay), self.retry_after))
                    self.retry_after = 0.0
                elif sent == 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(self.cfg.poll, 0.2)):
                            await self.wake.wait()

    async def _measure(self) -> None:
        async with self.pool.acquire() as conn:
            backlog, age, given_up = await conn.fetchrow(self.backlog_sql)
        self.backlog, self.oldest_age, self.given_up = backlog, max(age or 0.0, 0.0), given_up

    async def deliver(self, http: aiohttp.ClientSession) -> int:
        """One batch: the number of events delivered, 0 when none was waiting (or another daemon delivers),
        -1 when the receiver did not take it."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", self.lock):
                return 0
            gone = await conn.fetchval(self.give_up_sql, float(self.spec.max_age))
            if gone:
                log.warning("webhooks: gave up on %d event(s) older than %g s (kept in the events table)",
                            gone, self.spec.max_age)
            rows = await conn.fetch(self.batch_sql, self.spec.batch)
            if not rows:
                return 0
            body = orjson.dumps({"events": [
                {"event_id": r["id"], "id": r["outbox_id"], "key": r["key"], "status": r["status"], "code": r["code"],
                 "error": r["error"], "provider": r["provider"], "message_id": r["message_id"],
                 "at": r["at"].isoformat()} for r in rows]})
            ids = [r["id"] for r in rows]
            why = await self._post(http, body, f"evt_{ids[0]}_{ids[-1]}")
            if why is None:
                await conn.execute(self.done_sql, ids)
            else:
                await conn.execute(self.tried_sql, ids)
        if why is not None:
            self.posts["failed"] += 1
            if self.failures == 0 or self.failures % 10 == 0:
                log.warning("webhooks: %d event(s) not delivered (%s); retrying with backoff", len(ids), why)
            return -1
        if self.failures:
            log.warning("webhooks: the receiver takes events again after %d failed attempt(s)", self.failures)
        self.failures = 0
        self.posts["ok"] += 1
        self.delivered += len(ids)
        self.backlog = max(0, self.backlog - len(ids))
        return len(ids)

    async def _post(self, http: aiohttp.ClientSession, body: bytes, msg_id: str) -> str | None:
        headers = {"Content-Type": "application/json", **signed(self.keys, msg_id, int(time.time()), body)}
        try:
            async with http.post(self.spec.url, data=body, headers=headers) as r:
                await r.read()
                if 200 <= r.status < 300:
                    return None
                if r.status in (429, 503):
                    self.retry_after = retry_after(r.headers.get("Retry-After"))
                self.gone = r.status == 410
                return f"HTTP {r.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return type(e).__name__
