"""What status events cost the daemon: the same drain (one worker, the simulator answering at once) with the
outbox's status events written and with them off, side by side, alternating, medians.

Off is the outbox's two event triggers disabled (`ALTER TABLE ... DISABLE TRIGGER`): the insert trigger writes
no `queued` events and the update trigger none, and the results statement, which writes its rows' events
itself (schema v5), writes them only while the update trigger is enabled. So off is a daemon that writes no
event at all, and the difference is every event of the drain: a `queued` one a row at the insert and a
`sent` one at its result.

Two figures a side: rows/s from the insert to the last result, and the CPU the daemon and PostgreSQL spent a
thousand rows (psutil). On a shared machine the wall figure moves with whatever else runs; the CPU a row
moves less, so both are given. Five alternating pairs, each drain after a checkpoint and with no
autovacuum at work (`_settle`); --quick, a smoke test sharing PostgreSQL with other scenarios, one pair
unsettled. Run: `python -m bench.daemon_events [--quick]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import on_postgres, simulator
from bench.daemon import Cpu, _drain, write_config
from bench.daemonkit import Workers, Zygote, reset, wait_live


async def _triggers(dsn: str, table: str, on: bool) -> None:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        base = table.rpartition(".")[2]
        verb = "ENABLE" if on else "DISABLE"
        await conn.execute(f'ALTER TABLE {table} {verb} TRIGGER "{base}_events_insert", '
                           f'{verb} TRIGGER "{base}_events_update"')
    finally:
        await conn.close()


async def _settle(dsn: str, most: float = 30.0) -> None:
    """Each drain starts from the same state: a checkpoint done, and no autovacuum still at work on what an
    earlier drain or scenario left (at most `most` seconds' wait). Without it, a checkpoint or a vacuum of
    someone else's rows fell into one side's drain or the other's, at random: 0.78x to 1.00x in one hour.
    The drain's own checkpoints and vacuums (its rows, its events) still count."""
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
        deadline = time.monotonic() + most
        while time.monotonic() < deadline and await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"):
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def _one(dsn: str, url: str, tmp: Path, rows: int, heartbeat: float, on: bool,
         zygote: Zygote | None = None, settle: bool = True) -> dict[str, Any]:
    schema = f"bench_events_{'on' if on else 'off'}"
    table = f"{schema}.outbox"
    asyncio.run(reset(dsn, schema))
    workers = Workers(write_config(tmp, url, table, heartbeat=heartbeat), dsn, 1, zygote=zygote)
    try:
        asyncio.run(wait_live(dsn, table, 1, heartbeat))
        asyncio.run(_triggers(dsn, table, on))
        if settle:
            asyncio.run(_settle(dsn))
        cpu = Cpu([p.pid for p in workers.procs], dsn, url)
        result = asyncio.run(_drain(dsn, table, rows, timeout=600))
        result.update(cpu.done())
    finally:
        workers.stop()
    spent = (result.get("cpu_pct_daemons", 0) + result.get("cpu_pct_postgres", 0)) / 100 * result["seconds"]
    result["cpu_ms_per_1000_rows"] = round(spent / max(result["sent"], 1) * 1e6, 1)
    return result


def measure_events(dsn: str, url: str, tmp: Path, rows: int, heartbeat: float, reps: int,
                   zygote: Zygote | None = None, settle: bool = True) -> dict[str, Any]:
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for rep in range(reps):
        for on in (True, False) if rep % 2 == 0 else (False, True):
            runs[on].append(_one(dsn, url, tmp, rows, heartbeat, on, zygote, settle))
    out: dict[str, Any] = {"rows": rows, "repetitions": reps}
    for on, name in ((True, "with_events"), (False, "without_events")):
        out[name] = {"rows_per_s": statistics.median(r["rows_per_s"] or 0 for r in runs[on]),
                     "cpu_ms_per_1000_rows": statistics.median(r["cpu_ms_per_1000_rows"] for r in runs[on]),
                     "runs_rows_per_s": [r["rows_per_s"] for r in runs[on]],
                     "events": 2 * rows if on else 0}
    w, wo = out["with_events"], out["without_events"]
    out["rate_ratio"] = round(w["rows_per_s"] / wo["rows_per_s"], 3) if wo["rows_per_s"] else None
    out["cpu_ratio"] = round(w["cpu_ms_per_1000_rows"] / wo["cpu_ms_per_1000_rows"], 3) \
        if wo["cpu_ms_per_1000_rows"] else None
    return out


def table(r: dict[str, Any]) -> str:
    w, wo = r["with_events"], r["without_events"]
    return (f"Status events' cost, one worker draining {r['rows']:,} rows (answers at once), medians of "
            f"{r['repetitions']} alternating runs each: with events {w['rows_per_s']:,} rows/s at "
            f"{w['cpu_ms_per_1000_rows']} ms of daemon + PostgreSQL CPU a thousand rows, without "
            f"{wo['rows_per_s']:,} rows/s at {wo['cpu_ms_per_1000_rows']} ms: {r['rate_ratio']:.2f}x the rate, "
            f"{r['cpu_ratio']:.2f}x the CPU (goal: events cost at most 10%).")


def run(quick: bool = False) -> dict[str, Any]:
    def go(dsn: str) -> dict[str, Any]:
        with simulator("nrs360", "--rate", "nrs360=1000000") as url, \
                tempfile.TemporaryDirectory(prefix="dispatcher-bench-events-") as tmp, \
                Zygote() if quick else contextlib.nullcontext() as zygote:  # quick: workers forked warm
            return measure_events(dsn, url, Path(tmp), 8_000 if quick else 100_000, 0.2 if quick else 0.5,
                                  1 if quick else 5, zygote, settle=not quick)
    return on_postgres(go)


if __name__ == "__main__":
    import orjson
    result = run("--quick" in sys.argv)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if "error" not in result:
        print(table(result))
