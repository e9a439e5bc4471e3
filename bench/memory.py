"""Memory flatness: peak RSS of a whole blast (CSV in, 360nrs simulator, JSONL out) at growing
audience sizes. Goal: flat within 10% and under 150 MB from 100k to 10M recipients."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.blast import write_campaign
from bench.common import ROOT, audience, simulator


def _peak(cmd: list[str]) -> tuple[float, dict[str, Any]]:
    """Peak RSS of one child, read from its own rusage (RUSAGE_CHILDREN would mix children)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(err.decode()[-2000:])
    return ru.ru_maxrss / 1024, orjson.loads(out.decode().strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, Any]:
    sizes = [10_000, 100_000] if quick else [100_000, 1_000_000, 10_000_000]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as d, \
            simulator("nrs360", "--rate", "nrs360=1000000000") as url:
        tmp = Path(d)
        for n in sizes:
            csv = audience(tmp / f"a-{n}.csv", n)
            toml = write_campaign(tmp, url, csv, 1000, 4)
            rss, summary = _peak([sys.executable, "-m", "dispatcher", "blast", str(toml), "--quiet",
                                  "--run-id", f"m{n}"])
            rows.append({"recipients": n, "peak_rss_mb": round(rss, 1), "sent": summary["sent"],
                         "msgs_per_s": summary["msgs_per_s"]})
            csv.unlink()
            for f in (tmp / "out").glob("*.jsonl"):
                f.unlink()
    peaks = [r["peak_rss_mb"] for r in rows]
    return {"sizes": rows, "growth": round(max(peaks) / min(peaks) - 1, 3), "max_mb": max(peaks)}


def table(r: dict[str, Any]) -> str:
    lines = ["| recipients | peak RSS (MB) | msg/s |", "|---:|---:|---:|"]
    for row in r["sizes"]:
        lines.append(f"| {row['recipients']:,} | {row['peak_rss_mb']} | {row['msgs_per_s']:,.0f} |")
    lines.append(f"\nGrowth from smallest to largest: {r['growth']:.1%} (goal: within 10%, under 150 MB)")
    return "\n".join(lines)


if __name__ == "__main__":
    res = run("--quick" in sys.argv)
    print(table(res))
