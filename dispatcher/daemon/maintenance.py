"""The outbox's upkeep, apart from the heartbeat (River's rescuer and cleaner): small services, each a
job run every so often by every daemon, safe to run by several at once (each one set-based statement).

- rescuer, every `heartbeat` seconds: dead workers' rows go (silent for three `dead_after`s), and the
  claims whose lease ended with no live worker behind them go back to pending, or fail as abandoned once
  claimed `max_claims` times (outbox.OutboxQueries.reap);
- depth, every 5 s at least: the rows pending, due and claimed, for /metrics and /healthz;
- cleaner, every 5 minutes when `retention_days` is set: finished rows, reports and delivered events
  older than that, in bounded batches (outbox.OutboxQueries.purge, purge_events).

A failure is logged and the job runs again at its next turn: the heartbeat (heartbeat.py) alone decides
whether this worker may claim. A bug that ends a job's loop is logged with its traceback and the job is
restarted with backoff (tasks.Tasks.keep), alone: the other jobs go on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..pg import PG_ERRORS, explain
from ..tasks import Tasks, cancel
from .config import DaemonConfig
from .database import Connections
from .outbox import OutboxQueries

log = logging.getLogger("dispatcher.daemon")
CLEAN_EVERY = 300.0  # seconds between two purges
DEPTH_EVERY = 5.0  # seconds between two samples of the outbox's depth, at least
PURGE_BATCHES = 100  # batches of 10,000 a purge takes at most a round (a million rows)

Job = Callable[[asyncpg.Connection], Awaitable[None]]


class Maintenance:
    def __init__(self, cfg: DaemonConfig, pool: Connections, store: OutboxQueries) -> None:
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.reaped = 0  # claims of dead workers taken back by this worker
        self.abandoned = 0  # rows failed after too many claims by dead workers
        self.depth: dict[str, int] = {}
        self.failures = 0
        self._tasks: list[asyncio.Task[None]] = []

    def collect(self) -> Iterator[Metric]:
        """/metrics: the sampled outbox depth, and the dead workers' claims taken back or failed."""
        g = GaugeMetricFamily("dispatcher_outbox_rows", "Outbox rows by state (sampled)", labels=["state"])
        for state, n in self.depth.items():
            g.add_metric([state], n)
        yield g
        yield CounterMetricFamily("dispatcher_reclaimed", "Claims of dead workers taken back by this worker",
                                  value=self.reaped)
        yield CounterMetricFamily("dispatcher_abandoned", "Rows failed after too many claims by dead workers",
                                  value=self.abandoned)

    def start(self, tasks: Tasks) -> None:
        """Each job a task of `tasks`, restarted (logged, with backoff) if a bug ends its loop."""
        jobs = [("rescuer", self.cfg.heartbeat, self.rescue), ("depth", max(DEPTH_EVERY, self.cfg.heartbeat), self.sample)]
        if self.cfg.retention_days:
            jobs.append(("cleaner", CLEAN_EVERY, self.clean))
        self._tasks = [tasks.keep(functools.partial(self._every, every, job), name) for name, every, job in jobs]

    async def stop(self) -> None:
        await cancel(*self._tasks)
        self._tasks = []

    async def _every(self, seconds: float, job: Job) -> None:
        while True:
            t0 = time.monotonic()
            try:
                async with self.pool.acquire() as conn:
                    await job(conn)
            except PG_ERRORS as e:
                self.failures += 1
                log.warning("outbox upkeep (%s) failed (%s): again in %g s", job.__name__, explain(e, self.cfg.dsn),
                            seconds)
            await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))

    async def rescue(self, conn: asyncpg.Connection) -> None:
        """Dead workers' rows deleted; their expired claims back to pending (or failed as abandoned)."""
        await conn.execute(f"DELETE FROM {self.store.names.workers} WHERE heartbeat_at < now() - make_interval(secs => $1)",
                           float(self.cfg.dead_after) * 3)
        released, failed = await self.store.reap(conn)
        if released or failed:
            log.warning("took back %d claim(s) of dead workers; %d row(s) failed as abandoned", released, failed)
        self.reaped += released
        self.abandoned += failed

    async def sample(self, conn: asyncpg.Connection) -> None:
        self.depth = await self.store.depth(conn)

    async def clean(self, conn: asyncpg.Connection) -> None:
        for purge in (self.store.purge, self.store.purge_events):
            for _ in range(PURGE_BATCHES):
                if await purge(conn, self.cfg.retention_days) < 10000:
                    break
