"""Webhook drain: status events/s POSTed by daemon/webhooks.py (Standard Webhooks signing, batches of
`batch`, the delivery lock and the bookkeeping UPDATEs) to a local receiver, from a backlog of N events.

The backlog is written straight into the events table (as the outbox's triggers would), then the delivery
loop runs until the receiver has every event; the receiver checks each event arrives once and verifies
every 20th POST with the reference library (standardwebhooks). Issue 27 asks for 5,000 events/s or more.
PostgreSQL: DISPATCHER_BENCH_DSN, else a throwaway cluster (tests/pgserver.py).

    python -m bench.webhooks [N [BATCH]]      (one drain; `python -m bench --only webhooks`: the median of 3)
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import orjson
import uvloop
from aiohttp import web

from bench.common import on_postgres
from dispatcher.daemon.config import DaemonConfig, WebhookSpec
from dispatcher.daemon.outbox import TableNames
from dispatcher.daemon.outbox.schema import init_connection, migrations
from dispatcher.daemon.webhooks import Webhooks
from dispatcher.pg import migrate
from dispatcher.tasks import Tasks

SECRET = "whsec_" + base64.b64encode(b"bench webhook secret, 32 bytes!!").decode()


async def _measure(dsn: str, n: int, batch: int) -> dict[str, Any]:
    from standardwebhooks import Webhook
    schema = f"bench_wh_{uuid.uuid4().hex[:8]}"
    names = TableNames(f"{schema}.outbox")
    conn = await asyncpg.connect(dsn)
    await migrate(conn, names.migration, migrations(names))
    await conn.execute(f"""INSERT INTO {names.events} (outbox_id, key, status, provider, message_id)
                           SELECT g, 'k' || g, 'sent', 'nrs', 'm' || g FROM generate_series(1, $1) g""", n)
    seen: set[int] = set()
    twice = 0
    posts = 0
    done = asyncio.Event()
    verifier = Webhook(SECRET)

    async def hook(request: web.Request) -> web.Response:
        nonlocal twice, posts
        body = await request.read()
        posts += 1
        if posts % 20 == 1:
            verifier.verify(body, dict(request.headers))
        for e in orjson.loads(body)["events"]:
            twice += e["event_id"] in seen
            seen.add(e["event_id"])
        if len(seen) >= n:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    spec = WebhookSpec(url=url, secret=SECRET, batch=batch)
    cfg = DaemonConfig(path="bench", dsn=dsn, dsn_env="DISPATCHER_BENCH_DSN", table=names.table, webhooks=spec)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, init=init_connection)
    w = Webhooks(cfg, spec, pool, names)
    t0 = time.perf_counter()
    w.start(Tasks())
    try:
        await asyncio.wait_for(done.wait(), 600)
        took = time.perf_counter() - t0
    finally:
        await w.stop()
        await pool.close()
        await runner.cleanup()
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
    return {"events": n, "seconds": round(took, 3), "events_per_s": round(n / took), "posts": posts,
            "batch": batch, "delivered_twice": twice}


def bench_webhooks(n: int = 40_000, batch: int = 100) -> dict[str, Any]:
    """N events drained at `batch` events a POST ([webhooks] batch; 100 by default)."""
    return on_postgres(lambda dsn: uvloop.run(_measure(dsn, n, batch)))


def run(quick: bool = False) -> dict[str, Any]:
    """The `python -m bench` scenario: 40,000 events at 100 a POST, three drains, the median (quick: one
    drain of 5,000, under a second)."""
    n, rounds = (5_000, 1) if quick else (40_000, 3)
    drains = [bench_webhooks(n, 100) for _ in range(rounds)]
    if any("error" in d for d in drains):
        return next(d for d in drains if "error" in d)
    median = statistics.median(d["events_per_s"] for d in drains)
    return {"events": n, "batch": 100, "drains": drains, "events_per_s": round(median),
            "delivered_twice": sum(d["delivered_twice"] for d in drains), "goal_events_per_s": 5000}


def table(r: dict[str, Any]) -> str:
    rows = ["| events | a POST | drains | events/s (median) | each drain | delivered twice | goal |",
            "|---:|---:|---:|---:|---|---:|---:|",
            f"| {r['events']:,} | {r['batch']} | {len(r['drains'])} | {r['events_per_s']:,} | "
            + ", ".join(f"{d['events_per_s']:,}/s ({d['posts']} POSTs, {d['seconds']} s)" for d in r["drains"])
            + f" | {r['delivered_twice']} | {r['goal_events_per_s']:,}/s |"]
    return "\n".join(rows)


if __name__ == "__main__":
    print(orjson.dumps(bench_webhooks(*(int(a) for a in sys.argv[1:3])),
                       option=orjson.OPT_INDENT_2).decode())
