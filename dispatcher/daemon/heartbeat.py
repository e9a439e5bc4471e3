"""Workers register and heartbeat in `outbox_workers`; each provider's rate is split between the live ones.

The table is `{workers}` of outbox/schema/001_outbox.sql.

Every `heartbeat` seconds a worker stamps its row, counts the live workers (a heartbeat
within `dead_after`) and sets each of its lanes to `1 / live` of the provider's configured
rate: the configured `rate` of a provider is therefore the global rate of all daemons
together. Dead workers' rows and their expired claims are the rescuer's (maintenance.py).

The sum never exceeds the rate: a worker that joins waits 1.5 heartbeats after registering
before it sends, so every other worker has counted it (and lowered its share) first; a
worker that leaves deletes its row only after its last request, and the others raise
their share at their next heartbeat. A worker whose heartbeats fail for half of
`dead_after` stops claiming (it could be declared dead by the others), and resumes when
they succeed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from ..engine import Engine
from ..pg import PG_ERRORS, explain
from ..tasks import Tasks, cancel
from .config import DaemonConfig
from .database import Connections
from .outbox import OutboxQueries

log = logging.getLogger("dispatcher.daemon")


class WorkerNameInUse(Exception):
    pass


class WorkerRegistry:
    def __init__(self, cfg: DaemonConfig, pool: Connections, store: OutboxQueries, engine: Engine) -> None:
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.n = store.names
        self.engine = engine  # its lanes get this worker's share; its in-flight count goes in the heartbeat
        self.live = 1
        self.share = 1.0
        self.last_ok = 0.0  # monotonic time of the last successful heartbeat
        self.beats = 0
        self.failures = 0
        self._joined = False  # past the joining wait: may send
        self._applied = False
        self._task: asyncio.Task[None] | None = None

    def collect(self) -> Iterator[Metric]:
        """/metrics: this worker's share, and the live workers."""
        yield GaugeMetricFamily("dispatcher_rate_share", "This worker's part of each provider's rate", value=self.share)
        yield GaugeMetricFamily("dispatcher_workers_live", "Live workers on this outbox", value=self.live)

    def heartbeat_age(self) -> float | None:
        """Seconds since this worker's last answered heartbeat (None before the first), for /healthz."""
        return round(time.monotonic() - self.last_ok, 3) if self.last_ok else None

    # -- state the others read ------------------------------------------------------------
    def fresh(self) -> bool:
        return time.monotonic() - self.last_ok < self.cfg.dead_after / 2

    def ready(self) -> bool:
        """May this worker claim now?"""
        ok = self._joined and self.fresh()
        if ok and not self._applied:
            self.apply()
        return ok

    def apply(self) -> None:
        """This worker's share of every provider's rate, on every lane."""
        e = self.engine
        if not e.snapshot():
            return
        e.set_share(self.share)
        self._applied = True

    # -- lifecycle -----------------------------------------------------------------------------
    async def register(self) -> int:
        """Join; refuse a name a live worker has. Claims left by an earlier process of this name go back
        to pending (returns how many): no other process can be holding them."""
        async with self.pool.acquire() as conn:
            joined = await conn.fetchval(f"""INSERT INTO {self.n.workers} (name, host, pid) VALUES ($1, $2, $3)
                ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), stopping = false, host = $2, pid = $3,
                    started_at = now()
                WHERE {self.n.workers}.heartbeat_at < now() - make_interval(secs => $4)
                RETURNING true""", self.cfg.worker, socket.gethostname(), os.getpid(), float(self.cfg.dead_after))
            if not joined:
                raise WorkerNameInUse(f"worker name '{self.cfg.worker}' is in use by a live worker (its heartbeat "
                                      f"is younger than {self.cfg.dead_after:g} s): choose another --worker name")
            left = await self.store.release(conn)
        self.last_ok = time.monotonic()
        if left:
            log.warning("put back %d claim(s) left by an earlier worker named %s", left, self.cfg.worker)
        return left

    def start(self, tasks: Tasks, on_failure: Callable[[], None]) -> None:
        """Heartbeat as a task of `tasks`. A failure other than the database's (a bug) calls `on_failure`, the
        daemon's stop as failed: not restarted, because a worker without heartbeats is taken for dead by the
        others, whose rescuer takes back its claims while its requests may still be on the wire, and keeps its
        share of the rate when others join."""
        self._task = tasks.start(self._run(), "heartbeat", on_failure=on_failure)

    async def _run(self) -> None:
        hb = self.cfg.heartbeat
        join_at = time.monotonic() + hb * 1.5
        while True:
            await self.beat()
            if not self._joined and time.monotonic() >= join_at and self.fresh():
                self._joined = True
                log.info("worker %s sending: %d live worker(s), %.3g of each provider's rate",
                         self.cfg.worker, self.live, self.share)
            await asyncio.sleep(hb if self._joined else min(hb, max(0.01, join_at - time.monotonic())))

    async def beat(self) -> None:
        cfg, n = self.cfg, self.n
        in_flight = self.engine.in_flight
        try:
            async with self.pool.acquire() as conn:
                alive = await conn.fetchval(f"UPDATE {n.workers} SET heartbeat_at = now(), in_flight = $2 "
                                            "WHERE name = $1 RETURNING true", cfg.worker, in_flight)
                if not alive:
                    log.warning("worker %s was taken for dead by the others (heartbeats late by %.1f s); "
                                "registering again", cfg.worker, time.monotonic() - self.last_ok)
                    await conn.execute(f"INSERT INTO {n.workers} (name, host, pid) VALUES ($1, $2, $3) "
                                       "ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()",
                                       cfg.worker, socket.gethostname(), os.getpid())
                live = await conn.fetchval(f"SELECT count(*) FROM {n.workers} "
                                           "WHERE heartbeat_at >= now() - make_interval(secs => $1)",
                                           float(cfg.dead_after))
                self.last_ok = time.monotonic()
                self.beats += 1
                self.live = max(1, int(live or 1))
                share = 1.0 / self.live
                if share != self.share or not self._applied:
                    if share != self.share:
                        log.info("%d live worker(s): this one sends %.3g of each provider's rate", self.live, share)
                    self.share = share
                    self.apply()
        except PG_ERRORS as e:
            self.failures += 1
            log.warning("heartbeat failed (%s)%s", explain(e, cfg.dsn),
                        "" if self.fresh() else ": not claiming until the database answers")

    async def leave(self) -> None:
        """Stop heartbeating and delete this worker's row (after its last request): the others take its share."""
        await cancel(self._task)
        with contextlib.suppress(*PG_ERRORS):
            async with self.pool.acquire() as conn:
                await conn.execute(f"DELETE FROM {self.n.workers} WHERE name = $1", self.cfg.worker)
