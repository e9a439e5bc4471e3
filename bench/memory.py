"""Memory flatness: the engine's own peak RSS over a whole blast (CSV in, 360nrs shape, JSONL out) at growing
audience sizes, above the import-and-warm floor.

- floor: a process that imports the dispatcher (`dispatcher.cli`, what a blast process imports first) and
  warms the numba kernels (`dispatcher.codecs.warm_up()`, `dispatcher.phone.warm_up("ES")`), and nothing else: its peak RSS, read the same way
  as a blast's (bench/runner.py, VmHWM from /proc/self/status), in a process of its own;
- engine: each blast's peak RSS minus that floor, which is what the engine itself holds (its queues,
  batches, buffers, the HTTP client and whatever it imports beyond the floor) and what must not grow.
Goal: the engine's share at most 32 MB and flat within 10% from 100k to 10M recipients (quick: small sizes).
The blasts run against the fast upstream (bench/upstream.py), so the sizes are bound by the engine's speed,
not the simulator's; a full run also measures the smallest size against the simulator (fidelity: the real
API's answers), outside the flatness figure.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.blast import blast_args, run_many, write_campaign
from bench.common import ROOT, audience, simulator, upstream

GOAL_ENGINE_MB = 32
GOAL_FLATNESS = 0.10


def floor_mb() -> float:
    """The import-and-warm floor: peak RSS of a process that imports the dispatcher and warms the codec."""
    done = subprocess.run([sys.executable, "-m", "bench.runner", "--floor"], capture_output=True, text=True,
                          cwd=ROOT, check=True, timeout=120)
    return orjson.loads(done.stdout.strip().splitlines()[-1])["vmhwm_kb"] / 1024


def _blast(tmp: Path, url: str, csv: Path, n: int, label: str) -> dict[str, Any]:
    """One blast, alone in its process: its peak RSS and summary (its results file removed after)."""
    toml = write_campaign(tmp, url, csv, 1000, 4, name=label)
    (summary,), kb = run_many([blast_args(toml, f"m-{label}")], timeout=7200)
    for f in (tmp / "out").glob("*.jsonl"):
        f.unlink()
    return {"recipients": n, "peak_rss_mb": round(kb / 1024, 1), "sent": summary["sent"],
            "msgs_per_s": summary["msgs_per_s"]}


def run(quick: bool = False) -> dict[str, Any]:
    sizes = [10_000, 50_000] if quick else [100_000, 1_000_000, 10_000_000]
    floors = [floor_mb() for _ in range(1 if quick else 3)]
    floor = round(statistics.median(floors), 1)
    rows: list[dict[str, Any]] = []
    fidelity = None
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as d:
        tmp = Path(d)
        with upstream("nrs360") as url:
            for n in sizes:
                csv = audience(tmp / f"a-{n}.csv", n)
                rows.append(_blast(tmp, url, csv, n, f"upstream-{n}"))
                if n != sizes[0]:
                    csv.unlink()
        if not quick:
            with simulator("nrs360", "--rate", "nrs360=1000000000") as url:
                fidelity = _blast(tmp, url, tmp / f"a-{sizes[0]}.csv", sizes[0], f"simulator-{sizes[0]}")
    for row in [*rows, *([fidelity] if fidelity else [])]:
        row["engine_mb"] = round(row["peak_rss_mb"] - floor, 1)
    engine = [r["engine_mb"] for r in rows]
    peaks = [r["peak_rss_mb"] for r in rows]
    return {"server": "fast upstream (bench/upstream.py)", "floor_mb": floor,
            "floor_runs_mb": [round(f, 1) for f in floors], "sizes": rows, "simulator": fidelity,
            "max_mb": max(peaks), "max_engine_mb": max(engine),
            # smallest to largest, and the spread of all sizes (the largest share over the smallest)
            "growth": round(engine[-1] / engine[0] - 1, 3) if engine[0] > 0 else None,
            "flatness": round(max(engine) / min(engine) - 1, 3) if min(engine) > 0 else None,
            "goal_engine_mb": GOAL_ENGINE_MB, "goal_flatness": GOAL_FLATNESS}


def table(r: dict[str, Any]) -> str:
    lines = ["| recipients | server | peak RSS (MB) | engine: peak - floor (MB) | msg/s |", "|---:|---|---:|---:|---:|"]
    for row in r["sizes"]:
        lines.append(f"| {row['recipients']:,} | upstream | {row['peak_rss_mb']} | {row['engine_mb']} | "
                     f"{row['msgs_per_s']:,.0f} |")
    if r.get("simulator"):
        s = r["simulator"]
        lines.append(f"| {s['recipients']:,} | simulator | {s['peak_rss_mb']} | {s['engine_mb']} | {s['msgs_per_s']:,.0f} |")
    flat, growth = r["flatness"], r["growth"]
    ok = r["max_engine_mb"] <= r["goal_engine_mb"] and flat is not None and flat <= r["goal_flatness"]
    spread = "n/a" if flat is None else f"{flat:+.1%}"
    ends = "n/a" if growth is None else f"{growth:+.1%}"
    lines.append(f"\nImport-and-warm floor (a process that imports `dispatcher.cli` and runs "
                 "`dispatcher.codecs.warm_up()` and `dispatcher.phone.warm_up('ES')`, its own VmHWM): "
                 f"{r['floor_mb']} MB. Engine's share at most "
                 f"{r['max_engine_mb']} MB; flatness (largest share over smallest) {spread}, smallest to largest "
                 f"{ends} (goal: at most {r['goal_engine_mb']} MB, flat within {r['goal_flatness']:.0%}: "
                 f"{'met' if ok else 'not met'}).")
    return "\n".join(lines)


if __name__ == "__main__":
    res = run("--quick" in sys.argv)
    print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())
    print(table(res))
