"""Daemon: rows/s draining a shared outbox with one and with two worker processes, and the latency
from insert to provider acceptance.

- drain: N rows inserted at once (one INSERT ... SELECT) while the workers wait; rows/s from the
  insert to the last result. Two workers share one PostgreSQL outbox (SKIP LOCKED claims), on
  the same machine as PostgreSQL and the simulator. Twice: with a simulator that answers at once
  (the machine's cores are the limit: what one worker leaves of them is what a second can use),
  and with the simulator 20 ms away and two connections a worker (each worker is bound by its
  round trips, as against a distant provider: a second worker doubles what is in flight).
  The CPU each part used is measured (psutil), so the figures say where the time went.
- steady: rows inserted a few at a time at a fixed rate below capacity, one worker; latency of
  each row from its insert (`created_at`) to its result recorded (`finished_at`, just after the
  provider accepted it): p50 and p99. The drain figures' latencies are queueing time (every row
  waits for the ones before it).

PostgreSQL: DISPATCHER_BENCH_DSN, else a throwaway cluster (tests/pgserver.py). The 360nrs
simulator runs in its own process without a rate limit or ledger (`dispatcher simulate --only
nrs360 --rate nrs360=1000000 --ledger false`). Delivery reports are off (they would double the
HTTP traffic the daemons handle; tests/test_daemon.py covers them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import tomli_w

from bench.common import on_postgres, simulator
from bench.daemonkit import Workers, Zygote, clear, reset, wait_live

_reset = reset  # bench/api.py's name for it


DRAIN_TEMPLATE = "Hola {name|capitalize}, tu factura de {amount} EUR ya esta disponible."


def write_config(tmp: Path, url: str, table: str, claim: int | None = 2000, concurrency: int = 8,
                 batch_size: int = 1000, heartbeat: float = 0.5, *, rate: float = 1_000_000,
                 template: str = DRAIN_TEMPLATE, campaigns: dict[str, str] | None = None) -> Path:
    """The daemon benches' one config file (tomli_w): a worker on `table` with one 360nrs provider at `rate`
    (unlimited by default), `claim` rows a claim (None: the daemon's default), and `campaigns` (name ->
    template) beside the default template."""
    daemon = {"dsn_env": "DISPATCHER_DSN", "table": table, "region": "ES", "heartbeat": heartbeat, "dead_after": 3,
              "lease": 10, "poll": 0.5, "log_level": "warning"}
    if claim is not None:
        daemon["claim"] = claim
    doc: dict[str, Any] = {
        "daemon": daemon, "http": {"listen": "127.0.0.1:0"},
        "providers": {"sms": {"type": "nrs360", "url": url, "username_env": "NRS360_USER",
                              "password_env": "NRS360_PASSWORD", "rate": rate, "batch_size": batch_size,
                              "concurrency": concurrency}},
        "defaults": {"sender": "ACME", "template": template}}
    if campaigns:
        doc["campaigns"] = {name: {"template": t} for name, t in campaigns.items()}
    path = tmp / f"{table.replace('.', '_')}.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def _listener(port: int) -> Any:
    """The process listening on a local TCP port (PostgreSQL's postmaster, the simulator), if visible."""
    import psutil
    with contextlib.suppress(psutil.Error, OSError):
        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                return psutil.Process(c.pid)
    return None


class Cpu:
    """CPU used over a drain, in % of one core (100 per core): by the daemons, by PostgreSQL (postmaster and
    backends, autovacuum included), by the simulator, and by the whole machine (theirs, the kernel's work on
    the loopback connections, and anything else running)."""

    def __init__(self, pids: list[int], dsn: str, url: str) -> None:
        import psutil
        self.groups: dict[str, list[Any]] = {"daemons": [psutil.Process(p) for p in pids]}
        self.postmaster = _listener(urllib.parse.urlsplit(dsn).port or 5432)
        sim = _listener(urllib.parse.urlsplit(url).port or 80)
        if sim is not None:
            self.groups["simulator"] = [sim]
        self.t0 = time.monotonic()
        self.start = self._sample()

    def _postgres(self) -> float:
        """The postmaster, its live backends (autovacuum workers come and go) and the ones it reaped."""
        import psutil
        pm = self.postmaster
        with contextlib.suppress(psutil.Error):
            t = pm.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            for c in pm.children():
                with contextlib.suppress(psutil.Error):
                    total += sum(c.cpu_times()[:2])
            return total
        return 0.0

    def _sample(self) -> dict[str, float]:
        import psutil
        out = {}
        for name, procs in self.groups.items():
            total = 0.0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += sum(p.cpu_times()[:2])
            out[name] = total
        if self.postmaster is not None:
            out["postgres"] = self._postgres()
        t = psutil.cpu_times()
        out["machine"] = t.user + t.system + getattr(t, "nice", 0.0)
        return out

    def done(self) -> dict[str, Any]:
        el = time.monotonic() - self.t0
        end = self._sample()
        return {f"cpu_pct_{k}": round((end[k] - self.start[k]) / el * 100) for k in end}


async def _until_drained(conn: Any, table: str, timeout: float) -> None:
    """Until no row is pending or claimed: two index probes a poll (counting the table would cost the
    database more than the daemons' claims do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE status = 'pending') "
                                   f"OR EXISTS (SELECT 1 FROM {table} WHERE lease_until IS NOT NULL)"):
            return
        await asyncio.sleep(0.1)


async def drain(dsn: str, table: str, rows: int, timeout: float) -> dict[str, Any]:
    """`rows` inserted at once while the workers wait; rows/s from the insert to the last result."""
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"""INSERT INTO {table} (recipient, variables)
            SELECT '+346' || lpad(g::text, 8, '0'), jsonb_build_object('name', 'name' || g, 'amount', g || '.50')
            FROM generate_series(1, $1) g""", rows)
        await _until_drained(conn, table, timeout)
        r = await conn.fetchrow(f"""SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) AS total,
                extract(epoch FROM max(finished_at) - min(created_at)) AS seconds,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p50,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p99,
                count(DISTINCT worker) AS workers
            FROM {table}""")
        by_worker = {w: n for w, n in await conn.fetch(f"SELECT worker, count(*) FROM {table} GROUP BY 1 ORDER BY 1")}
    finally:
        await conn.close()
    seconds = float(r["seconds"] or 0)
    return {"rows": rows, "sent": r["sent"], "seconds": round(seconds, 3),
            "rows_per_s": round(r["sent"] / seconds) if seconds else None,
            "queue_p50_ms": round(float(r["p50"] or 0) * 1000, 1), "queue_p99_ms": round(float(r["p99"] or 0) * 1000, 1),
            "by_worker": by_worker}


_drain = drain  # bench/daemon_events.py's name for it


async def _steady(dsn: str, table: str, rate: int, seconds: float) -> dict[str, Any]:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        tick = 0.02
        per = max(1, round(rate * tick))
        n = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            await conn.execute(f"""INSERT INTO {table} (recipient, variables)
                SELECT '+347' || lpad(g::text, 8, '0'), jsonb_build_object('name', 'n' || g, 'amount', '1.00')
                FROM generate_series($1::int, $2::int) g""", n + 1, n + per)
            n += per
            await asyncio.sleep(max(0.0, t0 + (n / per) * tick - time.monotonic()))
        await _until_drained(conn, table, 30)
        r = await conn.fetchrow(f"""SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p50,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p99,
                max(extract(epoch FROM finished_at - created_at)) AS max
            FROM {table}""")
    finally:
        await conn.close()
    return {"rows": n, "sent": r["sent"], "rate": rate, "p50_ms": round(float(r["p50"] or 0) * 1000, 1),
            "p99_ms": round(float(r["p99"] or 0) * 1000, 1), "max_ms": round(float(r["max"] or 0) * 1000, 1)}


def _sim_latency(url: str, ms: float) -> None:
    req = urllib.request.Request(url + "/_sim/config", data=f'{{"latency_ms": {ms}}}'.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def _pair(dsn: str, url: str, tmp: Path, name: str, rows: int, heartbeat: float, **provider: Any) -> dict[str, Any]:
    """The same drain with one worker, then with two."""
    out: dict[str, Any] = {"rows": rows, "provider": provider}
    for n in (1, 2):
        schema = f"bench_{name}{n}"
        table = f"{schema}.outbox"
        asyncio.run(reset(dsn, schema))
        workers = Workers(write_config(tmp, url, table, heartbeat=heartbeat, **provider), dsn, n)
        result: dict[str, Any] = {}
        try:
            asyncio.run(wait_live(dsn, table, n, heartbeat))
            cpu = Cpu([p.pid for p in workers.procs], dsn, url)
            result = asyncio.run(drain(dsn, table, rows, timeout=600))
            result.update(cpu.done())
        finally:
            result["exit_codes"] = workers.stop()
            out[f"workers_{n}"] = result
    one, two = out["workers_1"].get("rows_per_s"), out["workers_2"].get("rows_per_s")
    out["scaling"] = round(two / one, 2) if one and two else None
    return out


def _reused(dsn: str, url: str, tmp: Path, rows: int, heartbeat: float,
            zygote: Zygote) -> tuple[dict[str, Any], dict[str, Any]]:
    """Quick mode: `_pair`'s two drains and the steady latency on one outbox, by two daemons where they were
    four (forked from the zygote): w0 drains alone, w1 joins it for the second drain and leaves, w0 takes the
    steady rows (with the drain's claim of 2000, not 500); the rows deleted between the parts. (The pair, the
    latency.)"""
    table = "bench_cpu.outbox"
    out: dict[str, Any] = {"rows": rows, "provider": {}}
    asyncio.run(reset(dsn, "bench_cpu"))
    config = write_config(tmp, url, table, heartbeat=heartbeat)
    one, left = Workers(config, dsn, 1, zygote=zygote), []
    try:
        for n in (1, 2):
            two = Workers(config, dsn, 1, first=1, zygote=zygote) if n == 2 else None
            result: dict[str, Any] = {}
            out[f"workers_{n}"] = result
            try:
                asyncio.run(wait_live(dsn, table, n, heartbeat))
                cpu = Cpu([p.pid for p in one.procs + (two.procs if two else [])], dsn, url)
                result.update(asyncio.run(drain(dsn, table, rows, timeout=600)), **cpu.done())
            finally:
                left = two.stop() if two else left
            asyncio.run(clear(dsn, table))
        asyncio.run(wait_live(dsn, table, 1, heartbeat))
        latency = asyncio.run(_steady(dsn, table, 1000, 2))
    finally:
        codes = one.stop()
        for n, more in ((1, []), (2, left)):
            out.setdefault(f"workers_{n}", {})["exit_codes"] = codes + more
    one_s, two_s = out["workers_1"].get("rows_per_s"), out["workers_2"].get("rows_per_s")
    out["scaling"] = round(two_s / one_s, 2) if one_s and two_s else None
    return out, latency


def run(quick: bool = False) -> dict[str, Any]:
    return on_postgres(lambda dsn: measure(dsn, quick))


def measure(dsn: str, quick: bool) -> dict[str, Any]:
    # quick: heartbeats every 0.2 s, so a joining worker waits 0.3 s before it sends (not 0.75 s), five times
    heartbeat = 0.2 if quick else 0.5
    out: dict[str, Any] = {"cores": os.cpu_count(), "heartbeat_s": heartbeat}
    with simulator("nrs360", "--rate", "nrs360=1000000") as url, \
            tempfile.TemporaryDirectory(prefix="dispatcher-bench-daemon-") as tmp:
        if quick:  # two daemons, not four (`_reused`)
            with Zygote() as zygote:
                out["cpu_bound"], out["latency"] = _reused(dsn, url, Path(tmp), 8_000, heartbeat, zygote)
            return out
        # the simulator answers at once: one worker, PostgreSQL and the simulator share the cores
        out["cpu_bound"] = _pair(dsn, url, Path(tmp), "cpu", 100_000, heartbeat)
        # a provider 20 ms away and two connections a worker: each worker is bound by its round trips
        # (not in quick mode: three more daemons started, and 10 s of a quick run's 47)
        _sim_latency(url, 20)
        try:
            out["latency_bound"] = _pair(dsn, url, Path(tmp), "rtt", 40_000, heartbeat,
                                         concurrency=2, batch_size=100)
        finally:
            _sim_latency(url, 0)
        schema = "bench_steady"
        asyncio.run(reset(dsn, schema))
        workers = Workers(write_config(Path(tmp), url, f"{schema}.outbox", claim=500, heartbeat=heartbeat), dsn, 1)
        try:
            asyncio.run(wait_live(dsn, f"{schema}.outbox", 1, heartbeat))
            out["latency"] = asyncio.run(_steady(dsn, f"{schema}.outbox", 2000, 10))
        finally:
            workers.stop()
    return out


def table(r: dict[str, Any]) -> str:
    lines = ["| provider | workers | rows | rows/s | scaling | queue p50 / p99 ms | rows per worker | CPU %: daemons, "
             "PostgreSQL, simulator, machine |", "|---|---|---|---|---|---|---|---|"]
    for key, label in (("cpu_bound", "answers at once"), ("latency_bound", "20 ms away, 2 connections a worker")):
        pair = r.get(key)
        if not pair:
            continue
        for n in (1, 2):
            w = pair.get(f"workers_{n}") or {}
            cpu = ", ".join(str(w.get(f"cpu_pct_{k}", "?")) for k in ("daemons", "postgres", "simulator", "machine"))
            lines.append(f"| {label} | {n} | {w.get('sent', 0):,} | {w.get('rows_per_s') or 0:,} | "
                         f"{pair.get('scaling') if n == 2 else ''} | {w.get('queue_p50_ms')} / {w.get('queue_p99_ms')} | "
                         f"{', '.join(f'{v:,}' for v in (w.get('by_worker') or {}).values())} | {cpu} |")
    lat = r.get("latency") or {}
    lines.append("")
    lines.append(f"{r.get('cores')} cores shared by the workers, PostgreSQL and the simulator (CPU %: 100 per core). "
                 f"Insert to provider acceptance at a steady {lat.get('rate', 0):,} rows/s (one worker): "
                 f"p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms, max {lat.get('max_ms')} ms "
                 f"({lat.get('sent', 0):,} rows).")
    return "\n".join(lines)


if __name__ == "__main__":
    import orjson
    quick = "--quick" in sys.argv
    result = run(quick=quick)
    if "error" in result:
        sys.exit(result["error"])
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(table(result))
