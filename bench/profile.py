"""Where the time goes: the blast hot path under cProfile, as microseconds per message."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.blast import write_campaign
from bench.common import audience, simulator


def run(quick: bool = False) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as d, \
            simulator("nrs360", "--rate", "nrs360=1000000000") as url:
        tmp = Path(d)
        toml = write_campaign(tmp, url, audience(tmp / "a.csv", n), 1000, 4)
        from dispatcher.cli import main
        prof = cProfile.Profile()
        prof.enable()
        main(["blast", str(toml), "--quiet", "--run-id", "prof"])
        prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({func})", "self_us_per_msg": tt / n * 1e6,
                     "total_us_per_msg": ct / n * 1e6})
    rows.sort(key=lambda r: -r["self_us_per_msg"])
    top = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows[:15]]
    total = sum(r["self_us_per_msg"] for r in rows)
    return {"messages": n, "profiled_us_per_msg": round(total, 2), "top": top,
            "note": "cProfile roughly doubles Python-level costs; read the shares, not the absolute figures"}


def table(r: dict[str, Any]) -> str:
    lines = [f"Profiled cost: {r['profiled_us_per_msg']} us a message over {r['messages']:,} messages "
             f"({r['note']}).", "", "| function | self us/msg | share |", "|---|---:|---:|"]
    for row in r["top"]:
        lines.append(f"| `{row['function']}` | {row['self_us_per_msg']:.2f} | "
                     f"{row['self_us_per_msg'] / r['profiled_us_per_msg']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run("--quick" in sys.argv)))
