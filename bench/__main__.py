"""`python -m bench [--quick] [--only a,b] [--out DIR]`: every scenario, each beside its baseline.

Writes DIR/<timestamp>.json (with the machine described), DIR/latest.md (tables), PNG charts,
bench/README.md's tables (between its bench markers) from latest.md, and the short table of
headline figures in the README's Performance section (between its headline markers).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import importlib.util
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, machine

SCENARIOS = ["codec", "blast", "providers", "pacing", "concurrency", "memory", "profile", "postgres", "daemon",
             "daemon_service", "daemon_events", "api", "webhooks"]
TITLES = {
    "codec": "Codec: numba kernel against pure Python and the gsm0338 package",
    "blast": "Blast: dispatcher against a bare aiohttp + uvloop loop, same requests, same simulator",
    "providers": "Providers: each adapter against a bare loop on its simulator; rate precision",
    "pacing": "Pacing: the window-aware limiter beside the previous one, against a strict simulator",
    "concurrency": "Scaling with concurrency (20 ms simulated round trip)",
    "memory": "Memory against audience size",
    "profile": "Where the time goes",
    "postgres": "PostgreSQL source and sink against raw asyncpg",
    "daemon": "Daemon: one and two workers on a shared outbox",
    "daemon_service": "Daemon as a service: latency at 1, 20 and 100 req/s, fair share, pause / resume / cancel",
    "daemon_events": "Daemon: the drain with and without status events",
    "api": "Daemon HTTP API: POST /v1/messages against a raw asyncpg COPY of the same rows",
    "webhooks": "Webhooks: signed status events POSTed from a backlog to a local receiver",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true",
                   help="every scenario small, three at once (a smoke test, about 45 s of CPU; figures indicative only)")
    p.add_argument("--only", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--no-readme", action="store_true",
                   help="do not rewrite bench/README.md's tables and the README's headline figures")
    p.add_argument("--no-charts", action="store_true",
                   help="draw no PNG charts (--quick's scenario processes: the run draws them from all their results, "
                        "and importing matplotlib costs each process 0.6 s of CPU)")
    a = p.parse_args(argv)
    names = a.only.split(",") if a.only else SCENARIOS
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "quick": a.quick, "scenarios": {}, "seconds": {},
                              "cpu_seconds": {}}
    md = [f"Measured {report['machine']['time']} on {report['machine']['cores']} cores "
          f"({report['machine']['cpu'] or 'unknown CPU'}), Python {report['machine']['python']}"
          + (" — quick mode: small sizes, figures indicative only" if a.quick else "") + "."]
    t0 = time.monotonic()
    apart = a.quick and len(names) > 1
    runs = run_apart(names, out) if apart else {name: run_here(name, a.quick) for name in names}
    for name in names:
        result, seconds, cpu = runs[name]
        report["scenarios"][name] = result
        if seconds is not None:
            report["seconds"][name] = seconds
        if cpu is not None:
            report["cpu_seconds"][name] = cpu
        module = None
        with contextlib.suppress(ImportError):
            module = importlib.import_module(f"bench.{name}")
        md.append(f"\n### {TITLES.get(name, name)}\n")
        if "error" in result or "skipped" in result:
            md.append(f"failed: {result.get('error') or result.get('skipped')}")
        elif module is not None and hasattr(module, "table"):
            md.append(module.table(result))
        if apart:
            print(md[-1], flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report["wall_seconds"] = round(time.monotonic() - t0, 1)
    (out / f"{stamp}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    total, cpu = sum(report["seconds"].values()), report["cpu_seconds"]
    md.append(f"\nThe whole run took {report['wall_seconds']:,.0f} s"
              + (f" ({PARALLEL} scenarios at once)" if apart else "")
              + f"; each scenario's own: {total:,.0f} s in all "
              + f"({', '.join(f'{k} {v:,.0f} s' for k, v in report['seconds'].items())}); their CPU (with their "
              + f"children's, PostgreSQL's not counted): {sum(cpu.values()):,.0f} s "
              + f"({', '.join(f'{k} {v:,.1f} s' for k, v in cpu.items())}).")
    charts = [] if a.no_charts else draw(report, out)
    if charts:
        md.append("\nCharts: " + ", ".join(f"`{c.name}`" for c in charts) + f" in `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}`.")
    text = "\n".join(md) + "\n"
    (out / "latest.md").write_text(text)
    if not a.no_readme and not a.quick:
        readme(text, report)
    print(f"\nwrote {out / (stamp + '.json')}, {out / 'latest.md'} and {len(charts)} charts")
    return 0 if not any("error" in r for r in report["scenarios"].values()) else 1


Run = tuple[dict[str, Any], float | None, float | None]  # a scenario's result, its seconds, its CPU seconds


def _cpu() -> float:
    """This process's CPU and its reaped children's (simulators, runners, daemons a scenario started)."""
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def run_here(name: str, quick: bool) -> Run:
    """One scenario in this process: its result (an error or a skip as one), its seconds and CPU seconds."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ImportError as e:
        return {"skipped": f"not available: {e}"}, None, None
    print(f"== {name}", flush=True)
    t0, cpu0 = time.monotonic(), _cpu()
    try:
        result = module.run(quick=quick)
    except Exception as e:  # one broken scenario must not hide the others' figures
        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {e}"}
    seconds, cpu = round(time.monotonic() - t0, 1), round(_cpu() - cpu0, 1)
    if "error" not in result and hasattr(module, "table"):
        print(module.table(result), flush=True)
    return result, seconds, cpu


# --quick: scenarios run PARALLEL at once, each `python -m bench --quick --only NAME` in a process of its own (a fork),
# the longest first. Most of a quick run waits (rate limits, heartbeats, round trips) or starts interpreters and
# servers, so three at once take about a third of their sum on two cores; the figures of scenarios that
# overlap are disturbed by each other (quick figures are indicative only: a smoke test of every scenario).
PARALLEL = 3
LONGEST_FIRST = ["daemon_service", "daemon", "pacing", "providers", "blast", "daemon_events", "concurrency", "memory",
                 "codec", "profile", "api", "postgres", "webhooks"]
ON_POSTGRES = {"postgres", "daemon", "daemon_service", "daemon_events", "api", "webhooks"}  # bench.common.on_postgres


def _forked(name: str, where: Path, env: dict[str, str]) -> int:
    """`python -m bench --quick --only NAME` in a fork of this process (its stdout dropped, its stderr kept in
    WHERE/stderr, its report written in WHERE): the interpreter and the harness's imports are paid once for
    the run, not once a scenario. Nothing runs in this process before (no event loop, no thread)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.environ.update(env)
        os.chdir(ROOT)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(os.open(where / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        code = main(["--quick", "--only", name, "--no-readme", "--no-charts", "--out", str(where)])
    except BaseException:  # the child never returns into the parent's loop, whatever happens
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return 0  # not reached: os._exit


def _postgres() -> subprocess.Popen[str] | None:
    """tests/pgserver.py starting the run's PostgreSQL in a process of its own (about 1.5 s, a slot of the
    PARALLEL: initdb is busy), while the scenarios that need none start; None when DISPATCHER_BENCH_DSN is set."""
    if "DISPATCHER_BENCH_DSN" in os.environ:
        return None
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "pgserver.py"), "start"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _started(pg: subprocess.Popen[str], env: dict[str, str]) -> None:
    """The cluster pgserver started: its DSN in `env` for the scenarios, stopped when this process exits. If it
    did not start, the scenarios that need it try themselves (bench.common.on_postgres) and say why."""
    out = (pg.communicate()[0] or "").strip().splitlines()
    if pg.returncode == 0 and len(out) >= 2:
        env["DISPATCHER_BENCH_DSN"] = out[-1]
        spec = importlib.util.spec_from_file_location("pgserver", ROOT / "tests" / "pgserver.py")
        assert spec is not None and spec.loader is not None
        pgserver = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pgserver)
        atexit.register(pgserver.stop, out[0])


def _ended(pid: int) -> tuple[int, int, Any]:
    """os.wait4 on one scenario's process, not any child's (the pgserver process is its Popen's to reap)."""
    return os.wait4(pid, os.WNOHANG)


def run_apart(names: list[str], out: Path) -> dict[str, Run]:
    """Each scenario in a process of its own, PARALLEL at once, sharing one PostgreSQL (started here, beside
    the first scenarios, when DISPATCHER_BENCH_DSN is not set); their results by name, each with the CPU of its
    process and the children it reaped (os.wait4: one child's own, however many run at once)."""
    env: dict[str, str] = {}
    pg = _postgres()
    order = sorted(names, key=lambda n: LONGEST_FIRST.index(n) if n in LONGEST_FIRST else len(LONGEST_FIRST))
    running: dict[int, tuple[str, Path]] = {}
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quick-", dir=out) as tmp:
        for _ in range(100_000):  # bounded: every scenario ends (each has timeouts of its own); 0.1 s a look
            if pg is not None and pg.poll() is not None:
                _started(pg, env)
                pg = None
            while len(running) + (pg is not None) < PARALLEL:
                name = next((n for n in order if pg is None or n not in ON_POSTGRES), None)
                if name is None:
                    break
                order.remove(name)
                where = Path(tmp) / name
                where.mkdir()
                print(f"== {name} (started)", flush=True)
                running[_forked(name, where, env)] = (name, where)
            if not running and not order:
                break
            pid, status, usage = next((w for w in map(_ended, running) if w[0]), (0, 0, None))
            if pid not in running or usage is None:
                time.sleep(0.05)  # polling child processes, not standing in for synchronisation
                continue
            name, where = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            cpu = round(usage.ru_utime + usage.ru_stime, 1)
            reports = list(where.glob("*.json"))
            if reports:
                child = orjson.loads(reports[0].read_bytes())
                runs[name] = (child["scenarios"][name], child["seconds"].get(name), cpu)
            else:
                tail = (where / "stderr").read_text(errors="replace")[-2000:]
                runs[name] = ({"error": f"exit {code}: {tail}"}, None, cpu)
    return runs


def draw(report: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: list[Path] = []
    sc = report["scenarios"]

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(path)

    series = []
    if "timeline" in sc.get("blast", {}).get("batched", {}):
        series.append(("360nrs batched", sc["blast"]["batched"]["timeline"]))
    if "timeline" in sc.get("blast", {}).get("single", {}):
        series.append(("360nrs single", sc["blast"]["single"]["timeline"]))
    for name, r in (sc.get("providers", {}).get("providers") or {}).items():
        if isinstance(r, dict) and r.get("timeline"):
            series.append((name, r["timeline"]))
    if series:
        fig, ax = plt.subplots(figsize=(8, 4))
        for label, tl in series:
            xs = [t for t, _, _ in tl][1:]
            ys = [(d2 - d1) / max(t2 - t1, 1e-9) for (t1, d1, _), (t2, d2, _) in itertools.pairwise(tl)]
            ax.plot(xs, ys, label=label)
        ax.set_xlabel("seconds")
        ax.set_ylabel("messages/s")
        ax.set_title("Throughput over time")
        ax.legend()
        save(fig, "throughput.png")
    lat = sc.get("blast", {}).get("single", {}).get("latency_ms_sample")
    if lat:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.hist(lat, bins=50)
        ax.set_xlabel("request latency (ms)")
        ax.set_ylabel("requests")
        ax.set_title("Latency, one message a request")
        save(fig, "latency.png")
    codec = sc.get("codec", {})
    bars = {k: v["msgs_per_s"] for k, v in (codec.get("paths") or {}).items() if isinstance(v, dict)}
    if bars:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar(list(bars), list(bars.values()))
        ax.set_yscale("log")
        ax.set_ylabel("messages/s (log)")
        ax.set_title("Codec: classification and part count")
        save(fig, "codec.png")
    memory = sc.get("memory", {})
    mem = memory.get("sizes")
    if mem and "engine_mb" in mem[0]:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r["recipients"] for r in mem]
        ax.plot(xs, [r["peak_rss_mb"] for r in mem], marker="o", label="peak RSS")
        ax.plot(xs, [r["engine_mb"] for r in mem], marker="o", label="engine (peak - floor)")
        ax.axhline(memory["floor_mb"], linestyle=":", color="grey", label="import-and-warm floor")
        ax.axhline(memory["goal_engine_mb"], linestyle="--", color="red", label="goal for the engine")
        ax.set_xscale("log")
        ax.set_ylim(0, max(r["peak_rss_mb"] for r in mem) * 1.2)
        ax.set_xlabel("recipients")
        ax.set_ylabel("MB")
        ax.set_title("Memory against audience size")
        ax.legend()
        save(fig, "memory.png")
    return made


# The README's headline figures: (what, figure from the report's scenarios, goal). A scenario
# missing from the run leaves its row out.
HEADLINES: list[tuple[str, Any, str]] = [
    ("360nrs blast, 1000 recipients a request, CSV -> JSONL, against the fast upstream: the csv -> orjson floor "
     "(a worker a core / one process)",
     lambda s: f"{s['blast']['batched_workers']['upstream']['over_floor']:.2f}x "
               f"({s['blast']['batched_workers']['upstream']['dispatcher_msgs_per_s']:,} msg/s, "
               f"{s['blast']['batched_workers']['workers']} workers) / "
               f"{s['blast']['batched']['upstream']['over_floor']:.2f}x "
               f"({s['blast']['batched']['upstream']['dispatcher_msgs_per_s']:,} msg/s, "
               f"{s['blast']['batched']['upstream']['cpu_us_per_msg']} us CPU a message); floor "
               f"{s['blast']['batched']['floor_rows_per_s']:,} rows/s",
     "0.5x (one process)"),
    ("One message a request (360nrs), 64 in flight, against a bare aiohttp loop, fast upstream "
     "(a worker a core / one process) and simulator (one process)",
     lambda s: f"{s['blast']['single_workers']['upstream']['ratio']:.2f}x "
               f"({s['blast']['single_workers']['upstream']['dispatcher_requests_per_s']:,.0f} vs "
               f"{s['blast']['single_workers']['upstream']['bare_requests_per_s']:,.0f} req/s) / "
               f"{s['blast']['single']['upstream']['ratio']:.2f}x "
               f"({s['blast']['single']['upstream']['dispatcher_requests_per_s']:,.0f} req/s) / "
               f"{s['blast']['single']['ratio']:.2f}x",
     "0.8x"),
    ("Rate precision, Sendix at 100 requests/s",
     lambda s: f"{s['providers']['precision']['share_of_limit']:.1%} of the limit, "
               f"{s['providers']['precision']['answered_429']} answered 429", "97%, no 429"),
    ("Codec: numba kernel against the fastest pure Python",
     lambda s: f"{s['codec']['ratios']['numba_over_fastest_pure_python']:.1f}x", "10x"),
    ("Memory, 100,000 to 10,000,000 recipients: the engine's peak RSS above the import-and-warm floor",
     lambda s: f"{s['memory']['max_engine_mb']:.0f} MB (floor {s['memory']['floor_mb']:.0f} MB), "
               f"flatness {s['memory']['flatness']:+.1%}", "at most 32 MB, flat within 10%"),
    ("PostgreSQL sink against raw COPY",
     lambda s: f"{s['postgres']['sink']['ratio']:.2f}x", "0.7x"),
    ("PostgreSQL source against a raw cursor on its own statement (on `SELECT *`)",
     lambda s: f"{s['postgres']['source']['ratio_same_sql']:.2f}x ({s['postgres']['source']['ratio']:.2f}x)", "0.7x"),
    ("Daemon: two workers against one on a shared outbox",
     lambda s: f"{s['daemon']['cpu_bound']['scaling']:.2f}x", "more than 1x"),
    ("Daemon: a priority-10 message behind 100,000 queued at 1 / 20 / 100 requests/s, insert to provider (p99)",
     lambda s: " / ".join(f"{s['daemon_service']['latency'][r]['backlog']['p99_ms'] / 1000:.2f} s"
                          for r in ("1", "20", "100")), "2 s"),
    ("Daemon: a 1,000-message campaign behind a 100,000-message one at 100 requests/s",
     lambda s: f"{s['daemon_service']['fairness']['small_s']:.1f} s", "30 s"),
    ("Daemon: drain throughput against before issue 24 (same run)",
     lambda s: f"{s['daemon_service']['throughput']['ratio']:.2f}x", "at least 0.90x"),
    ("Daemon: the drain with status events against without (rate / daemon + PostgreSQL CPU a row)",
     lambda s: f"{s['daemon_events']['rate_ratio']:.2f}x / {s['daemon_events']['cpu_ratio']:.2f}x",
     "at least 0.90x / at most 1.10x"),
    ("Webhooks: signed status events delivered from a backlog, 100 a POST",
     lambda s: f"{s['webhooks']['events_per_s']:,} events/s", "5,000 events/s"),
]


def headlines(report: dict[str, Any]) -> str:
    rows = ["| what | measured | goal |", "|---|---:|---:|"]
    for what, figure, goal in HEADLINES:
        try:
            rows.append(f"| {what} | {figure(report['scenarios'])} | {goal} |")
        except (KeyError, TypeError, ValueError):
            continue
    return "\n".join(rows) + f"\n\nMeasured {report['machine']['time']} on {report['machine']['cores']} cores."


def _between(path: Path, start: str, end: str, body: str) -> None:
    text = path.read_text()
    if start in text and end in text:
        a, b = text.index(start) + len(start), text.index(end)
        path.write_text(text[:a] + "\n" + body + text[b:])


def readme(md: str, report: dict[str, Any]) -> None:
    """The full tables go to bench/README.md; the README keeps the headline figures and a link."""
    _between(ROOT / "bench" / "README.md", "<!-- bench:start -->", "<!-- bench:end -->", md)
    _between(ROOT / "README.md", "<!-- headline:start -->", "<!-- headline:end -->", headlines(report) + "\n")


if __name__ == "__main__":
    sys.exit(main())
