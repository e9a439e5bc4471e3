"""Daemon as a service (issue 24): what a transactional message and a small campaign see beside bulk, and
what a pause, a resume and a cancel take to be obeyed; the drain's throughput beside the code before.

- latency, at 1, 20 and 100 requests/s (one worker, one message a request, eight connections): insert
  (`created_at`) to provider acceptance (`finished_at`, as the result is recorded just after the
  provider's answer), p50 / p99 / max, at three points:
  - idle: one message at a time, the lane empty;
  - load: messages inserted at 80% of the rate for a stretch, every one of them;
  - backlog: priority-10 messages one at a time behind 100,000 queued, and the backlog's pace meanwhile
    in % of the rate (the priority ones take their slots from it).
- fairness: two workers sharing 100 requests/s; 100,000 rows of a big campaign queued, then 1,000 of a
  small one. The seconds the small one takes, against its fair half of the rate (20 s).
- control, two workers at 100 requests/s on a big campaign, each change by the documented UPDATE of the
  campaigns table (the HTTP routes run the same, and answer once it is obeyed): pause: seconds from the
  UPDATE to the last row sent and to no row claimed; resume: to the first row sent; cancel: to no row
  claimed, and the rows sent after that (0: only what was on the wire went).
- throughput: the drain of bench/daemon.py (one worker, rows inserted at once, an unlimited provider)
  with this checkout and with the code before issue 24 (`BASELINE`, from `git archive`), alternating,
  in the same run; medians and their ratio.

Rows go in by SQL (the HTTP API inserts the same rows); the simulator runs without a rate limit, the
daemons keep to theirs. Run: `python -m bench.daemon_service [--quick]` (JSON, then the table), or
`python -m bench --only daemon_service`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import ROOT, on_postgres, simulator
from bench.daemon import drain
from bench.daemon import write_config as daemon_config
from bench.daemonkit import Workers, Zygote, reset, wait_live

HEARTBEAT = 0.2
BASELINE = os.environ.get("DISPATCHER_BENCH_BASELINE", "db119f4")  # main when issue 24 was filed
RATES = (1.0, 20.0, 100.0)


def write_config(tmp: Path, url: str, table: str, rate: float) -> Path:
    """bench/daemon.py's file at `rate`, one message a request, the daemon's own claim, and three campaigns
    (`ctl`: the control part's when it follows the fairness part on the same workers, in quick mode)."""
    return daemon_config(tmp, url, table, claim=None, batch_size=1, heartbeat=HEARTBEAT, rate=rate,
                         template="Hola {name}", campaigns={"big": "Hola {name}, big", "small": "Hola {name}, small",
                                                            "ctl": "Hola {name}, ctl"})


async def _insert(conn: Any, table: str, n: int, start: int, campaign: str | None = None, priority: int = 0) -> None:
    await conn.execute(f"""INSERT INTO {table} (recipient, campaign, priority, variables)
        SELECT '+346' || lpad(g::text, 8, '0'), $3, $4, jsonb_build_object('name', 'n' || g)
        FROM generate_series($1::int, $2::int) g""", start, start + n - 1, campaign, priority)


async def _one(conn: Any, table: str, i: int, priority: int = 0) -> int:
    return int(await conn.fetchval(f"""INSERT INTO {table} (recipient, priority, body)
        VALUES ('+3461' || lpad($1::int::text, 7, '0'), $2, 'code 1234') RETURNING id""", i, priority))


async def _until(conn: Any, query: str, *args: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await conn.fetchval(query, *args):
            return True
        await asyncio.sleep(0.01)
    return False


async def _waits(conn: Any, table: str, ids: list[int]) -> list[float]:
    rows = await conn.fetch(f"""SELECT extract(epoch FROM finished_at - created_at)::float8 FROM {table}
        WHERE id = ANY($1::bigint[]) AND status = 'sent'""", ids)
    return [r[0] for r in rows]


def _figures(waits: list[float], n: int) -> dict[str, Any]:
    s = sorted(waits)
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    return {"n": n, "sent": len(s), "p50_ms": ms(statistics.median(s)) if s else None,
            "p99_ms": ms(s[min(len(s) - 1, int(0.99 * len(s)))]) if s else None, "max_ms": ms(s[-1]) if s else None}


async def _idle(conn: Any, table: str, rate: float, n: int) -> dict[str, Any]:
    ids = []
    for i in range(n):
        oid = await _one(conn, table, i)
        await _until(conn, f"SELECT status = 'sent' FROM {table} WHERE id = $1", oid, timeout=30)
        ids.append(oid)
        await asyncio.sleep(1.05 / rate)  # the lane idle again: its slot free
    return _figures(await _waits(conn, table, ids), n)


async def _load(conn: Any, table: str, rate: float, seconds: float, least: int = 3) -> dict[str, Any]:
    """Rows inserted one at a time at 80% of the rate, on a schedule (not after each other's answer)."""
    every = 1 / (0.8 * rate)
    n = max(least, int(seconds / every))
    t0 = time.monotonic()
    ids = []
    for i in range(n):
        await asyncio.sleep(max(0.0, t0 + i * every - time.monotonic()))
        ids.append(await _one(conn, table, 10_000 + i))
    await _until(conn, f"SELECT count(*) = $2 FROM {table} WHERE id = ANY($1::bigint[]) AND status = 'sent'",
                 ids, n, timeout=30 + n / rate)
    return {**_figures(await _waits(conn, table, ids), n), "rows_per_s": round(0.8 * rate, 1)}


async def _backlog(conn: Any, table: str, rate: float, backlog: int, urgent: int, gap: float,
                   first: int = 2) -> dict[str, Any]:
    """Priority-10 rows one at a time once the backlog is under way (`first` of its rows sent, or a second's)."""
    await _insert(conn, table, backlog, 1, "big")
    await _until(conn, f"SELECT count(*) >= $1 FROM {table} WHERE status = 'sent' AND campaign = 'big'",
                 max(first, int(rate)), timeout=60)
    t0, sent0 = time.monotonic(), await conn.fetchval(f"SELECT count(*) FROM {table} WHERE campaign = 'big' "
                                                      "AND status = 'sent'")
    ids = []
    for i in range(urgent):
        oid = await _one(conn, table, 20_000 + i, priority=10)
        await _until(conn, f"SELECT status NOT IN ('pending', 'claimed') FROM {table} WHERE id = $1", oid, timeout=60)
        ids.append(oid)
        await asyncio.sleep(gap)
    el = time.monotonic() - t0
    sent = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE campaign = 'big' AND status = 'sent'") - sent0
    return {**_figures(await _waits(conn, table, ids), urgent), "backlog": backlog,
            "backlog_pace_pct": round(100 * sent / el / rate, 1)}


async def _latency(dsn: str, table: str, rate: float, quick: bool) -> dict[str, Any]:
    """Idle, load, backlog. Quick at under 5/s: one idle message, two at load, one behind the backlog (each
    waits its one-second slot: the longest part of a quick run, 11 s at 2, 3 and 2; 6 s so)."""
    import asyncpg
    few = quick and rate < 5
    conn = await asyncpg.connect(dsn)
    try:
        out = {"rate": rate, "idle": await _idle(conn, table, rate, (1 if few else 2) if quick else 3 if rate < 5 else 10),
               "load": await _load(conn, table, rate, 2.0 if quick else 10.0, least=2 if few else 3)}
        out["backlog"] = await _backlog(conn, table, rate, 3_000 if quick else 100_000,
                                        (1 if few else 2) if quick else 3 if rate < 5 else 5,
                                        0.5 if quick else max(1.0, 2 / rate), first=1 if few else 2)
    finally:
        await conn.close()
    return out


async def _fair(dsn: str, table: str, rate: float, big: int, small: int) -> dict[str, Any]:
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
    finally:
        await conn.close()
    return {"rate": rate, "big": big, "small": small, "small_done": done, "small_s": round(took, 2),
            "fair_half_s": round(small / (rate / 2), 2)}


async def _change(conn: Any, table: str, state: str, campaign: str = "big") -> float:
    """The documented UPDATE (an INSERT when the campaign has no row yet); its commit's time (monotonic)."""
    await conn.execute(f"""INSERT INTO {table}_campaigns (name, state) VALUES ($2, $1)
        ON CONFLICT (name) DO UPDATE SET state = $1""", state, campaign)
    return time.monotonic()


IDLE = "SELECT NOT EXISTS (SELECT 1 FROM {table} WHERE lease_until IS NOT NULL AND status = 'claimed')"


async def _control(dsn: str, table: str, rate: float, rows: int, campaign: str = "big") -> dict[str, Any]:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    sent = f"SELECT count(*) FROM {table} WHERE campaign = '{campaign}' AND status = 'sent'"
    idle = IDLE.format(table=table)
    try:
        await _insert(conn, table, rows, 1 if campaign == "big" else 20_000_000, campaign)  # not the fairness rows
        await _until(conn, f"SELECT ({sent}) >= $1", int(rate), timeout=30)
        t = await _change(conn, table, "paused", campaign)
        await _until(conn, idle, timeout=10)
        settled = time.monotonic() - t
        await asyncio.sleep(1.0)  # a quiet second, to see that nothing more goes out
        last = await conn.fetchval(f"SELECT extract(epoch FROM now() - max(finished_at))::float8 FROM {table} "
                                   "WHERE campaign = $1 AND status = 'sent'", campaign)
        stop = max(0.0, (time.monotonic() - t) - float(last))
        before = await conn.fetchval(sent)
        t = await _change(conn, table, "active", campaign)
        await _until(conn, f"SELECT ({sent}) > $1", before, timeout=10)
        resumed = time.monotonic() - t
        await _until(conn, f"SELECT ({sent}) >= $1", before + int(rate), timeout=30)
        t = await _change(conn, table, "cancelled", campaign)
        await _until(conn, idle, timeout=10)
        cancelled, at_cancel = time.monotonic() - t, await conn.fetchval(sent)
        await asyncio.sleep(1.0)
        after = await conn.fetchval(sent) - at_cancel
        counts = {r[0]: r[1] for r in await conn.fetch(
            f"SELECT status, count(*) FROM {table} WHERE campaign = $1 GROUP BY 1", campaign)}
    finally:
        await conn.close()
    return {"rate": rate, "workers": 2, "pause_to_last_request_s": round(stop, 3), "pause_settled_s": round(settled, 3),
            "resume_to_first_request_s": round(resumed, 3), "cancel_settled_s": round(cancelled, 3),
            "sent_after_cancel_settled": after, "counts": counts, "rows": rows,
            "counts_match_rows": sum(counts.values()) == rows and set(counts) <= {"sent", "cancelled"}}


async def _fair_then_control(dsn: str, table: str, rate: float, big: int, small: int, rows: int) -> dict[str, Any]:
    """Quick mode: the fairness part, then the control part on the same two workers (two daemons started, not
    four): the fairness campaigns cancelled by the documented UPDATE and no row claimed, then the control
    part on a campaign of its own (`ctl`), whose counts are its own rows'."""
    import asyncpg
    fair = await _fair(dsn, table, rate, big, small)
    conn = await asyncpg.connect(dsn)
    try:
        for campaign in ("big", "small"):
            await _change(conn, table, "cancelled", campaign)
        await _until(conn, IDLE.format(table=table), timeout=10)
    finally:
        await conn.close()
    return {"fairness": fair, "control": await _control(dsn, table, rate, rows, campaign="ctl")}


def _baseline() -> Path | None:
    """The code before issue 24 (`BASELINE`), extracted from git once into the system temp dir under its
    commit id and kept: its numba kernels compile (~10 s of CPU) on its first run there and load from their
    on-disk cache beside its sources on later runs, as this checkout's do. None without git history."""
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{BASELINE}^{{commit}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        root = Path(tempfile.gettempdir()) / f"dispatcher-bench-baseline-{sha}"
        if root.is_dir():
            return root
        part = Path(tempfile.mkdtemp(prefix=f"{root.name}-", dir=root.parent))
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(part)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    try:
        part.rename(root)  # whole or not at all: a run beside this one may have put it there first
    except OSError:
        shutil.rmtree(part, ignore_errors=True)
    return root if root.is_dir() else None


def _throughput(dsn: str, url: str, tmp: Path, rows: int, rounds: int, quick: bool,
                zygote: Zygote | None = None) -> dict[str, Any]:
    """The drain, this checkout against the baseline, alternating (a shared machine drifts); a first round
    of each is not counted (when the baseline's kernels are not cached yet, it compiles them then), except
    in quick mode (one round each, indicative only; this checkout's worker forked from the zygote)."""
    base = _baseline()
    runs: dict[str, list[float]] = {"now": [], "before": []}
    first = 0 if quick else 1
    for i in range(rounds + first):
        for who, root in (("before", base), ("now", ROOT)):
            if root is None:
                continue
            schema = f"bench_thr_{who}_{i}"
            asyncio.run(reset(dsn, schema))
            workers = Workers(daemon_config(tmp, url, f"{schema}.outbox", heartbeat=HEARTBEAT), dsn, 1, root=root,
                              zygote=zygote if root == ROOT else None)
            try:
                asyncio.run(wait_live(dsn, f"{schema}.outbox", 1, HEARTBEAT))
                r = asyncio.run(drain(dsn, f"{schema}.outbox", rows, timeout=300))
            finally:
                workers.stop()
                asyncio.run(reset(dsn, schema))
            if i >= first:
                runs[who].append(float(r["rows_per_s"] or 0))
    med = {k: round(statistics.median(v)) if v else None for k, v in runs.items()}
    return {"rows": rows, "baseline": BASELINE if base is not None else None, "runs": runs,
            "now_rows_per_s": med["now"], "before_rows_per_s": med["before"],
            "ratio": round(med["now"] / med["before"], 3) if med["now"] and med["before"] else None}


def _one_worker(dsn: str, url: str, tmp: Path, schema: str, rate: float, n: int, job: Any,
                zygote: Zygote | None = None) -> dict[str, Any]:
    asyncio.run(reset(dsn, schema))
    workers = Workers(write_config(tmp, url, f"{schema}.outbox", rate), dsn, n, zygote=zygote)
    try:
        asyncio.run(wait_live(dsn, f"{schema}.outbox", n, HEARTBEAT))
        return asyncio.run(job(dsn, f"{schema}.outbox"))
    finally:
        workers.stop()
        asyncio.run(reset(dsn, schema))


def measure(dsn: str, quick: bool) -> dict[str, Any]:
    """Latency at each rate, fairness and control, each with its own workers and schema, one after another;
    then the drain's throughput, alone. In quick mode all at once, the drain's too (they wait on rates and
    heartbeats, hardly on the cores: about 38 s of waiting one after another, 12 s at once), the control
    part after the fairness part on its workers: 7 daemons started, not 9, and 13 s where it was 23."""
    out: dict[str, Any] = {"cores": os.cpu_count()}
    with simulator("nrs360", "--rate", "nrs360=1000000") as url, \
            tempfile.TemporaryDirectory(prefix="dispatcher-bench-service-") as name:
        tmp = Path(name)
        parts: dict[str, tuple[str, float, int, Any]] = {
            f"{rate:g}": (f"bench_lat{int(rate)}", rate, 1, lambda d, t, r=rate: _latency(d, t, r, quick))
            for rate in RATES}
        if quick:
            parts["fairness"] = ("bench_fair", 100.0, 2, lambda d, t: _fair_then_control(d, t, 100.0, 3000, 100, 2000))
        else:
            parts["fairness"] = ("bench_fair", 100.0, 2, lambda d, t: _fair(d, t, 100.0, 100_000, 1000))
            parts["control"] = ("bench_control", 100.0, 2, lambda d, t: _control(d, t, 100.0, 20_000))

        def part(key: str, zygote: Zygote | None = None) -> dict[str, Any]:
            return _one_worker(dsn, url, tmp, *parts[key], zygote=zygote)

        if quick:  # the workers of this checkout forked from a zygote
            with Zygote() as zygote, ThreadPoolExecutor(len(parts) + 1) as pool:
                drained = pool.submit(_throughput, dsn, url, tmp, 3_000, 1, quick, zygote)
                done = dict(zip(parts, pool.map(lambda key: part(key, zygote), parts), strict=True))
                done.update(done.pop("fairness"), throughput=drained.result())
        else:
            done = {key: part(key) for key in parts}
            done["throughput"] = _throughput(dsn, url, tmp, 50_000, 3, quick)
        out["latency"] = {f"{rate:g}": done[f"{rate:g}"] for rate in RATES}
        out["fairness"], out["control"], out["throughput"] = done["fairness"], done["control"], done["throughput"]
    return out


def run(quick: bool = False) -> dict[str, Any]:
    return on_postgres(lambda dsn: measure(dsn, quick))


def _lat(p: dict[str, Any]) -> str:
    return f"{p.get('p50_ms')} / {p.get('p99_ms')} / {p.get('max_ms')} ({p.get('sent')} of {p.get('n')})"


def table(r: dict[str, Any]) -> str:
    lines = ["| rate (req/s) | idle: p50 / p99 / max ms | at 80% load | priority-10 behind the backlog | "
             "backlog's pace meanwhile |", "|---:|---|---|---|---:|"]
    for rate, p in (r.get("latency") or {}).items():
        b = p.get("backlog") or {}
        lines.append(f"| {rate} | {_lat(p.get('idle') or {})} | {_lat(p.get('load') or {})} | {_lat(b)} behind "
                     f"{b.get('backlog', 0):,} | {b.get('backlog_pace_pct')}% |")
    lines.append("\nInsert to provider acceptance, one worker, one message a request, 8 connections.")
    f = r.get("fairness") or {}
    if f:
        lines.append(f"\nFairness: a {f['small']:,}-row campaign queued behind {f['big']:,} at {f['rate']:g} req/s "
                     f"(2 workers) was done in {f['small_s']} s (its fair half of the rate: {f['fair_half_s']} s).")
    c = r.get("control") or {}
    if c:
        lines.append(f"\nControl by the documented UPDATE, 2 workers at {c['rate']:g} req/s: pause to the last request "
                     f"{c['pause_to_last_request_s']} s (no row claimed after {c['pause_settled_s']} s); resume to the "
                     f"first request {c['resume_to_first_request_s']} s; cancel settled in {c['cancel_settled_s']} s, "
                     f"{c['sent_after_cancel_settled']} row(s) sent after; counts match the rows: "
                     f"{c['counts_match_rows']}.")
    t = r.get("throughput") or {}
    if t.get("ratio"):
        lines.append(f"\nDrain throughput, {t['rows']:,} rows, one worker (median of {len(t['runs']['now'])}, "
                     f"alternating in this run): {t['now_rows_per_s']:,} rows/s against {t['before_rows_per_s']:,} with "
                     f"{t['baseline']} (before issue 24): {t['ratio']:.2f}x.")
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
