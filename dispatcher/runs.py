"""`dispatcher runs` and `dispatcher status RUN_ID`: what the run manifests under a state directory say.

Each blast run keeps `runs/ID/run.json` (see state.RunState): what it is a run of, what it
retries, and one entry per attempt with its counts. Totals add the attempts up (each
attempt sends only what the ones before it left); a run is resumable while its last attempt
left records without a result (stopped, deferred, or never read).
"""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path
from typing import Any

from .state import RunState, run_ids

COUNTS = ("sent", "failed", "rejected")


def manifests(state_dir: Path) -> list[dict[str, Any]]:
    found = (RunState(state_dir, rid).manifest for rid in run_ids(state_dir))
    return sorted((m for m in found if m is not None), key=lambda m: m.get("created") or 0)


def totals(m: dict[str, Any]) -> dict[str, int]:
    t = dict.fromkeys(COUNTS, 0)
    for a in m.get("attempts", []):
        for k in COUNTS:
            t[k] += int((a.get("counts") or {}).get(k, 0))
    return t


def pending(m: dict[str, Any]) -> str | None:
    """Why the run is not finished (its last attempt left records without a result), or None."""
    attempts = m.get("attempts") or []
    if not attempts:
        return "never started"
    last = attempts[-1]
    c = last.get("counts")
    if c is None:
        return "its last attempt did not finish (killed): records may be in doubt"
    if c.get("interrupted"):
        return f"stopped: {c.get('unsent', 0):,} records left unsent"
    if c.get("deferred") or c.get("halted_all"):
        why = "; ".join(f"{a} halted: {' '.join(str(x) for x in w if x)}" for a, w in (c.get("halts") or {}).items())
        return f"{c.get('deferred', 0):,} deferred" + (f" ({why})" if why else "")
    return None


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def resume_command(m: dict[str, Any]) -> str:
    campaign = (m.get("origin") or {}).get("campaign") or "CAMPAIGN.toml"
    return "dispatcher blast " + " ".join(shlex.quote(a) for a in (campaign, "--run-id", m["run_id"]))


def list_runs(state_dir: Path) -> str:
    runs = manifests(state_dir)
    if not runs:
        return f"no runs under {state_dir}"
    lines = [f"{'run':<32} {'started':<19} {'tries':>5} {'sent':>10} {'failed':>8} {'rejected':>8}  state"]
    for m in runs:
        t = totals(m)
        why = pending(m)
        lines.append(f"{m['run_id']:<32} {_when(m.get('created')):<19} {len(m.get('attempts', [])):>5} "
                     f"{t['sent']:>10,} {t['failed']:>8,} {t['rejected']:>8,}  "
                     + (f"resumable: {why}" if why else "finished")
                     + (f" (retry of {m['retry_of']})" if m.get("retry_of") else ""))
    return "\n".join(lines)


def show_run(state_dir: Path, run_id: str) -> str | None:
    m = RunState(state_dir, run_id).manifest
    if m is None:
        return None
    src = (m.get("identity") or {}).get("source") or {}
    lines = [f"run {run_id}", f"  campaign  {(m.get('origin') or {}).get('campaign', '-')}",
             f"  source    {src.get('path') or src.get('statement') or src.get('name') or '-'}",
             f"  started   {_when(m.get('created'))}"]
    if m.get("retry_of"):
        lines.append(f"  retries   the failed records of run {m['retry_of']}")
    for i, a in enumerate(m.get("attempts", []), 1):
        c = a.get("counts") or {}
        state = ("killed" if not a.get("counts") else "stopped" if c.get("interrupted") else
                 "deferred" if c.get("deferred") or c.get("halted_all") else "done")
        lines.append(f"  attempt {i}  {_when(a.get('started'))} -> {_when(a.get('ended'))}  {state}: "
                     + ", ".join(f"{k} {c.get(k, 0):,}" for k in (*COUNTS, "deferred", "unsent", "in_doubt")))
    t = totals(m)
    lines.append("  total     " + ", ".join(f"{k} {v:,}" for k, v in t.items()))
    why = pending(m)
    lines.append(f"  state     resumable: {why}\n  resume    {resume_command(m)}" if why else "  state     finished")
    return "\n".join(lines)
