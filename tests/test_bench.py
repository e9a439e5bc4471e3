"""The benchmark harness in quick mode: it runs every scenario and writes its outputs.

A smoke test: it asserts that figures, tables and charts are produced, never how fast."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
from blastkit import ROOT


def test_quick_bench_writes_json_table_and_charts(tmp_path, postgres_dsn):
    env = {**os.environ, "DISPATCHER_BENCH_DSN": postgres_dsn}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--no-readme"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = list(tmp_path.glob("*.json"))
    assert len(reports) == 1
    report = orjson.loads(reports[0].read_bytes())
    assert report["machine"]["cores"] and report["machine"]["packages"]["aiohttp"]
    scenarios = report["scenarios"]
    for name in ("codec", "blast", "providers", "pacing", "concurrency", "memory", "profile", "postgres", "daemon"):
        assert name in scenarios and not {"error", "skipped"} & set(scenarios[name]), (name, scenarios.get(name))
    blast = scenarios["blast"]
    for k in ("batched", "single"):
        assert blast[k]["dispatcher_msgs_per_s"] > 0 and blast[k]["bare_requests_per_s"] > 0 and blast[k]["ratio"] > 0
    assert scenarios["providers"]["precision"]["requests"] > 0
    assert {r["limiter"] for r in scenarios["pacing"]["strict"]} == {"new", "previous"}
    md = (tmp_path / "latest.md").read_text()
    assert "bare loop" in md and "Memory" in md
    assert {p.name for p in tmp_path.glob("*.png")} >= {"throughput.png", "codec.png", "memory.png"}
