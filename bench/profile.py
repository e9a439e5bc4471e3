"""Where the time goes: a real `dispatcher blast` against the fast upstream under cProfile, its functions
summed into the stages a message passes through, as microseconds per message; the batched path (360nrs,
1000 a request) and the single-message path (one a request, 64 in flight).

How a function's time is counted: every function's *self* time goes to the stage its module and name say
(STAGES, first match). Functions that say nothing about a stage (builtins such as `orjson.dumps` or
`_csv.reader`, dataclass `__init__`s compiled from `<string>`, generic stdlib) are charged to whoever called
them, in proportion to the time each caller spent in them, so `orjson.dumps` called by the sink is the
sink's and called by `build` is the build's. Against the fast upstream the server is not the bound, so
the table is the engine's own cost.

cProfile inflates many small Python calls far more than a few C calls, so the profiled microseconds are
not the real ones: the table also gives each stage's share of the unprofiled run's CPU a message (the
same campaign in its own process, its fixed start-up CPU left out), which is the better estimate; read
the shares, not the decimals. Where py-spy can run, the same campaigns are also *sampled*
(bench/sampled.py), which inflates nothing: those shares are the ones to quote for "our code or aiohttp's".
"""

from __future__ import annotations

import cProfile
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import sampled
from bench.blast import blast_args, head, run_many, write_campaign
from bench.common import audience, upstream
from bench.stages import OTHER, OURS, Key, own_stage


def attribute(stats: dict[Key, tuple]) -> dict[str, float]:
    """Self seconds by stage, with unattributed functions' self time spread over their callers."""
    memo: dict[Key, dict[str, float]] = {}

    def share(key: Key, stack: frozenset[Key]) -> dict[str, float]:
        if key in memo:
            return memo[key]
        own = own_stage(key)
        if own is not None:
            memo[key] = {own: 1.0}
            return memo[key]
        callers = stats[key][4] if key in stats else {}
        mix: dict[str, float] = {}
        total = 0.0
        for caller, (_cc, nc, tt, _ct) in callers.items():
            if caller in stack:
                continue
            weight = tt or nc * 1e-9
            total += weight
            for stage, part in share(caller, stack | {key}).items():
                mix[stage] = mix.get(stage, 0.0) + weight * part
        memo[key] = {k: v / total for k, v in mix.items()} if total else {OTHER: 1.0}  # cycles: callers outside
        return memo[key]

    out: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, _callers) in stats.items():
        for stage, part in share(key, frozenset()).items():
            out[stage] = out.get(stage, 0.0) + tt * part
    return out


PATHS = {"batched": (1000, 4), "single": (1, 64)}  # recipients a request, requests in flight


def profile_path(name: str, n: int, toml: Path, warm: Path, plain: dict[str, Any]) -> dict[str, Any]:
    """The campaign at `toml` (on a live upstream) profiled in this process after a warm-up run of `warm`;
    `plain` is the same campaign's unprofiled run (its own process, its cpu_s start-up and warm-up left out)."""
    from dispatcher.cli import main

    batch, concurrency = PATHS[name]
    main(["blast", str(toml), "--quiet", "--run-id", f"{name}-warm", "--source", str(warm)])  # imports, JIT
    prof = cProfile.Profile()
    prof.enable()
    main(["blast", str(toml), "--quiet", "--run-id", f"{name}-prof"])
    prof.disable()
    raw = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by_stage = attribute(raw)
    profiled = sum(by_stage.values())
    cpu_us = plain["cpu_s"] / n * 1e6
    rows = [{"stage": stage, "profiled_us_per_msg": round(s / n * 1e6, 3), "share": round(s / profiled, 4),
             "estimated_us_per_msg": round(s / profiled * cpu_us, 3)}
            for stage, s in sorted(by_stage.items(), key=lambda kv: -kv[1])]
    top = sorted(((k, v[2]) for k, v in raw.items()), key=lambda kv: -kv[1])[:12]
    return {"messages": n, "batch_size": batch, "concurrency": concurrency,
            "unprofiled_msgs_per_s": plain["msgs_per_s"], "unprofiled_cpu_us_per_msg": round(cpu_us, 2),
            "profiled_us_per_msg": round(profiled / n * 1e6, 2), "stages": rows,
            "split": whose(rows),
            "top_functions": [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "self_us_per_msg": round(tt / n * 1e6, 3)}
                              for k, tt in top]}


def run(quick: bool = False) -> dict[str, Any]:
    sizes = {"batched": 20_000 if quick else 200_000, "single": 2_000 if quick else 20_000}
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as d, upstream("nrs360") as url:
        tmp = Path(d)
        csvs = {name: audience(tmp / f"a-{n}.csv", n) for name, n in sizes.items()}
        tomls = {name: write_campaign(tmp, url, csvs[name], *PATHS[name], name=f"prof-{name}") for name in sizes}
        # both unprofiled runs in one process, each after its own warm-up run (bench/runner.py)
        plains, _ = run_many([args for name in sizes for args in (
            blast_args(tomls[name], f"{name}-plain-warm", head(csvs[name])), blast_args(tomls[name], f"{name}-plain"))])
        out = {name: profile_path(name, sizes[name], tomls[name], head(csvs[name]), plains[2 * i + 1])
               for i, name in enumerate(sizes)}
        if not quick and sampled.available():
            for name in sizes:
                try:
                    out[name]["sampled"] = sampled.profile(blast_args(tomls[name], f"{name}-sampled"), tmp, name,
                                                           out[name]["unprofiled_cpu_us_per_msg"])
                except (subprocess.SubprocessError, OSError) as e:  # the cProfile table stands without it
                    out[name]["sampled"] = {"error": f"{type(e).__name__}: {e}"}
    return {"server": "fast upstream (bench/upstream.py)", **out,
            "note": "cProfile inflates small Python calls: read the shares; 'estimated' scales them to the "
                    "unprofiled run's CPU a message"}


def whose(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Whose code a path's time is in, from its stages' shares."""
    ours = sum(r["share"] for r in rows if r["stage"] in OURS)
    aiohttp = sum(r["share"] for r in rows if r["stage"].startswith("HTTP: client"))
    loop = sum(r["share"] for r in rows if r["stage"].startswith("event loop"))
    return {"our code": round(ours, 4), "HTTP client": round(aiohttp, 4), "event loop": round(loop, 4),
            "other": round(max(0.0, 1 - ours - aiohttp - loop), 4)}


def _split(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in whose(rows).items())


def table(r: dict[str, Any]) -> str:
    b, s = r["batched"], r["single"]
    paths = ("batched", "single")
    sampled_ok = all("stages" in r[k].get("sampled", {}) for k in paths)
    stages = [row["stage"] for row in b["stages"]]
    stages += [row["stage"] for row in s["stages"] if row["stage"] not in stages]
    by = {k: {row["stage"]: row for row in r[k]["stages"]} for k in paths}
    sby = {k: {row["stage"]: row for row in r[k]["sampled"]["stages"]} for k in paths} if sampled_ok else {}
    head = "| stage | batched est. us/msg | batched share |" + (" batched sampled |" if sampled_ok else "")
    head += " single est. us/msg | single share |" + (" single sampled |" if sampled_ok else "")
    lines = [f"Against the {r['server']}. Batched: 360nrs, {b['batch_size']} a request, {b['messages']:,} messages, "
             f"unprofiled {b['unprofiled_msgs_per_s']:,.0f} msg/s at {b['unprofiled_cpu_us_per_msg']} us CPU a message. "
             f"Single: one a request, {s['concurrency']} in flight, {s['messages']:,} messages, unprofiled "
             f"{s['unprofiled_msgs_per_s']:,.0f} msg/s at {s['unprofiled_cpu_us_per_msg']} us CPU a message. "
             f"Estimated = share x unprofiled CPU a message ({r['note']})."
             + (" Sampled: the share of py-spy's stacks (bench/sampled.py), and that share of the unprofiled "
                "CPU a message." if sampled_ok else ""), "", head,
             "|---|" + "---:|" * (6 if sampled_ok else 4)]
    for stage in stages:
        cells = []
        for k in paths:
            row = by[k].get(stage)
            cells.append(f"{row['estimated_us_per_msg']:.2f} | {row['share']:.1%}" if row else "- | -")
            if sampled_ok:
                srow = sby[k].get(stage)
                cells.append(f"{srow['estimated_us_per_msg']:.2f} ({srow['share']:.1%})" if srow else "-")
        lines.append(f"| {stage} | {' | '.join(cells)} |")
    lines.append("| **total** | " + " | ".join(f"{r[k]['unprofiled_cpu_us_per_msg']:.2f} | 100%" + (" | 100%" if sampled_ok else "")
                                              for k in paths) + " |")
    for k in paths:
        line = f"\n{k.capitalize()} path, by whose code: {_split(r[k]['stages'])} (cProfile)"
        if sampled_ok:
            line += f"; sampled: {_split(r[k]['sampled']['stages'])}"
        lines.append(line + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run("--quick" in sys.argv)))
