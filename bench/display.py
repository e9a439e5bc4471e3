"""What the live progress display costs: the same blast with the display drawn on a terminal
(a pseudo-terminal, so it redraws in place twice a second as a person would see it) and with
`--quiet`, alternated, median of 3 each.

    python -m bench --only display --no-readme --out /tmp/display      # 200,000 recipients

Not in the default scenario list: it answers one question (is the display free on the hot path?).
"""

from __future__ import annotations

import os
import pty
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson

from bench.blast import write_campaign
from bench.common import ROOT, audience, simulator


def _blast(toml: Path, run_id: str, live: bool) -> dict[str, Any]:
    """One blast; with `live`, stderr is a terminal (drained by a thread, as a terminal would read it).
    Also its CPU seconds (user + system, from the reaped child): steadier than wall-clock throughput
    on a machine others share."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    args = [sys.executable, "-m", "dispatcher", "blast", str(toml), "--json", "--run-id", run_id]
    if not live:
        done = subprocess.run([*args, "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=1800)
        out, code, drawn = done.stdout, done.returncode, 0
    else:
        master, slave = pty.openpty()
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                chunks.append(data)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, text=True, cwd=ROOT,
                                env={**os.environ, "TERM": "xterm"})
        os.close(slave)
        out, _ = proc.communicate(timeout=1800)
        code = proc.returncode
        reader.join(5)
        os.close(master)
        drawn = b"".join(chunks).count(b" done  ETA ")  # one head line per redraw
    if code not in (0, 1):
        raise RuntimeError(f"blast failed ({code})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = orjson.loads(out.strip().splitlines()[-1])
    result["redraws"] = drawn
    result["cpu_s"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return result


def draw_cost_us(calls: int = 20_000) -> float:
    """One call of the live display (read the engine, format, redraw on a terminal) in microseconds,
    with five providers and a few error codes: the whole of its cost to the event loop."""
    import io
    import time
    from collections import Counter

    from dispatcher.blast.progress import Progress
    from dispatcher.engine import SENDING, LaneStatus, Stats
    from dispatcher.sources.base import Source

    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Known(Source):
        def estimate_total(self) -> int | None:
            return 1_000_000

    class Engine:
        stats = Stats(sent=500_000, failed=300, rejected=200, codes=Counter({"sms:111": 300, "rejected:x": 200}),
                      texts={"sms:111": "Not enough credit", "rejected:x": "bad"})

        def snapshot(self) -> list[LaneStatus]:
            return [LaneStatus(f"p{i}", "nrs360", "sms", SENDING, 0.0, None, None, 50, 50, 1000, 0, 4)
                    for i in range(5)]

    out = TTY()
    p = Progress(Known(), out=out, interval=0)
    engine: Any = Engine()
    t0 = time.perf_counter()
    for i in range(calls):
        p(engine)
        if i % 1000 == 0:
            out.seek(0)
            out.truncate()
    cost = (time.perf_counter() - t0) / calls * 1e6
    p.end()  # the live display gives sys.stdout and sys.stderr back
    return cost


def run(quick: bool = False) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-display-") as d:
        tmp = Path(d)
        csv = audience(tmp / f"audience-{n}.csv", n)
        with simulator("nrs360", "--rate", "nrs360=1000000000") as url:
            toml = write_campaign(tmp, url, csv, 1000, 4)
            runs: dict[str, list[dict[str, Any]]] = {"live": [], "quiet": []}
            order = iter(range(1000))

            def one(kind: str) -> float:
                r = _blast(toml, f"{kind}-{next(order)}", kind == "live")
                runs[kind].append(r)
                return r["msgs_per_s"]

            pairs = [(one("live"), one("quiet")) for _ in range(reps)]  # alternated: drift hits both
    live, quiet = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    live_cpu = statistics.median(r["cpu_s"] for r in runs["live"])
    quiet_cpu = statistics.median(r["cpu_s"] for r in runs["quiet"])
    cost = draw_cost_us(2_000 if quick else 20_000)
    return {"draw_us": round(cost, 1), "share_of_a_core_at_2_per_s": round(cost * 2 / 1e6, 7),
            "messages": n, "repetitions": reps, "live_msgs_per_s": round(live), "quiet_msgs_per_s": round(quiet),
            "ratio": round(live / quiet, 3), "live_runs": [round(p[0]) for p in pairs],
            "quiet_runs": [round(p[1]) for p in pairs],
            "redraws": [r["redraws"] for r in runs["live"]],
            "live_cpu_s": round(live_cpu, 2), "quiet_cpu_s": round(quiet_cpu, 2),
            "cpu_ratio": round(live_cpu / quiet_cpu, 3),
            "live_cpu_runs": [round(r["cpu_s"], 2) for r in runs["live"]],
            "quiet_cpu_runs": [round(r["cpu_s"], 2) for r in runs["quiet"]]}


def table(r: dict[str, Any]) -> str:
    return "\n".join([
        "| display | messages | msg/s (median) | runs | CPU s (median) | runs | live / quiet: msg/s, CPU |",
        "|---|---:|---:|---|---:|---|---:|",
        f"| live, on a terminal ({', '.join(map(str, r['redraws']))} redraws) | {r['messages']:,} | "
        f"{r['live_msgs_per_s']:,} | {', '.join(f'{x:,}' for x in r['live_runs'])} | {r['live_cpu_s']} | "
        f"{', '.join(map(str, r['live_cpu_runs']))} | {r['ratio']:.2f}x, {r['cpu_ratio']:.2f}x |",
        f"| `--quiet` | {r['messages']:,} | {r['quiet_msgs_per_s']:,} | "
        f"{', '.join(f'{x:,}' for x in r['quiet_runs'])} | {r['quiet_cpu_s']} | "
        f"{', '.join(map(str, r['quiet_cpu_runs']))} | |",
        "",
        f"One redraw (five providers, error texts) costs {r['draw_us']:,.1f} us: at two a second, "
        f"{r['share_of_a_core_at_2_per_s']:.4%} of a core. The blasts' spread is this shared machine's noise.",
    ])


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(table(result))
