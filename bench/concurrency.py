"""Scaling with concurrency: msg/s at 1, 8, 64 and 256 requests in flight, one message a request, against
a server that adds 20 ms to every answer (a provider's round trip): the fast upstream (a `call_later`
before answering, so the server itself is never the bound: the engine's ceiling) and the simulator
(fidelity), side by side at each level."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.blast import run_blast, write_campaign
from bench.common import SERVERS, audience

LEVELS = (1, 8, 64, 256)
LATENCY_MS = 20


def run(quick: bool = False) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as d:
        tmp = Path(d)
        by_server: dict[str, dict[int, float]] = {}
        sizes: dict[int, int] = {}
        for server, serve in SERVERS.items():
            with serve("nrs360", LATENCY_MS) as url:
                for c in LEVELS:
                    ideal = c * 1000 // LATENCY_MS
                    n = sizes.setdefault(c, max(100, min(int(ideal * (0.5 if quick else 6)), 60_000)))
                    csv = audience(tmp / f"a-{n}.csv", n)
                    toml = write_campaign(tmp, url, csv, 1, c)
                    by_server.setdefault(server, {})[c] = run_blast(toml, f"{server}-c{c}")["msgs_per_s"]
        for c in LEVELS:
            ideal = c * 1000 // LATENCY_MS
            row: dict[str, Any] = {"concurrency": c, "messages": sizes[c], "ideal": ideal}
            for server in SERVERS:
                row[f"{server}_msgs_per_s"] = by_server[server][c]
                row[f"{server}_efficiency"] = round(by_server[server][c] / ideal, 3)
            row["msgs_per_s"], row["efficiency"] = row["simulator_msgs_per_s"], row["simulator_efficiency"]
            rows.append(row)
    return {"latency_ms": LATENCY_MS, "levels": rows}


def table(r: dict[str, Any]) -> str:
    lines = ["| in flight | messages | ideal (c / 20 ms) | upstream msg/s | upstream efficiency | simulator msg/s "
             "| simulator efficiency |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["levels"]:
        lines.append(f"| {row['concurrency']} | {row['messages']:,} | {row['ideal']:,} | "
                     f"{row['upstream_msgs_per_s']:,.0f} | {row['upstream_efficiency']:.0%} | "
                     f"{row['simulator_msgs_per_s']:,.0f} | {row['simulator_efficiency']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run("--quick" in sys.argv)))
