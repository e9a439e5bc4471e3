"""A pause or a cancel obeyed by the rows already claimed: what this daemon holds of a paused or cancelled
campaign and has not put on the wire goes back (paused: queued again; cancelled: cancelled), at once on
the control NOTIFY and every EVERY seconds without one (the campaigns table is the truth).

Two ways in, so that no row of a stopped campaign reaches the wire once this daemon has read the change:
the engine's lanes give back what they hold (`Engine.withdraw`: queued, in open groups, held by a worker
waiting for a slot), and the source gives back what a claim that read the campaign as active returns
afterwards (`OutboxSource.stopped`). A row on the wire is never taken back: it ends as the provider answers.
Rows of a cancelled campaign that come back to queued after its cancel (a release, a deferral or a retry
racing the cancel's trigger) are cancelled at the next look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from ..engine import Engine
from ..pg import explain
from .config import DaemonConfig
from .database import Connections
from .outbox import OutboxQueries, OutboxSource

log = logging.getLogger("dispatcher.daemon")
EVERY = 1.0  # seconds between two looks at the campaigns table when no NOTIFY came


class Withdrawal:
    def __init__(self, cfg: DaemonConfig, pool: Connections, store: OutboxQueries, source: OutboxSource,
                 engine: Engine) -> None:
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.source = source  # its claims give back the stopped campaigns' rows before the lanes
        self.engine = engine  # its lanes are what a withdrawal takes from
        self.wake = asyncio.Event()
        self.withdrawn = 0  # rows given back so far
        self.swept = 0  # queued rows of cancelled campaigns cancelled after their cancel (see check)
        self.checks = 0

    def notify(self, *args: Any) -> None:
        """The campaigns table changed (its trigger's NOTIFY)."""
        self.wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EVERY):
                    await self.wake.wait()
            self.wake.clear()
            try:
                await self.check()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning("could not read the campaigns' state (%s): trying again in %g s",
                            explain(e, self.cfg.dsn), EVERY)

    async def check(self) -> int:
        """Read the campaigns' state; give back what the lanes hold of the stopped ones. How many rows."""
        async with self.pool.acquire() as conn:
            stopped = {name: r["state"] for name, r in (await self.store.campaign_states(conn)).items()
                       if r["state"] != "active"}
            self.source.stopped = stopped  # from now on a claim's rows of these go back before the lanes
            self.checks += 1
            cancelled = [name for name, state in stopped.items() if state == "cancelled"]
            if cancelled:  # rows a release, deferral or retry put back to queued after the cancel
                self.swept += await self.store.sweep_cancelled(conn, cancelled)
            if not stopped:
                return 0
            msgs = self.engine.withdraw(lambda m: m.group in stopped)
            if not msgs:
                return 0
            n = await self.store.give_back(conn, [m.seq for m in msgs], list({m.group for m in msgs}))
        self.withdrawn += n
        log.info("%d claimed row(s) of paused or cancelled campaigns taken back before the wire", n)
        return n
