"""The daemon's connection pool, as a handle its components are given before the pool exists.

The daemon's object graph is built in `Daemon.__init__`, where there is no event loop to open a pool
on (River's `NewClient` likewise builds and does not connect). Each component that reads or writes
the outbox is given this handle when it is made and acquires its connections through it; `open()`, in
`Daemon.start`, makes the pool. Before that, or after `close()`, `acquire()` raises: nothing touches
the database before the daemon starts.

The components need nothing else of it, and say so: they take `Connections` (what `acquire()` gives),
which this handle is, and an `asyncpg.Pool` is too (tests and the bench give them one).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import asyncpg
from asyncpg.pool import PoolAcquireContext

from .. import pg


class Connections(Protocol):
    """Where a daemon component gets its connections, one at a time: `async with x.acquire() as conn`."""

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext: ...


class Database:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def open(self, **kw: Any) -> None:
        """Make the pool (`kw` goes to pg.pool: sizes, init, timeout); PG_ERRORS when the database cannot be reached."""
        self._pool = await pg.pool(self.dsn, **kw)

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        """A connection of the pool, as `asyncpg.Pool.acquire` (`async with db.acquire() as conn`)."""
        if self._pool is None:
            raise RuntimeError("the daemon's database is not open yet (Daemon.start opens it)")
        return self._pool.acquire(timeout=timeout)

    async def close(self, timeout: float = 5.0) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout)
