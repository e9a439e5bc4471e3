"""Memory flatness: peak RSS of a whole blast (CSV in, 360nrs simulator, JSONL out) at growing
audience sizes. Goal: flat within 10% and under 150 MB from 100k to 10M recipients."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.blast import write_campaign
from bench.common import ROOT, audience, simulator

_WRAPPER = """
import sys
from dispatcher.cli import main
code = main(sys.argv[1:])
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VMHWM_KB=" + line.split()[1], file=sys.stderr)
sys.exit(code)
"""


def _peak(args: list[str]) -> tuple[float, dict[str, Any]]:
    """Peak RSS of one blast, read by the process itself from /proc/self/status (VmHWM belongs to the
    address space made at exec; `ru_maxrss` of a child would include the harness it was forked from)."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-2000:])
    kb = next(int(line.split("=", 1)[1]) for line in done.stderr.splitlines() if line.startswith("VMHWM_KB="))
    return kb / 1024, orjson.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, Any]:
    sizes = [10_000, 100_000] if quick else [100_000, 1_000_000, 10_000_000]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as d, \
            simulator("nrs360", "--rate", "nrs360=1000000000") as url:
        tmp = Path(d)
        for n in sizes:
            csv = audience(tmp / f"a-{n}.csv", n)
            toml = write_campaign(tmp, url, csv, 1000, 4)
            rss, summary = _peak(["blast", str(toml), "--quiet", "--run-id", f"m{n}"])
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
