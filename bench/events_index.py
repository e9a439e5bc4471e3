"""The index schema/004_views.sql puts on the events table, by what it costs and what it saves.

N outbox rows go from claimed to sent in UPDATEs of 1,000 (as the sink writes results); the outbox's
trigger writes one event a row. Measured: the PostgreSQL backend's CPU seconds for those UPDATEs (read
from /proc, so other work on a shared machine weighs less than in wall time), then the time of a look-up
of one message's events (GET /v1/messages/{id}/events), with no index on events.outbox_id, a btree
(outbox_id, id), and the BRIN the schema uses. Each variant `rounds` times, interleaved; medians.
PostgreSQL: DISPATCHER_BENCH_DSN, else a throwaway cluster (tests/pgserver.py); on its machine.

    python -m bench.events_index [N [ROUNDS]]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import orjson

from bench.common import on_postgres
from dispatcher.daemon.outbox import TableNames
from dispatcher.daemon.outbox.schema import migrations
from dispatcher.pg import migrate

KINDS = {"none": None, "btree": "(outbox_id, id)",
         "brin": "USING brin (outbox_id) WITH (pages_per_range = 16, autosummarize = on)"}


async def _one(dsn: str, n: int, index: str | None) -> tuple[float, float]:
    names = TableNames(f"bench_ei_{uuid.uuid4().hex[:8]}.outbox")
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, names.migration, migrations(names)[:3])  # the schema before version 4
        if index:
            await conn.execute(f"CREATE INDEX ON {names.events} {index}")
        await conn.execute(f"INSERT INTO {names.outbox} (recipient, body) "
                           "SELECT '+3460' || g, 'x' FROM generate_series(1, $1) g", n)
        await conn.execute(f"UPDATE {names.outbox} SET status = 'claimed'")
        await conn.execute(f"VACUUM ANALYZE {names.outbox}")
        pid = await conn.fetchval("SELECT pg_backend_pid()")

        def cpu() -> float:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        t0 = cpu()
        for lo in range(1, n + 1, 1000):
            await conn.execute(f"UPDATE {names.outbox} SET status = 'sent', sent_via = 'nrs', finished_at = now(), "
                               "provider_message_id = 'm' || id WHERE id >= $1 AND id < $2", lo, lo + 1000)
        spent = cpu() - t0
        await conn.execute(f"VACUUM ANALYZE {names.events}")
        ids = range(1, n, max(1, n // 50))
        l0 = time.perf_counter()
        for oid in ids:
            await conn.fetch(f"SELECT id FROM {names.events} WHERE outbox_id = $1 ORDER BY id", oid)
        return spent, (time.perf_counter() - l0) / len(ids) * 1000
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {names.schema} CASCADE")
        await conn.close()


async def _measure(dsn: str, n: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
    for _ in range(rounds):
        for kind, index in KINDS.items():
            runs[kind].append(await _one(dsn, n, index))
    base = statistics.median(c for c, _ in runs["none"])
    out: dict[str, Any] = {"rows": n, "rounds": rounds}
    for kind, r in runs.items():
        spent = statistics.median(c for c, _ in r)
        out[kind] = {"backend_cpu_s": round(spent, 3), "cpu_ratio_to_none": round(spent / base, 3),
                     "lookup_ms": round(statistics.median(lk for _, lk in r), 2)}
    return out


def bench_events_index(n: int = 100_000, rounds: int = 4) -> dict[str, Any]:
    return on_postgres(lambda dsn: asyncio.run(_measure(dsn, n, rounds)))


if __name__ == "__main__":
    print(orjson.dumps(bench_events_index(*(int(a) for a in sys.argv[1:3])), option=orjson.OPT_INDENT_2).decode())
