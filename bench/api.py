"""Daemon HTTP API: messages/s accepted into the outbox by `POST /v1/messages` in batches of 500, beside a
raw asyncpg COPY of the same rows into the same table (its triggers included: the events every route makes).

One daemon process (`python -m dispatcher daemon`) with the API on; the client posts prebuilt request bodies
(each message with its own idempotency key) from this process, a few requests in flight at once. The rows'
`not_before` is a day ahead, so the daemon's claims do not compete with the intake being measured.
PostgreSQL: DISPATCHER_BENCH_DSN, else a throwaway cluster (tests/pgserver.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.common import ROOT, on_postgres, simulator
from bench.daemon import _reset, write_config

KEY = "bench-api-key-0123456789"
BATCH = 500
IN_FLIGHT = 4


def _start(config: Path, dsn: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "DISPATCHER_DSN": dsn, "DISPATCHER_API_KEY": KEY}
    p = subprocess.Popen([sys.executable, "-m", "dispatcher", "daemon", str(config), "--worker", "api"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert p.stdout is not None
    url = ""
    for line in p.stdout:
        if line.startswith("dispatcher daemon "):
            url = line.split()[-1]
        if line.strip() == "ready":
            return p, url
    raise RuntimeError(f"daemon did not start: {p.stderr.read() if p.stderr else ''}")


def _messages(n: int, tag: str, later: str) -> list[dict[str, Any]]:
    return [{"to": f"+3460{i:07d}", "body": f"Tu codigo es {i:06d}", "key": f"{tag}-{i}", "not_before": later}
            for i in range(n)]


async def _post_all(url: str, messages: list[dict[str, Any]]) -> float:
    bodies = [orjson.dumps({"messages": messages[i:i + BATCH]}) for i in range(0, len(messages), BATCH)]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with http.post(url + "/v1/messages", data=body, headers=headers) as r:
                if r.status != 202:
                    raise RuntimeError(f"POST /v1/messages: {r.status} {(await r.text())[:300]}")
                await r.read()

    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(IN_FLIGHT)))
        return time.perf_counter() - t0


async def _copy(dsn: str, table: str, messages: list[dict[str, Any]]) -> float:
    schema, _, name = table.partition(".")
    records = [(m["key"], m["to"], m["body"], dt.datetime.fromisoformat(m["not_before"])) for m in messages]
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        for i in range(0, len(records), BATCH):
            await conn.copy_records_to_table(name, schema_name=schema, records=records[i:i + BATCH],
                                             columns=["key", "recipient", "body", "not_before"])
        return time.perf_counter() - t0
    finally:
        await conn.close()


def run(quick: bool = False) -> dict[str, Any]:
    return on_postgres(lambda dsn: measure(dsn, quick))


def measure(dsn: str, quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 100_000
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    out: dict[str, Any] = {"messages": n, "batch": BATCH, "in_flight": IN_FLIGHT}
    with simulator("nrs360", "--rate", "nrs360=1000000") as sim, \
            tempfile.TemporaryDirectory(prefix="dispatcher-bench-api-") as tmp:
        schema = "bench_api"
        table = f"{schema}.outbox"
        asyncio.run(_reset(dsn, schema))
        config = write_config(Path(tmp), sim, table)
        config.write_text(config.read_text().replace("[http]\n", '[http]\napi_key_env = "DISPATCHER_API_KEY"\n'))
        proc, url = _start(config, dsn)
        try:
            api_s = asyncio.run(_post_all(url, _messages(n, "api", later)))
            copy_s = asyncio.run(_copy(dsn, table, _messages(n, "copy", later)))
        finally:
            proc.terminate()
            proc.wait(60)
    out["api_msgs_per_s"] = round(n / api_s)
    out["copy_msgs_per_s"] = round(n / copy_s)
    out["ratio"] = round(copy_s / api_s, 3)
    out["goal_msgs_per_s"] = 5000
    return out


def table(r: dict[str, Any]) -> str:
    return "\n".join([
        "| route | messages | msgs/s | ratio to COPY |", "|---|---|---|---|",
        f"| POST /v1/messages, {r['batch']} a request, {r['in_flight']} in flight | {r['messages']:,} | "
        f"{r['api_msgs_per_s']:,} | {r['ratio']} |",
        f"| asyncpg COPY, {r['batch']} rows a call | {r['messages']:,} | {r['copy_msgs_per_s']:,} | 1 |",
        "", f"Goal: at least {r['goal_msgs_per_s']:,} msgs/s through the API (validation, idempotency keys, one "
        "transaction a request, the events trigger)."])


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(table(result))
