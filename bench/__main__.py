"""`python -m bench [--quick] [--only a,b] [--out DIR]`: every scenario, each beside its baseline.

Writes DIR/<timestamp>.json (with the machine described), DIR/latest.md (tables), PNG charts,
and the README's Performance section (between its bench markers) from latest.md.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, machine

SCENARIOS = ["codec", "blast", "providers", "pacing", "concurrency", "memory", "profile", "postgres", "daemon", "api"]
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
    "api": "Daemon HTTP API: POST /v1/messages against a raw asyncpg COPY of the same rows",
}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true", help="every scenario small (a smoke test, ~2 minutes)")
    p.add_argument("--only", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the README's Performance section")
    a = p.parse_args()
    names = a.only.split(",") if a.only else SCENARIOS
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "quick": a.quick, "scenarios": {}, "seconds": {}}
    md = [f"Measured {report['machine']['time']} on {report['machine']['cores']} cores "
          f"({report['machine']['cpu'] or 'unknown CPU'}), Python {report['machine']['python']}"
          + (" — quick mode: small sizes, figures indicative only" if a.quick else "") + "."]
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ImportError as e:
            report["scenarios"][name] = {"skipped": f"not available: {e}"}
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            result = module.run(quick=a.quick)
        except Exception as e:  # one broken scenario must not hide the others' figures
            traceback.print_exc()
            result = {"error": f"{type(e).__name__}: {e}"}
        report["seconds"][name] = round(time.monotonic() - t0, 1)
        report["scenarios"][name] = result
        md.append(f"\n### {TITLES.get(name, name)}\n")
        if "error" in result:
            md.append(f"failed: {result['error']}")
        elif hasattr(module, "table"):
            md.append(module.table(result))
        print(md[-1], flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    total = sum(report["seconds"].values())
    md.append(f"\nThe whole run took {total:,.0f} s ({', '.join(f'{k} {v:,.0f} s' for k, v in report['seconds'].items())}).")
    charts = draw(report, out)
    if charts:
        md.append("\nCharts: " + ", ".join(f"`{c.name}`" for c in charts) + f" in `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}`.")
    text = "\n".join(md) + "\n"
    (out / "latest.md").write_text(text)
    if not a.no_readme and not a.quick:
        readme(text)
    print(f"\nwrote {out / (stamp + '.json')}, {out / 'latest.md'} and {len(charts)} charts")
    return 0 if not any("error" in r for r in report["scenarios"].values()) else 1


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
    mem = sc.get("memory", {}).get("sizes")
    if mem:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["recipients"] for r in mem], [r["peak_rss_mb"] for r in mem], marker="o")
        ax.set_xscale("log")
        ax.set_ylim(0, max(150, max(r["peak_rss_mb"] for r in mem) * 1.2))
        ax.axhline(150, linestyle="--", color="grey")
        ax.set_xlabel("recipients")
        ax.set_ylabel("peak RSS (MB)")
        ax.set_title("Memory against audience size")
        save(fig, "memory.png")
    return made


def readme(md: str) -> None:
    path = ROOT / "README.md"
    text = path.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        a, b = text.index(start) + len(start), text.index(end)
        path.write_text(text[:a] + "\n" + md + text[b:])


if __name__ == "__main__":
    sys.exit(main())
