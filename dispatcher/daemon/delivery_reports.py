"""Delivery reports: one HTTP endpoint for every provider's callbacks, a reports table, the latest status.

The endpoint is the one a blast serves too (dispatcher/callbacks.py: `/dlr/{alias}/{secret}`, the secret
in the path, the query, a header or an HMAC of the body). `alias` is the provider's name in the daemon
file and the secret comes from its `dlr_secret_env`. A report is answered 200 once it is committed (503
when the database cannot take it, so the provider sends it again). What each provider sends is read by its own
module (providers/*.py, "delivery reports"; providers/*.md, "Delivery reports").

Every report is kept, matched or not, duplicates included: the table `{reports}` of
outbox/schema/001_outbox.sql, with what each column holds.

Each provider module reads its own callbacks (`Provider.parse_report`, `report_item`) and
wires its callback URL into its requests where it can (`Provider.callback`): this module
names no provider.

Matching: on (provider alias, message id) against the outbox's `sent_via, provider_message_id`.
A report that comes before its result is recorded (providers report at once, sometimes
before the daemon has read the answer) is matched when the result lands (`rematch`:
every half second for recent reports, every minute for `rematch_hours`). Providers whose
accept answer has no id (SendX's documented 202, SmsGateway24's bulk call) are paired by
recipient: the oldest sent row to that address through that provider that has no id yet
takes the report's id (`dlr_match_recipient`, by default on where the provider module says
`ids_in_answers = False`).

Latest status: the outbox row's `delivery_status` is the report of highest rank, the
latest event among equals; it is derived from all of the row's reports, so duplicates and
out-of-order reports change nothing, and a guard on the row keeps it from ever going down
(delivered never becomes sent). Unsubscribes and complaints add the address to
`outbox_suppressions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from .. import callbacks
from ..pg import Retry, explain, retrying
from ..providers.base import Provider
from ..providers.dlr import Report
from ..tasks import Tasks, cancel
from .config import DaemonConfig, ProviderSpec
from .database import Connections
from .metrics import counter
from .outbox import TableNames
from .outbox.store import named_queries

log = logging.getLogger("dispatcher.daemon")
REPORT_RETRY = Retry(attempts=3, base=0.05, cap=0.4)  # a provider waits on the answer: retry briefly

SUPPRESS = ("unsubscribed", "complaint")


def configure_callbacks(public: str, specs: Mapping[str, ProviderSpec],
                        providers: Mapping[str, Provider] | None = None) -> dict[str, str]:
    """Point each provider that takes a callback URL in its requests at this daemon (unless set by hand):
    the engine's `providers`, built before the port was bound, and each spec's report parser.

    Returns, per alias, the URL to give the providers configured in their consoles (with the secret
    shown as `<secret>`, for the log).
    """
    shown = {}
    for alias, spec in specs.items():
        if spec.secret is None:
            continue
        url = callbacks.callback_url(public, spec.alias, spec.secret)
        if providers is not None and alias in providers:
            providers[alias].callback(url)
        spec.reporter.callback(url)
        shown[alias] = url.replace(spec.secret, "<secret>")
    return shown


class ReportStore:
    """Reports written in batches (one transaction for all the callbacks of a moment), then matched."""

    def __init__(self, cfg: DaemonConfig, pool: Connections, names: TableNames) -> None:
        self.cfg = cfg
        self.pool = pool
        self.n = names
        self.sql = {name: names.fill(q) for name, q in named_queries("reports.sql").items()}
        self.by_recipient = [a for a, s in cfg.providers.items() if s.match_recipient]
        self._pending: list[tuple[list[Report], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._poke = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._writing: asyncio.Task[None] | None = None
        self.stopped = False
        self.received: Counter[tuple[str, str]] = Counter()  # (provider, status)
        self.refused: Counter[tuple[str, str]] = Counter()  # (provider, reason)
        self.matched = 0
        self.unmatched_on_arrival = 0
        self.suppressed = 0

    def collect(self) -> Iterator[Metric]:
        """/metrics: the reports stored, refused and matched."""
        yield counter("dispatcher_reports", "Delivery reports stored", ["provider", "status"], self.received)
        yield counter("dispatcher_reports_refused", "Delivery report calls refused", ["provider", "reason"],
                      self.refused)
        yield CounterMetricFamily("dispatcher_reports_matched", "Reports matched to their outbox row",
                                  value=self.matched)
        yield CounterMetricFamily("dispatcher_reports_unmatched_on_arrival",
                                  "Reports with no outbox row when they came", value=self.unmatched_on_arrival)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, tasks: Tasks, on_failure: Callable[[], None]) -> None:
        """The writer and the rematcher as tasks of `tasks`. A writer that a bug ends calls `on_failure`, the
        daemon's stop as failed (not restarted: a report is answered 200 once committed, which the endpoint
        cannot keep without its writer; the callbacks it held, and every one after, are answered 503, so the
        providers send them again); the rematcher is restarted (logged, with backoff): what it missed it
        matches at its next look."""
        self._writing = tasks.start(self._writer(), "reports-writer", on_failure=on_failure)
        self._tasks = [self._writing, tasks.keep(self._rematcher, "reports-rematch")]

    async def stop(self) -> None:
        self.stopped = True
        deadline = time.monotonic() + 5
        while self._pending and self.writing() and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        await cancel(*self._tasks)
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(ConnectionError("the daemon is stopping"))
        self._pending.clear()

    def writing(self) -> bool:
        """Is the writer running (started, and not ended by a bug)?"""
        return self._writing is not None and not self._writing.done()

    def poke(self) -> None:
        """Results were just recorded: reports that came before them may match now."""
        self._poke.set()

    async def submit(self, reports: list[Report]) -> None:
        if self.stopped or (self._writing is not None and self._writing.done()):
            raise ConnectionError("the daemon is stopping")  # answered 503: the provider sends it again
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((reports, fut))
        self._wake.set()
        await fut

    # -- writing --------------------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, n = [], 0
                while self._pending and n < 2000:
                    item = self._pending.pop(0)
                    batch.append(item)
                    n += len(item[0])
                try:
                    await self._store(batch)
                finally:  # a bug or a cancel mid-batch: its callbacks are answered 503, the providers resend
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(ConnectionError("the reports writer stopped"))

    async def _store(self, batch: list[tuple[list[Report], asyncio.Future[None]]]) -> None:
        """One batch written, in one transaction; each callback's future answered."""
        try:
            await self._write([r for rs, _ in batch for r in rs])
            done: list[tuple[list[Report], asyncio.Future[None], BaseException | None]] = \
                [(rs, fut, None) for rs, fut in batch]
        except Exception as e:
            # one callback the database refuses must not fail the others written with it
            done = [(rs, fut, e) for rs, fut in batch] if len(batch) == 1 else \
                [(rs, fut, await self._alone(rs)) for rs, fut in batch]
        for rs, fut, error in done:
            if error is None:
                for r in rs:
                    self.received[(r.provider, r.status)] += 1
            else:
                log.warning("could not store %d delivery report(s): %s", len(rs), explain(error, self.cfg.dsn))
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    async def _alone(self, reports: list[Report]) -> BaseException | None:
        try:
            await self._write(reports)
        except Exception as e:
            return e
        return None

    async def _write(self, reports: list[Report]) -> None:
        cols: list[list[Any]] = [[] for _ in range(9)]
        for r in reports:
            for i, v in enumerate((r.provider, r.message_id, r.recipient, r.status, r.rank, r.provider_status,
                                   r.event_at, r.part, callbacks.payload_json(r.payload))):
                cols[i].append(v)
        async def store(n: int) -> tuple[list[Any], int]:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(self.sql["insert"], *cols)
                ids = [r[0] for r in rows]
                matched = {r[1] for r in rows if r[1] is not None}
                suppress = ids if any(r.status in SUPPRESS for r in reports) else []
                return rows, await self._settle(conn, ids, matched, suppress)

        rows, bound = await retrying(store, retry=REPORT_RETRY)  # the caller answers 503 when it gives up
        unmatched = sum(1 for r in rows if r[1] is None)
        self.unmatched_on_arrival += unmatched
        self.matched += len(rows) - unmatched + bound

    async def _settle(self, conn: asyncpg.Connection, unmatched_ids: list[int], matched: set[int],
                      suppress: list[int]) -> int:
        """Pair by recipient where the provider gives no id, derive the latest status, add opt-outs.
        Returns how many reports were paired by recipient."""
        bound = []
        if self.by_recipient and unmatched_ids:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.n.reports + ":bind")
            bound = await conn.fetch(self.sql["bind"], unmatched_ids, self.by_recipient)
            for rid, oid in bound:
                matched.add(oid)
                suppress.append(rid)
        if matched:
            await conn.execute(self.sql["derive"], sorted(matched))
        if suppress:
            added = await conn.fetch(self.sql["suppress"], suppress, list(SUPPRESS))
            self.suppressed += len(added)
            if added:
                log.info("%d address(es) added to the suppression list by provider reports", len(added))
        return len(bound)

    # -- matching what came early -------------------------------------------------------------
    async def _rematcher(self) -> None:
        last_full = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._poke.wait()
            self._poke.clear()
            full = time.monotonic() - last_full >= 60
            if full:
                last_full = time.monotonic()
            try:
                await self.rematch(self.cfg.rematch_hours * 3600 if full else 120)
            except Exception as e:
                log.warning("matching delivery reports failed: %s", explain(e, self.cfg.dsn))
                await asyncio.sleep(1)
            await asyncio.sleep(0.2)  # coalesce pokes

    async def rematch(self, seconds: float) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self.sql["rematch"], float(seconds))
            matched = {r[1] for r in rows}
            ids = [r[0] for r in rows]
            pending = []
            if self.by_recipient:
                pending = [r[0] for r in await conn.fetch(self.sql["unmatched"], float(seconds), self.by_recipient)]
            bound = await self._settle(conn, pending, matched, ids) if rows or pending else 0
        self.matched += len(rows) + bound
        return len(rows) + bound


def routes(cfg: DaemonConfig, store: ReportStore) -> list[web.RouteDef]:
    def lookup(alias: str) -> tuple[Provider, str | None] | None:
        spec = cfg.providers.get(alias)
        return None if spec is None else (spec.reporter, spec.secret)

    return callbacks.routes(lookup, store.submit, store.refused)
