"""The outbox as the engine's Source: claims rows forever (NOTIFY as a hint, the poll timer as the truth),
and puts back the rows the engine deferred or will retry later."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import asyncpg
from prometheus_client.core import CounterMetricFamily, Metric

from ...model import Chunk, Result
from ...pg import PG_ERRORS, RETRY, explain
from ...sources.base import Source
from ..config import DaemonConfig
from ..database import Connections
from .rows import OPTED_OUT, ClaimedChunk, ClaimedRows, RowValidator, rejected_row
from .store import OutboxQueries

log = logging.getLogger("dispatcher.daemon")
DEFER = 30.0  # seconds a row for a halted provider waits before it is claimed again
HORIZON = 0.5  # seconds of sending a claim may hold: what `want` sizes claims by (a pause waits about this)
COOLDOWN = 0.05  # seconds between looks for free slots when there are none
LOWEST = -32768  # the lowest priority a row can have (smallint)


class Slots(Protocol):
    """What a claim asks of the engine it feeds (engine.Engine is one): its in-flight room, how many
    messages its lanes put on the wire in the next seconds, the urgent ones waiting, and a flush of partial
    batches when a lane is idle. The source names no engine: it is given one (`attach`)."""

    @property
    def in_flight(self) -> int: ...

    def room(self) -> int: ...

    def soon(self, horizon: float) -> float: ...

    def urgent_waiting(self) -> int: ...

    def flush_idle(self) -> bool: ...


class OutboxSource(Source):
    """Claims rows forever: an infinite source that waits for work (NOTIFY or the poll timer)."""

    name = "outbox"

    def __init__(self, cfg: DaemonConfig, pool: Connections, store: OutboxQueries, validator: RowValidator,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.validator = validator
        self.ready = ready  # false while this worker may not claim (starting, heartbeat lost)
        self.slots: Slots | None = None  # the engine it feeds, as far as a claim asks it (attach)
        self.wake = asyncio.Event()
        self.stopping = False
        self.halted_ids: list[int] = []  # outbox ids of rows for a halted provider, to put back (see defer_later)
        self.deferred_rows = 0  # rows put back so far
        self.retry_queue: list[tuple[list[int], str | None, str | None]] = []  # (ids, code, error) to reschedule
        self.rescheduled = 0  # rows rescheduled after a transient failure
        self.retries_failed = 0  # rows failed: their retry_for ran out
        self.claimed = 0
        self.stopped: dict[str, str] = {}  # paused and cancelled campaigns, by state (daemon/withdrawal.py sets it)
        self.given_back = 0  # rows of those a claim returned, given back before they reached the lanes
        self.urgent_at = 0.0  # when to look for priority rows again while every slot is taken (the poll)
        self.suppressed = 0
        self.errors = 0

    def collect(self) -> Iterator[Metric]:
        """/metrics: what the claims took, and what went back to the outbox."""
        yield CounterMetricFamily("dispatcher_claimed", "Rows claimed by this worker", value=self.claimed)
        yield CounterMetricFamily("dispatcher_suppressed", "Rows not sent: the recipient opted out",
                                  value=self.suppressed)
        yield CounterMetricFamily("dispatcher_deferred", "Rows put back to pending for a halted provider",
                                  value=self.deferred_rows)
        yield CounterMetricFamily("dispatcher_rescheduled", "Rows rescheduled in the outbox after a transient failure",
                                  value=self.rescheduled)
        yield CounterMetricFamily("dispatcher_retry_for_expired", "Rows failed: transient failures past retry_for",
                                  value=self.retries_failed)

    def attach(self, slots: Slots) -> None:
        """The engine this source feeds, which reads it: the claim sizes itself by its free slots."""
        self.slots = slots

    def notify(self, *args: Any) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def want(self) -> int:
        """How many rows to claim now: the free slots, and no more. The lanes can put about
        `engine.soon(HORIZON)` messages on the wire in the next HORIZON seconds at their current pace;
        what is in flight already counts against that, and the engine's in-flight room bounds it, as
        does `claim`. 0 means claim nothing: the loop waits for slots to free. Rows claimed early wait
        in memory where nothing can overtake them, so a priority row inserted later would wait behind
        them; claiming only what goes out soon keeps that wait under HORIZON (River, Oban and Graphile
        Worker claim the same way: at most the free slots)."""
        e = self.slots
        if e is None:
            return self.cfg.claim
        free = min(float(e.room()), e.soon(HORIZON) - e.in_flight, float(self.cfg.claim))
        return max(0, math.ceil(free - 1e-9))  # half a slot free is one: at 1 request/s a claim waits no second

    def want_urgent(self) -> int:
        """How many priority rows (priority > 0) to claim while `want` is 0. A priority row overtakes every
        message of lower priority in the lanes, so those take none of its slots: only the urgent messages
        queued count against `engine.soon(HORIZON)`. Without this, at 1 request/s a priority row waited for
        a held row to go (a second) before it was claimed, then for the next slot: two seconds."""
        e = self.slots
        if e is None:
            return self.cfg.claim
        free = min(float(e.room()), e.soon(HORIZON) - e.urgent_waiting(), float(self.cfg.claim))
        return max(0, math.ceil(free - 1e-9))

    def _urgent_look(self) -> int:
        """While every slot is taken: the priority rows to claim now, when a NOTIFY came (a row was
        inserted) or the poll interval has passed since the last look (rows come due without a NOTIFY);
        else 0, and no query."""
        now = time.monotonic()
        if not self.wake.is_set() and now < self.urgent_at:
            return 0
        want = self.want_urgent()
        if want:
            self.urgent_at = now + self.cfg.poll
        return want

    def _flush_idle(self) -> bool:
        """Partial batches go out when their lane has nothing queued: small batches only when idle."""
        return self.slots.flush_idle() if self.slots is not None else False

    def defer_later(self, seqs: list[int]) -> None:
        """Rows whose provider cannot take them now (the engine deferred them): back to pending, in a moment."""
        self.halted_ids.extend(seqs)
        self.wake.set()

    def retry_later(self, seqs: list[int], code: str | None, error: str | None) -> None:
        """Rows whose send failed for now: rescheduled in the outbox with backoff (see OutboxQueries.reschedule)."""
        self.retry_queue.append((seqs, code, error))
        self.wake.set()

    def _closed(self) -> list[str]:
        """Campaigns whose sending window is shut now ('' for the [defaults])."""
        now = dt.datetime.now(dt.UTC)
        closed = [name for name, c in self.cfg.campaigns.items() if not c.schedule.is_open(now)]
        return closed + ([""] if not self.cfg.defaults.schedule.is_open(now) else [])

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    async def _claim(self, want: int, urgent_only: bool = False) -> tuple[list[Any], ClaimedRows, list[Result]]:
        """One claim: rows, the ones to send, and the ones rejected already (bad input, opted out).
        `urgent_only`: priority rows only (every slot is taken, see want_urgent)."""
        async with self.pool.acquire() as conn:
            closed = self._closed()
            fair = [] if urgent_only else [name for name in ("", *self.cfg.campaigns) if name not in closed]
            rows = await self.store.claim(conn, want, closed, fair)
            if len(rows) < want and not urgent_only:  # shares left slots free (or rows of campaigns not configured wait): the rest by priority
                rows += await self.store.claim(conn, want - len(rows), closed, [], LOWEST)
            if not rows:
                return rows, ClaimedRows([], []), []
            send, bad, unsure = self.validator.build(rows)
            if unsure.ids:
                keep, more = await self._suppress(conn, unsure)
                send.extend(keep)
                bad.extend(more)
            if self.stopped and send.ids:
                send = await self._give_back(conn, send)
        self.suppressed += sum(1 for r in bad if r.code == "suppressed")
        self.claimed += len(rows)
        return rows, send, bad

    async def chunks(self, skip: Callable[[int], bool] | None = None) -> AsyncIterator[tuple[Chunk, list[Result]]]:
        """Claim what can go out soon (`want`), yield it, repeat. NOTIFY wakes the loop early; the poll
        timer is the truth. With no free slot, it looks again after COOLDOWN."""
        cfg = self.cfg
        failures = 0
        while not self.stopping:
            if self.halted_ids or self.retry_queue:
                await self._defer()
            if not self.ready():
                await self._sleep(min(cfg.poll, 0.2))
                self.wake.clear()
                continue
            want = self.want()
            urgent = want == 0 and (want := self._urgent_look()) > 0
            if want == 0:  # every slot taken: partial batches may go, then look again shortly
                self._flush_idle()
                await asyncio.sleep(COOLDOWN)  # not _sleep: a NOTIFY (wake set) must not make this spin
                continue
            self.wake.clear()
            try:
                rows, send, bad = await self._claim(want, urgent)
                failures = 0
            except PG_ERRORS as e:
                self.errors += 1
                failures += 1
                log.warning("claim failed (%s); retrying", explain(e, cfg.dsn))
                await self._sleep(RETRY.delay(min(failures, 6)))
                continue
            if rows:
                if self.stopping:  # claimed while a stop came: the release puts them back
                    return
                yield ClaimedChunk.of(send), bad
                if len(rows) < want:
                    self._flush_idle()  # nothing more due now: short batches may go
                continue
            if urgent:  # no priority row due: back to sizing by every slot
                continue
            # nothing due: flush what waits in partial batches, then sleep until NOTIFY or the poll
            deadline = time.monotonic() + cfg.poll
            while not self.stopping and not self.wake.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                waiting = self._flush_idle()
                await self._sleep(min(left, 0.02) if waiting else left)

    async def close(self) -> None:
        """Nothing to wait for: every claim is awaited where it is made."""

    async def _defer(self) -> None:
        halted, self.halted_ids = self.halted_ids, []
        queued, self.retry_queue = self.retry_queue, []
        try:
            async with self.pool.acquire() as conn:
                if halted:
                    n = await self.store.defer(conn, halted, DEFER)
                    self.deferred_rows += n
                    log.info("%d row(s) for a provider that cannot take them now put back for %g s", n, DEFER)
                for seqs, code, error in queued:
                    later, failed = await self.store.reschedule(conn, seqs, code, error)
                    self.rescheduled += later
                    self.retries_failed += failed
                    if failed:
                        log.warning("%d row(s) failed after retrying for their campaign's retry_for: %s %s",
                                    failed, code, error)
        except PG_ERRORS as e:
            log.warning("could not put %d row(s) back (%s): their claims end with their lease",
                        len(halted) + sum(len(s) for s, _, _ in queued), explain(e, self.cfg.dsn))

    async def _give_back(self, conn: asyncpg.Connection, rows: ClaimedRows) -> ClaimedRows:
        """`rows` without those of campaigns paused or cancelled since the claim read them as active: those
        go back (queued again, or cancelled) before they reach the lanes."""
        stopped = self.stopped
        keep = ClaimedRows([], [])
        back: list[int] = []
        for oid, r in zip(rows.ids, rows.rows, strict=True):
            if r.group in stopped:
                back.append(oid)
            else:
                keep.ids.append(oid)
                keep.rows.append(r)
        if back:
            self.given_back += await self.store.give_back(conn, back, list(stopped))
        return keep

    async def _suppress(self, conn: asyncpg.Connection, rows: ClaimedRows) -> tuple[ClaimedRows, list[Result]]:
        """`rows` split into the ones to send and the opted-out ones, rejected."""
        found = await self.store.suppressed(conn, list({r.to for r in rows.rows}))
        if not found:
            return rows, []
        keep = ClaimedRows([], [])
        bad = []
        for oid, r in zip(rows.ids, rows.rows, strict=True):
            channels = found.get(r.to)
            ch = r.content.channel
            if channels and ("*" in channels or ch in channels):
                bad.append(rejected_row(oid, r.to, ch, "suppressed", OPTED_OUT, r.alias))
            else:
                keep.ids.append(oid)
                keep.rows.append(r)
        return keep, bad
