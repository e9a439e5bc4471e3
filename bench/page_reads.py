"""What the operator's page's reads cost on a big outbox (N rows: 90% sent through two providers, a third
of them delivered, 1 in 50,000 failed, the rest queued; five campaigns).

- campaigns: GET /v1/campaigns' one scan (queries.sql `campaign_counts`), as it is (grouped by the
  provider that took each row too, with the units sent and delivered that cost multiplies) against the
  same scan without the cost columns: what cost costs.
- failures: the ten newest failed or rejected rows (`list_messages_desc`, the page's failures table), with
  the failures' partial index of schema version 4, and by the primary key as a generic plan would read it.

Each statement `rounds` times, interleaved; medians. The page asks for the campaigns at most a tenth of
the time (page.js: it waits ten times an answer's time), so its share of the database is bounded either way.
PostgreSQL: DISPATCHER_BENCH_DSN, else a throwaway cluster (tests/pgserver.py).

    python -m bench.page_reads [N [ROUNDS]]
"""

from __future__ import annotations

import asyncio
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
from dispatcher.daemon.outbox.store import named_queries
from dispatcher.pg import migrate

WITHOUT_COST = """SELECT coalesce(campaign, '') AS campaign, status, count(*) AS n,
    count(*) FILTER (WHERE delivery_status = 'delivered') AS delivered,
    count(*) FILTER (WHERE delivery_rank >= 3 AND delivery_status <> 'delivered') AS undelivered,
    count(*) FILTER (WHERE status = 'sent' AND finished_at >= now() - make_interval(secs => $2)) AS recent
FROM {outbox} WHERE $1::text IS NULL OR coalesce(campaign, '') = $1
GROUP BY 1, 2"""


async def _timed(conn: asyncpg.Connection, sql: str, *args: Any) -> float:
    t0 = time.perf_counter()
    await conn.fetch(sql, *args)
    return (time.perf_counter() - t0) * 1000


async def _measure(dsn: str, n: int, rounds: int) -> dict[str, Any]:
    names = TableNames(f"bench_pr_{uuid.uuid4().hex[:8]}.outbox")
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, names.migration, migrations(names))
        await conn.execute(f"""INSERT INTO {names.outbox} (recipient, body, campaign, status, sent_via, parts,
                                                           delivery_status, finished_at)
            SELECT '+3460' || g, 'x', 'c' || (g % 5),
                   CASE WHEN g % 50000 = 7 THEN 'failed' WHEN g % 10 = 0 THEN 'pending' ELSE 'sent' END,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE 'p' || (g % 2) END, 1 + g % 2,
                   CASE WHEN g % 3 = 0 AND g % 10 <> 0 THEN 'delivered' END, now()
            FROM generate_series(1, $1) g""", n)
        await conn.execute(f"VACUUM ANALYZE {names.outbox}")
        queries = named_queries()
        counts = {"with_cost": names.fill(queries["campaign_counts"]), "without_cost": names.fill(WITHOUT_COST)}
        newest = names.fill(queries["list_messages_desc"])
        by_key = newest.replace("status = ANY($3::text[])", "status || '' = ANY($3::text[])")  # past the index
        assert by_key != newest
        times: dict[str, list[float]] = {k: [] for k in (*counts, "failures_indexed", "failures_by_primary_key")}
        failed = ["failed", "rejected"]
        for _ in range(rounds):
            for name, sql in counts.items():
                times[name].append(await _timed(conn, sql, None, 60.0))
            times["failures_indexed"].append(await _timed(conn, newest, 10**18, None, failed, None, 11))
            times["failures_by_primary_key"].append(await _timed(conn, by_key, 10**18, None, failed, None, 11))
        out: dict[str, Any] = {"rows": n, "rounds": rounds}
        out.update({k: round(statistics.median(v), 2) for k, v in times.items()})
        out["cost_columns_ratio"] = round(out["with_cost"] / out["without_cost"], 3)
        return out
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {names.schema} CASCADE")
        await conn.close()


def bench_page_reads(n: int = 1_000_000, rounds: int = 7) -> dict[str, Any]:
    return on_postgres(lambda dsn: asyncio.run(_measure(dsn, n, rounds)))


if __name__ == "__main__":
    print(orjson.dumps(bench_page_reads(*(int(a) for a in sys.argv[1:3])), option=orjson.OPT_INDENT_2).decode())
