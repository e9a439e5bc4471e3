"""Where a blast keeps its delivery reports: beside its results.

A JSONL or CSV results file: `RUN.reports.jsonl` beside it, one line a report, one write a callback (what
was answered 200 is the kernel's). The PostgreSQL sink: the table `<results table>_reports` in the same
database, one INSERT a callback (its DDL, with what each column holds, is `_create` below: the columns of the
daemon's outbox reports with `run_id` for `outbox_id`, indexed by run, provider and message id).

Either way every report is kept as it came, duplicates and strangers included; the tally reads them back
for a resume or a later `dispatcher reports`.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import callbacks, pg
from ..errors import ConfigError
from ..providers.dlr import Report
from .delivery import line, reports_path, sent_keys
from .heard import Keys, Tally


class FileStore:
    def __init__(self, results: tuple[str, Path]) -> None:
        self.results = results
        self.path = reports_path(results[1])
        self._fd = -1

    def where(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve())}

    async def open(self, tally: Tally) -> None:
        tally.read(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def write(self, reports: list[Report], now: dt.datetime) -> None:
        os.write(self._fd, b"".join(line(r, now) for r in reports))

    async def sent(self) -> Keys:
        return sent_keys(*self.results)

    async def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _create(table: str, results: str):
    async def create(conn) -> None:
        await conn.execute(f"""CREATE TABLE IF NOT EXISTS {table} (
            id              bigserial PRIMARY KEY,
            run_id          text COLLATE "C" NOT NULL,
            provider        text NOT NULL,  -- the alias it came for
            message_id      text,           -- matches the results table's message_id
            recipient       text,
            status          text NOT NULL,  -- delivered, undelivered, failed, expired, read, ...
            rank            smallint,       -- 1 accepted < 2 sent < 3 final < 4 engagement
            provider_status text,
            event_at        timestamptz,
            part            integer,
            received_at     timestamptz NOT NULL DEFAULT now(),
            payload         jsonb NOT NULL)""")
        name = pg.ident(results.rpartition(".")[2] + "_reports_by_message")
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} (run_id, provider, message_id)")
    return create


class PgStore:
    """The PostgreSQL sink's reports table (same database, same run id)."""

    def __init__(self, dsn: str, results_table: str, run_id: str) -> None:
        self.dsn = dsn
        self.results = pg.qualified(results_table)
        self.name = results_table + "_reports"
        self.table = pg.qualified(self.name)
        self.run_id = run_id
        self._pool: Any = None  # a few connections: callbacks come at once

    def where(self) -> dict[str, Any]:
        return {"table": self.name}

    async def open(self, tally: Tally) -> None:
        try:
            self._pool = await pg.pool(self.dsn, min_size=1, max_size=4)
            async with self._pool.acquire() as conn:
                await pg.migrate(conn, f"reports:{self.name}", [_create(self.table, self.results)])
            rows = await self._pool.fetch(f"SELECT provider, message_id, status, rank, event_at FROM {self.table} "
                                          "WHERE run_id = $1 ORDER BY id", self.run_id)
        except Exception as e:
            raise ConfigError(f"[reports]: {self.name}: {pg.explain(e, self.dsn)}") from None
        for r in rows:
            tally.add(r[0], r[1], r[2], r[3], r[4].isoformat() if r[4] else "")

    async def write(self, reports: list[Report], now: dt.datetime) -> None:
        rows = [(self.run_id, r.provider, r.message_id, r.recipient, r.status, r.rank, r.provider_status, r.event_at,
                 r.part, now, callbacks.payload_json(r.payload))
                for r in reports]
        await self._pool.executemany(
            f"INSERT INTO {self.table} (run_id, provider, message_id, recipient, status, rank, provider_status, "
            "event_at, part, received_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)", rows)

    async def sent(self) -> Keys:
        """The run's sent message ids, an array a provider (no row objects a record)."""
        rows = await self._pool.fetch(f"SELECT provider, array_agg(message_id) FROM {self.results} WHERE run_id = $1 "
                                      "AND status = 'sent' AND message_id IS NOT NULL GROUP BY provider", self.run_id)
        return Keys({r[0]: np.sort(np.array([m.encode() for m in r[1]], dtype=np.bytes_)) for r in rows})

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def store_for(origin: dict[str, Any], primary: Any, run_id: str) -> FileStore | PgStore:
    """The store beside the run's first sink. Raises ConfigError for a sink that has no place for them."""
    r = origin.get("results") or {}
    if r.get("type") in ("jsonl", "csv") and r.get("path"):
        return FileStore((r["type"], Path(r["path"])))
    dsn, table = getattr(primary, "dsn", None), getattr(primary, "table", None)
    if isinstance(dsn, str) and isinstance(table, str):
        return PgStore(dsn, table, run_id)
    raise ConfigError("[reports]: the first sink must be a results file (JSONL, CSV) or PostgreSQL: reports are "
                      "kept beside the results")
