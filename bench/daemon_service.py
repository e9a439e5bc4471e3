"""Daemon as a service (issue 24): what a transactional message and a small campaign see beside bulk.

- priority: one worker at `rate` requests/s, one message a request, a backlog of 5,000 rows queued;
  then priority-10 rows one at a time, a few seconds apart. Insert (`created_at`) to provider
  acceptance (`finished_at`) of each, p50 / p99 / max; and the backlog's pace meanwhile, in % of the rate.
- fairness: two workers sharing 100 requests/s; a big campaign queued, then a small one of 1,000 rows
  (200 quick). The seconds the small one takes, against its fair half of the rate.
- pause: the big campaign paused by the documented UPDATE of the campaigns table while both workers
  send it; the seconds from the UPDATE to the last row it sent.

Rows go in by SQL (the HTTP API inserts the same rows); the simulator runs without a rate limit, the
daemons keep to theirs. Run: `python -m bench.daemon_service [--quick]` (JSON, then a table); also
the scenario `daemon_service` of `python -m bench`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.daemonkit import Workers, reset, wait_live

HEARTBEAT = 0.2


def write_config(tmp: Path, url: str, table: str, rate: float) -> Path:
    path = tmp / f"{table.replace('.', '_')}.toml"
    path.write_text(f"""
[daemon]
dsn_env = "DISPATCHER_DSN"
table = "{table}"
region = "ES"
heartbeat = {HEARTBEAT}
dead_after = 3
lease = 10
poll = 0.5
log_level = "warning"

[http]
listen = "127.0.0.1:0"

[providers.sms]
type = "nrs360"
url = "{url}"
username_env = "NRS360_USER"
password_env = "NRS360_PASSWORD"
rate = {rate}
batch_size = 1
concurrency = 8

[defaults]
sender = "ACME"
template = "Hola {{name}}"

[campaigns.big]
template = "Hola {{name}}, big"

[campaigns.small]
template = "Hola {{name}}, small"
""")
    return path


async def _insert(conn: Any, table: str, n: int, start: int, campaign: str | None = None, priority: int = 0) -> None:
    await conn.execute(f"""INSERT INTO {table} (recipient, campaign, priority, variables)
        SELECT '+346' || lpad(g::text, 8, '0'), $3, $4, jsonb_build_object('name', 'n' || g)
        FROM generate_series($1::int, $2::int) g""", start, start + n - 1, campaign, priority)


async def _until(conn: Any, query: str, *args: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await conn.fetchval(query, *args):
            return True
        await asyncio.sleep(0.02)
    return False


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 1) if s else 0.0


async def _priority(dsn: str, table: str, rate: float, urgent: int, gap: float) -> dict[str, Any]:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await _insert(conn, table, 5000, 1)
        await _until(conn, f"SELECT count(*) >= $1 FROM {table} WHERE status = 'sent'", int(rate * 2), timeout=30)
        t0, sent0 = time.monotonic(), await conn.fetchval(f"SELECT count(*) FROM {table} WHERE status = 'sent'")
        waits = []
        for i in range(urgent):
            oid = await conn.fetchval(f"""INSERT INTO {table} (recipient, priority, body)
                VALUES ('+3461' || lpad($1::int::text, 7, '0'), 10, 'code 1234') RETURNING id""", i)
            await _until(conn, f"SELECT status <> 'pending' AND status <> 'claimed' FROM {table} WHERE id = $1", oid,
                         timeout=60)
            waits.append(float(await conn.fetchval(
                f"SELECT extract(epoch FROM finished_at - created_at) FROM {table} WHERE id = $1", oid) or 60))
            await asyncio.sleep(gap)
        el = time.monotonic() - t0
        sent = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE status = 'sent' AND priority = 0") - sent0
    finally:
        await conn.close()
    return {"rate": rate, "backlog": 5000, "priority_rows": urgent, "gap_s": gap,
            "p50_ms": round(statistics.median(waits) * 1000, 1), "p99_ms": _pct(waits, 0.99),
            "max_ms": round(max(waits) * 1000, 1), "backlog_pace_pct": round(100 * sent / el / rate, 1)}


async def _fair_and_pause(dsn: str, table: str, rate: float, big: int, small: int) -> dict[str, Any]:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await _insert(conn, table, big, 1, "big")
        await _until(conn, f"SELECT count(*) >= $1 FROM {table} WHERE status = 'sent'", int(rate), timeout=30)
        t0 = time.monotonic()
        await _insert(conn, table, small, 10_000_000, "small")
        done = await _until(conn, f"SELECT count(*) = $1 FROM {table} WHERE campaign = 'small' AND status = 'sent'",
                            small, timeout=small / rate * 4 + 10)
        took = time.monotonic() - t0
        span = await conn.fetchrow(f"""SELECT extract(epoch FROM max(finished_at) - min(created_at)) AS s
            FROM {table} WHERE campaign = 'small'""")
        # pause the big campaign as an application would, by SQL; the daemons read it at every claim
        paused_at = await conn.fetchval(f"""INSERT INTO {table}_campaigns (name, state) VALUES ('big', 'paused')
            ON CONFLICT (name) DO UPDATE SET state = 'paused' RETURNING updated_at""")
        await _until(conn, f"SELECT count(*) = 0 FROM {table} WHERE status = 'claimed'", timeout=10)
        await asyncio.sleep(0.5)  # a quiet stretch, to see that nothing more goes out
        last = await conn.fetchval(f"SELECT max(finished_at) FROM {table} WHERE campaign = 'big' AND status = 'sent'")
    finally:
        await conn.close()
    return {"rate": rate, "big": big, "small": small, "small_done": done, "small_s": round(took, 2),
            "small_span_s": round(float(span["s"] or 0), 2), "fair_half_s": round(small / (rate / 2), 2),
            "pause_to_stop_s": round(max(0.0, (last - paused_at).total_seconds()), 3)}


def measure_service(dsn: str, url: str, tmp: Path, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in (20.0, 1.0) if not quick else (20.0,):
        schema = f"bench_prio{int(rate)}"
        asyncio.run(reset(dsn, schema))
        workers = Workers(write_config(tmp, url, f"{schema}.outbox", rate), dsn, 1)
        try:
            asyncio.run(wait_live(dsn, f"{schema}.outbox", 1, HEARTBEAT))
            out[f"priority_{int(rate)}"] = asyncio.run(_priority(dsn, f"{schema}.outbox", rate,
                                                                 3 if quick or rate < 5 else 5, 1.0 if quick else 3.0))
        finally:
            workers.stop()
    schema = "bench_fair"
    asyncio.run(reset(dsn, schema))
    workers = Workers(write_config(tmp, url, f"{schema}.outbox", 100.0), dsn, 2)
    try:
        asyncio.run(wait_live(dsn, f"{schema}.outbox", 2, HEARTBEAT))
        out["fairness"] = asyncio.run(_fair_and_pause(dsn, f"{schema}.outbox", 100.0, 5000 if quick else 100_000,
                                                      200 if quick else 1000))
    finally:
        workers.stop()
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """The `python -m bench` scenario: PostgreSQL from bench.common, the 360nrs simulator without a limit."""
    import tempfile

    from bench.common import on_postgres, simulator

    def go(dsn: str) -> dict[str, Any]:
        with simulator("nrs360", "--rate", "nrs360=1000000") as url, \
                tempfile.TemporaryDirectory(prefix="dispatcher-bench-service-") as tmp:
            return measure_service(dsn, url, Path(tmp), quick)
    return on_postgres(go)


def table(r: dict[str, Any]) -> str:
    lines = ["| scenario | figure |", "|---|---|"]
    for k, p in r.items():
        if k.startswith("priority_"):
            lines.append(f"| priority-10 row behind {p['backlog']:,} queued at {p['rate']:g} req/s | insert to provider "
                         f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, max {p['max_ms']} ms; backlog kept "
                         f"{p['backlog_pace_pct']}% of the rate |")
    f = r.get("fairness") or {}
    if f:
        lines.append(f"| {f['small']:,}-row campaign behind {f['big']:,} at {f['rate']:g} req/s (2 workers) | "
                     f"done in {f['small_s']} s (its fair half: {f['fair_half_s']} s) |")
        lines.append(f"| pause of the big campaign (SQL UPDATE), 2 workers | last request {f['pause_to_stop_s']} s "
                     "after it |")
    return "\n".join(lines)


if __name__ == "__main__":

    import orjson


    result = run("--quick" in sys.argv)
    if "error" in result:
        sys.exit(result["error"])
    Path("bench/results").mkdir(exist_ok=True)
    Path("bench/results/daemon_service.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(table(result))
