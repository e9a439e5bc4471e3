"""Scaling with concurrency: msg/s at 1, 8, 64 and 256 requests in flight, one message a request,
against a simulator that adds 20 ms to every answer (a provider's round trip)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.blast import run_blast, write_campaign
from bench.common import audience, simulator

LEVELS = (1, 8, 64, 256)


def run(quick: bool = False) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as d, \
            simulator("nrs360", "--rate", "nrs360=1000000000", "--latency-ms", "20") as url:
        tmp = Path(d)
        for c in LEVELS:
            ideal = c * 50  # 20 ms a request
            n = max(100, min(ideal * (2 if quick else 6), 60_000))
            csv = audience(tmp / f"a-{n}.csv", n)
            toml = write_campaign(tmp, url, csv, 1, c)
            out = run_blast(toml, f"c{c}")
            rows.append({"concurrency": c, "messages": n, "msgs_per_s": out["msgs_per_s"], "ideal": ideal,
                         "efficiency": round(out["msgs_per_s"] / ideal, 3)})
    return {"latency_ms": 20, "levels": rows}


def table(r: dict[str, Any]) -> str:
    lines = ["| in flight | messages | msg/s | ideal (c / 20 ms) | efficiency |", "|---:|---:|---:|---:|---:|"]
    for row in r["levels"]:
        lines.append(f"| {row['concurrency']} | {row['messages']:,} | {row['msgs_per_s']:,.0f} | "
                     f"{row['ideal']:,} | {row['efficiency']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run("--quick" in sys.argv)))
