"""Scaling with concurrency: msg/s at 1, 8, 64 and 256 requests in flight, one message a request, against
a server that adds 20 ms to every answer (a provider's round trip): the fast upstream (a `call_later`
before answering, so the server itself is never the bound: the engine's ceiling) and the simulator
(fidelity), side by side at each level."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.blast import blast_args, run_many, write_campaign
from bench.common import SERVERS, audience

LEVELS = (1, 8, 64, 256)
LATENCY_MS = 20


def run(quick: bool = False) -> dict[str, Any]:
    """Each level a run of about 6 s of ideal sending (quick: 0.25 s, at least 20 messages); the four levels
    against each server run one after the other in one process (bench/runner.py), both servers up, so
    interpreter start-up (with the kernels loaded) is paid once, not once a server or a level."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as d:
        tmp = Path(d)
        by_server: dict[str, dict[int, float]] = {}
        sizes = {c: max(20 if quick else 100, min(int(c * 1000 // LATENCY_MS * (0.25 if quick else 6)), 60_000))
                 for c in LEVELS}
        csvs = {c: audience(tmp / f"a-{sizes[c]}.csv", sizes[c]) for c in LEVELS}
        with contextlib.ExitStack() as stack:
            urls = {server: stack.enter_context(serve(["nrs360"], LATENCY_MS))["nrs360"]
                    for server, serve in SERVERS.items()}
            runs = [blast_args(write_campaign(tmp, urls[server], csvs[c], 1, c, name=f"{server}-c{c}"),
                               f"{server}-c{c}") for server in SERVERS for c in LEVELS]
            summaries = iter(run_many(runs)[0])
            for server in SERVERS:
                by_server[server] = {c: next(summaries)["msgs_per_s"] for c in LEVELS}
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
