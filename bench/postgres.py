"""PostgreSQL source and sink beside raw asyncpg, and a whole blast Postgres -> 360nrs -> Postgres.

On the same table of N recipients (1,000,000; quick: 20,000) in one run, each figure the
median of 3 repetitions (quick: one), the two sides of each pair interleaved so a noisy neighbour hits both:
  source   PostgresSource.chunks() (keyset pages, rows turned into columns of text fields,
           as the engine consumes them)  beside  a raw asyncpg server-side cursor fetching
           `SELECT * FROM audience` in pages of the same size (rows left as asyncpg Records);
           also beside the raw cursor on the source's own statement (the same text casts).
           Both sides run under the engine's garbage-collector settings (`collector_for_streams`:
           what exists is frozen, young collections every 50,000 allocations), as the source does in
           every blast: under the interpreter's defaults (a young collection every 700) the collector's
           scans of the Records in flight took about 40% of the source's CPU and 35% of the raw
           cursor's (measured), a cost neither side pays in the engine.
  sink     PostgresSink.write() of result columns in chunks of 2048 (the engine's chunk) into its results
           table  beside  raw `copy_records_to_table` of the same rows, already as tuples, into an
           identical table (same columns and primary key); also the sink with `mark_sent`.
  blast    the engine, Postgres table -> 360nrs simulator (own process, no ledger, 100,000
           requests/s allowed, 1000 recipients a request) -> Postgres results, in messages/s,
           beside the same blast from the table exported to CSV with JSONL results (what the
           engine does without a database: the cost of Postgres at both ends).
The server: DISPATCHER_BENCH_DSN, or a throwaway cluster (tests/pgserver.py) on 127.0.0.1.

    python bench/postgres.py [--quick] [--only source,sink,blast] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import uvloop  # noqa: E402

from bench.common import on_postgres, simulator  # noqa: E402

N_FULL = 1_000_000
N_QUICK = 20_000
REPEATS = 3
FETCH = 10_000
CHUNK = 2048
ENV = "DISPATCHER_BENCH_PG"
TABLE = "bench_audience"
GOAL = 0.7
TEMPLATE = "Hola {name}, tu factura de {amount} EUR ya esta disponible. Responde STOP para no recibir mas."


async def setup(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.execute(f"""CREATE TABLE {TABLE} (id bigint PRIMARY KEY, phone text NOT NULL, name text,
            amount numeric(10,2), lang text, status text)""")
        await conn.execute(f"""INSERT INTO {TABLE} SELECT g, '+3461' || lpad(g::text, 7, '0'),
            (ARRAY['ana','luis','maria','jose','carmen','pedro'])[1 + g % 6], (g % 100000) / 100.0,
            'es', NULL FROM generate_series(1, $1::bigint) g""", n)
        await conn.execute(f"VACUUM ANALYZE {TABLE}")
    finally:
        await conn.close()


# -- source ---------------------------------------------------------------------------------------

async def raw_cursor(dsn: str, query: str) -> tuple[int, float, float]:
    """Rows, seconds and this process's CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()  # with its connection, as the source opens its own
    conn = await asyncpg.connect(dsn)
    try:
        n = 0
        async with conn.transaction(readonly=True):
            cur = await conn.cursor(query)
            while True:
                rows = await cur.fetch(FETCH)
                if not rows:
                    break
                n += len(rows)
        return n, time.perf_counter() - t0, time.process_time() - c0
    finally:
        await conn.close()


async def source_read(dsn: str) -> tuple[int, float, float]:
    from dispatcher.sources.postgres import PostgresSource
    s = PostgresSource(dsn, table=TABLE, fetch=FETCH, chunk_size=CHUNK)
    await s.describe_async()  # done when the campaign is loaded, not while reading
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    async for records, _bad in s.chunks():
        n += len(records)
    return n, time.perf_counter() - t0, time.process_time() - c0


def bench_source(dsn: str, n: int, reps: int = REPEATS) -> dict[str, Any]:
    from dispatcher.engine import collector_for_streams
    from dispatcher.sources.postgres import PostgresSource
    plan = uvloop.run(PostgresSource(dsn, table=TABLE, fetch=FETCH).describe_async())
    own_sql = plan.statement  # every row the source reads, in key order, as one plain statement
    uvloop.run(raw_cursor(dsn, f"SELECT * FROM {TABLE}"))  # warm the cache
    raw, same, ours = [], [], []
    cpu: dict[str, list[float]] = {"source": [], "raw_cursor": [], "raw_cursor_same_sql": []}
    for _ in range(reps):
        for out, name, fn in ((raw, "raw_cursor", lambda: raw_cursor(dsn, f"SELECT * FROM {TABLE}")),
                              (ours, "source", lambda: source_read(dsn)),
                              (same, "raw_cursor_same_sql", lambda: raw_cursor(dsn, own_sql))):
            with collector_for_streams():  # the engine's settings, for both sides (see the module's docstring)
                count, secs, cpu_s = uvloop.run(fn())
            assert count == n, (count, n)
            out.append(count / secs)
            cpu[name].append(cpu_s / count * 1e6)
    r, s, o = statistics.median(raw), statistics.median(same), statistics.median(ours)
    # this process's CPU a row: steadier than rows/s on a shared machine (the server's CPU is not in it)
    us = {k: round(statistics.median(v), 3) for k, v in cpu.items()}
    return {"rows": n, "source_rows_per_s": round(o), "raw_cursor_rows_per_s": round(r),
            "raw_cursor_same_sql_rows_per_s": round(s), "ratio": round(o / r, 3), "ratio_same_sql": round(o / s, 3),
            "cpu_us_per_row": us, "cpu_ratio_same_sql": round(us["raw_cursor_same_sql"] / us["source"], 3),
            "runs": {"source": [round(x) for x in ours], "raw_cursor": [round(x) for x in raw],
                     "raw_cursor_same_sql": [round(x) for x in same]},
            "cpu_runs_us_per_row": {k: [round(x, 3) for x in v] for k, v in cpu.items()}}


# -- sink -----------------------------------------------------------------------------------------

def result_chunks(n: int) -> Iterator[list[Any]]:
    from dispatcher.model import Result
    for lo in range(1, n + 1, CHUNK):
        yield [Result(i, str(i), f"+3461{i:07d}", "sms", "sent", f"{i:013X}", 1, "GSM-7", None, None, 1, 12.25,
                      None, "sms", False, {"unanswered_attempts": 1} if i % 1000 == 0 else None)
               for i in range(lo, min(lo + CHUNK, n + 1))]


async def raw_copy(dsn: str, n: int, run_id: str) -> float:
    import orjson

    from dispatcher.model import RESULT_FIELDS
    from dispatcher.sinks.postgres import COLUMNS
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_raw_results")
        await conn.execute("CREATE TABLE bench_raw_results (LIKE bench_results INCLUDING ALL)")
        spent = 0.0
        for chunk in result_chunks(n):
            rows = [(run_id, *(getattr(r, f) for f in RESULT_FIELDS[:-1]),
                     orjson.dumps(r.meta).decode() if r.meta else None) for r in chunk]
            t0 = time.perf_counter()
            await conn.copy_records_to_table("bench_raw_results", records=rows, columns=COLUMNS)
            spent += time.perf_counter() - t0
        return spent
    finally:
        await conn.close()


async def sink_write(dsn: str, n: int, run_id: str, mark: bool = False) -> float:
    from dispatcher.model import Results
    from dispatcher.sinks.postgres import PostgresSink
    if mark:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f"UPDATE {TABLE} SET status = NULL WHERE status IS NOT NULL")
        await conn.close()
    s = PostgresSink(dsn, run_id, table="bench_results", mark_sent=f"{TABLE}.status" if mark else None)
    await s.open(resume=False)
    spent = 0.0
    try:
        for chunk in result_chunks(n):
            columns = Results.of(chunk)  # what the engine hands a sink: result columns
            t0 = time.perf_counter()
            await s.write(columns)
            spent += time.perf_counter() - t0
    finally:
        await s.close()
    return spent


async def truncate(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {table}")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def bench_sink(dsn: str, n: int, reps: int = REPEATS) -> dict[str, Any]:
    uvloop.run(sink_write(dsn, min(n, 1000), "warm-up"))  # creates bench_results (and its schema version)
    raw, ours, marked = [], [], []
    for rep in range(reps):
        uvloop.run(truncate(dsn, "bench_results"))
        ours.append(n / uvloop.run(sink_write(dsn, n, f"sink-{rep}")))
        raw.append(n / uvloop.run(raw_copy(dsn, n, f"raw-{rep}")))
        uvloop.run(truncate(dsn, "bench_results"))
        marked.append(n / uvloop.run(sink_write(dsn, n, f"mark-{rep}", mark=True)))
    r, o, m = statistics.median(raw), statistics.median(ours), statistics.median(marked)
    return {"rows": n, "sink_rows_per_s": round(o), "raw_copy_rows_per_s": round(r), "ratio": round(o / r, 3),
            "sink_mark_sent_rows_per_s": round(m),
            "runs": {"sink": [round(x) for x in ours], "raw_copy": [round(x) for x in raw],
                     "sink_mark_sent": [round(x) for x in marked]}}


# -- blast ----------------------------------------------------------------------------------------

CAMPAIGN = """
[source]
{source}

[message]
sender = "ACME"
region = "ES"
template = "{template}"

[providers.sms]
type = "nrs360"
url = "{url}"
username_env = "NRS360_USER"
password_env = "NRS360_PASSWORD"
rate = 100000
batch_size = 1000

[[sinks]]
{sink}
"""


def campaign(tmp: Path, url: str) -> Path:
    path = tmp / "bench-postgres.toml"
    path.write_text(CAMPAIGN.format(
        source=f'type = "postgres"\ndsn_env = "{ENV}"\ntable = "{TABLE}"\nrecipient = "phone"\nfetch = {FETCH}',
        sink=f'type = "postgres"\ndsn_env = "{ENV}"\ntable = "bench_blast_results"', template=TEMPLATE, url=url))
    return path


def file_campaign(tmp: Path, url: str, csv: Path) -> Path:
    path = tmp / "bench-files.toml"
    path.write_text(CAMPAIGN.format(source=f'path = "{csv}"\nrecipient = "phone"',
                                    sink=f'type = "jsonl"\npath = "{tmp}/out/{{run_id}}.jsonl"',
                                    template=TEMPLATE, url=url))
    return path


async def export_csv(dsn: str, path: Path) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_from_query(f"SELECT * FROM {TABLE} ORDER BY id", output=str(path), format="csv", header=True)
    finally:
        await conn.close()


def blast_once(path: Path, run_id: str, state: Path) -> dict[str, Any]:
    from dispatcher.blast.preparer import CampaignPreparer
    from dispatcher.config import Overrides, load_campaign
    from dispatcher.engine import Engine
    c = load_campaign(path, Overrides(run_id=run_id, state_dir=str(state)))

    async def go() -> tuple[Any, float]:
        t0 = time.perf_counter()
        st = await Engine(c, preparer=CampaignPreparer(c)).run()
        return st, time.perf_counter() - t0

    st, secs = uvloop.run(go())
    return {"sent": st.sent, "failed": st.failed, "rejected": st.rejected, "seconds": secs,
            "msgs_per_s": (st.sent + st.failed + st.rejected) / secs}


def bench_blast(dsn: str, n: int, reps: int = REPEATS) -> dict[str, Any]:
    os.environ.setdefault("NRS360_USER", "demo")
    os.environ.setdefault("NRS360_PASSWORD", "demo-secret")
    os.environ[ENV] = dsn
    runs, files = [], []
    with tempfile.TemporaryDirectory(prefix="bench-pg-blast-") as d, simulator("nrs360", "--rate", "nrs360=100000") as url:
        tmp = Path(d)
        uvloop.run(export_csv(dsn, tmp / "audience.csv"))
        pg_toml, file_toml = campaign(tmp, url), file_campaign(tmp, url, tmp / "audience.csv")
        for rep in range(reps):
            for out, path, source in ((runs, pg_toml, "pg"), (files, file_toml, "file")):
                # one run id per source: the run journal refuses to resume a run with another source
                one = blast_once(path, f"blast-{source}-{rep}", tmp / "state")
                if one["sent"] != n:
                    raise RuntimeError(f"blast sent {one['sent']} of {n}: {one}")
                out.append(one)
            shutil.rmtree(tmp / "out", ignore_errors=True)
    rows = uvloop.run(_count(dsn, "SELECT count(*) FROM bench_blast_results"))
    if rows != n * reps:
        raise RuntimeError(f"{rows} result rows for {reps} blasts of {n}")
    mps = statistics.median(r["msgs_per_s"] for r in runs)
    fmps = statistics.median(r["msgs_per_s"] for r in files)
    return {"messages": n, "msgs_per_s": round(mps), "files_msgs_per_s": round(fmps), "ratio_to_files": round(mps / fmps, 3),
            "runs_msgs_per_s": [round(r["msgs_per_s"]) for r in runs],
            "files_runs_msgs_per_s": [round(r["msgs_per_s"]) for r in files],
            "runs_seconds": [round(r["seconds"], 2) for r in runs]}


async def _count(dsn: str, query: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def cleanup(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for t in (TABLE, "bench_results", "bench_raw_results", "bench_blast_results"):
            await conn.execute(f"DROP TABLE IF EXISTS {t}")
        with contextlib.suppress(asyncpg.UndefinedTableError):
            await conn.execute("DELETE FROM dispatcher_schema WHERE name IN ('results:bench_results', "
                               "'results:bench_blast_results')")
    finally:
        await conn.close()


PARTS = ("source", "sink", "blast")


def run(quick: bool = False, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Every figure (or those of `parts`) on the same table; returns a JSON-able dict."""
    return on_postgres(lambda dsn: measure(dsn, quick, parts))


def measure(dsn: str, quick: bool, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    n = N_QUICK if quick else N_FULL
    reps = 1 if quick else REPEATS
    step: Callable[[str], None] = lambda s: print(f"  postgres: {s}", file=sys.stderr, flush=True)  # noqa: E731
    out: dict[str, Any] = {"rows": n, "repetitions": reps, "goal_ratio": GOAL}
    try:
        t0 = time.perf_counter()
        uvloop.run(cleanup(dsn))  # what an interrupted earlier run may have left
        uvloop.run(setup(dsn, n))
        step(f"table of {n:,} rows in {time.perf_counter() - t0:.1f} s")
        if "source" in parts:
            out["source"] = s = bench_source(dsn, n, reps)
            step(f"source {s['source_rows_per_s']:,} rows/s ({s['ratio']:.2f}x raw, "
                 f"{s['ratio_same_sql']:.2f}x on its own statement; CPU a row {s['cpu_ratio_same_sql']:.2f}x)")
        if "sink" in parts:
            out["sink"] = k = bench_sink(dsn, n, reps)
            step(f"sink {k['sink_rows_per_s']:,} rows/s ({k['ratio']:.2f}x raw)")
        if "blast" in parts:
            out["blast"] = b = bench_blast(dsn, n, reps)
            step(f"blast {b['msgs_per_s']:,} msg/s")
    finally:
        uvloop.run(cleanup(dsn))
    out["server"] = "DISPATCHER_BENCH_DSN" if os.environ.get("DISPATCHER_BENCH_DSN") else "throwaway cluster"
    return out


def table(r: dict[str, Any]) -> str:
    rows = [f"{r['rows']:,} rows, median of {r['repetitions']}; goal: at least {r['goal_ratio']}x raw asyncpg.", "",
            "| path | dispatcher | raw asyncpg | ratio |", "|---|---:|---:|---:|"]
    if s := r.get("source"):
        rows += [f"| source (keyset pages -> columns) vs server-side cursor `SELECT *` | {s['source_rows_per_s']:,} rows/s | "
                 f"{s['raw_cursor_rows_per_s']:,} rows/s | {s['ratio']:.2f}x |",
                 f"| source vs cursor on the source's own statement (text casts) | {s['source_rows_per_s']:,} rows/s | "
                 f"{s['raw_cursor_same_sql_rows_per_s']:,} rows/s | {s['ratio_same_sql']:.2f}x |"]
        if u := s.get("cpu_us_per_row"):
            rows.append(f"| the same, client CPU a row (this process; speed ratio) | {u['source']:.2f} us | "
                        f"{u['raw_cursor_same_sql']:.2f} us | {s['cpu_ratio_same_sql']:.2f}x |")
    if k := r.get("sink"):
        rows += [f"| sink (result columns -> COPY) vs `copy_records_to_table` of ready tuples | "
                 f"{k['sink_rows_per_s']:,} rows/s | {k['raw_copy_rows_per_s']:,} rows/s | {k['ratio']:.2f}x |",
                 f"| sink with `mark_sent` (COPY + UPDATE of the source, one transaction) | "
                 f"{k['sink_mark_sent_rows_per_s']:,} rows/s | | |"]
    if b := r.get("blast"):
        rows += [f"| blast Postgres -> 360nrs simulator -> Postgres, vs the same audience CSV -> JSONL | "
                 f"{b['msgs_per_s']:,} msg/s | {b['files_msgs_per_s']:,} msg/s (files) | {b['ratio_to_files']:.2f}x |"]
    return "\n".join(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{N_QUICK:,} rows instead of {N_FULL:,}")
    ap.add_argument("--only", metavar="PARTS", default=",".join(PARTS),
                    help=f"comma-separated parts to measure (default: {','.join(PARTS)})")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    only = tuple(p.strip() for p in args.only.split(",") if p.strip())
    if not only or set(only) - set(PARTS):
        ap.error(f"--only takes some of {', '.join(PARTS)}")
    result = run(quick=args.quick, parts=only)
    if "error" in result:
        sys.exit(result["error"])
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
