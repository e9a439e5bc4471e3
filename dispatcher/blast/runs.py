"""`dispatcher runs`, `dispatcher status RUN_ID` and `dispatcher results RUN_ID`: what a state directory
holds about its runs, told from what a resume reads.

Each blast run keeps `runs/ID/run.json` (see state.RunState): what it is a run of, what it was started
as (campaign file, overrides, results file), what it retries, and one entry per attempt with its counts.
The counts an attempt wrote are not the truth of a run: an attempt killed by SIGKILL (or whose worker
was killed) writes none, yet its results are in the sink and a resume skips them. So the totals here
come from the results file when the run recorded one (`origin.results`), from the PostgreSQL sink's table
(blast/held.py: one statement a run, delivery included), and from the attempts' counts only when neither
can be read. A run and its retries (`--retry-failed`) roll up: each record's final outcome is the latest
run's result for it.

A run's state is one of: finished (every record has a result), halted (a provider could not take the
rest: deferred), stopped (a signal stopped it), interrupted (its last attempt never ended: killed).
"""

from __future__ import annotations

import csv
import datetime as dt
import shlex
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..model import RESULT_FIELDS
from ..state import RunState, run_ids
from .delivery import of_run
from .held import Held, final_rows, read, table_of
from .held import rolled_up as rolled_up_in_table

COUNTS = ("sent", "failed", "rejected")
FINISHED, HALTED, STOPPED, INTERRUPTED = "finished", "halted", "stopped", "interrupted"
RESUMED = ("--source", "--rate", "--concurrency", "--workers", "--url", "--on-doubt", "--state-dir", "--limit")


def manifests(state_dir: Path) -> list[dict[str, Any]]:
    found = (RunState(state_dir, rid).manifest for rid in run_ids(state_dir))
    return sorted((m for m in found if m is not None), key=lambda m: m.get("created") or 0)


def results_file(m: dict[str, Any]) -> tuple[str, Path] | None:
    """(type, path) of the run's primary results file, when it recorded one."""
    r = (m.get("origin") or {}).get("results") or {}
    if r.get("type") in ("jsonl", "csv") and r.get("path"):
        return r["type"], Path(r["path"])
    return None


def outcomes(m: dict[str, Any]) -> dict[int, str] | None:
    """seq -> status of every result in the run's results file (the last one of a seq wins); None when
    the run has no file this module can read."""
    found = results_file(m)
    if found is None:
        return None
    kind, path = found
    if not path.exists():
        return {}
    return dict(_jsonl_status(path) if kind == "jsonl" else _csv_status(path))


def _jsonl_status(path: Path) -> Iterator[tuple[int, str]]:
    """A byte search a line (`seq` first, `status` a key the sink writes unescaped): no JSON parse."""
    key = b'"status":"'
    with open(path, "rb", buffering=1 << 20) as f:
        for line in f:
            if line.startswith(b'{"seq":') and line.endswith(b"\n"):
                at = line.index(key) + len(key)
                yield int(line[7:line.index(b",", 7)]), line[at:line.index(b'"', at)].decode()


def _csv_status(path: Path) -> Iterator[tuple[int, str]]:
    status = RESULT_FIELDS.index("status")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f)
        next(rows, None)
        for row in rows:
            if len(row) > status and row[0].isdigit():
                yield int(row[0]), row[status]


def totals(m: dict[str, Any], held: Held | None = None) -> dict[str, int]:
    """sent / failed / rejected of one run: from its results file or what its PostgreSQL sink `held`, else
    the attempts' counts added up."""
    if held is not None and held.totals is not None:
        return held.totals
    got = outcomes(m)
    if got is not None:
        c = Counter(got.values())
        return {k: c.get(k, 0) for k in COUNTS}
    t = dict.fromkeys(COUNTS, 0)
    for a in m.get("attempts", []):
        for k in COUNTS:
            t[k] += int((a.get("counts") or {}).get(k, 0))
    return t


def state_of(m: dict[str, Any]) -> tuple[str, str | None]:
    """(state, why it is not finished, or None)."""
    attempts = m.get("attempts") or []
    if not attempts:
        return INTERRUPTED, "never started"
    c = attempts[-1].get("counts")
    if c is None:
        return INTERRUPTED, "its last attempt did not end (killed): records may be in doubt"
    if c.get("interrupted"):
        return STOPPED, f"{c.get('unsent', 0):,} records have no result"
    if c.get("deferred") or c.get("halted_all"):
        why = "; ".join(f"{a} halted: {' '.join(str(x) for x in w if x)}" for a, w in (c.get("halts") or {}).items())
        return HALTED, f"{c.get('deferred', 0):,} deferred" + (f" ({why})" if why else "")
    return FINISHED, None


def pending(m: dict[str, Any]) -> str | None:
    """Why the run is not finished (its last attempt left records without a result), or None."""
    return state_of(m)[1]


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _command(m: dict[str, Any], *extra: str) -> list[str]:
    origin = m.get("origin") or {}
    words = ["dispatcher", "blast", origin.get("campaign") or "CAMPAIGN.toml", *extra]
    given = origin.get("overrides") or {}
    for flag in RESUMED:
        value = given.get(flag[2:].replace("-", "_"))
        if value is not None:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return words


def resume_command(m: dict[str, Any]) -> str:
    """The command that resumes the run: its campaign, run id and every override it recorded."""
    return " ".join(shlex.quote(w) for w in _command(m, "--run-id", m["run_id"]))


def retry_command(m: dict[str, Any]) -> str:
    """The command that retries the run's failed records (a new run over the run's own source)."""
    return " ".join(shlex.quote(w) for w in _command(m, "--retry-failed", m["run_id"]))


def _asked(m: dict[str, Any]) -> list[str]:
    return list(((m.get("origin") or {}).get("reports") or {}).get("asked") or ())


def reports_command(m: dict[str, Any]) -> str:
    """The command that listens for the run's late delivery reports, where its providers were told."""
    r = (m.get("origin") or {}).get("reports") or {}
    words = ["dispatcher", "reports", m["run_id"], (m.get("origin") or {}).get("campaign") or "CAMPAIGN.toml",
             "--listen", r.get("listen") or "HOST:PORT"]
    state = ((m.get("origin") or {}).get("overrides") or {}).get("state_dir")
    return " ".join(shlex.quote(w) for w in (*words, *(("--state-dir", state) if state else ())))


def retries_of(runs: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The retry runs of `run_id`, and theirs, in the order they were made."""
    out: list[dict[str, Any]] = []
    ids = {run_id}
    for m in runs:
        if m.get("retry_of") in ids:
            out.append(m)
            ids.add(m["run_id"])
    return out


def final(runs: list[dict[str, Any]]) -> dict[int, tuple[str, str]] | None:
    """seq -> (status, run id) of each record across a run and its retries: the latest run's result."""
    out: dict[int, tuple[str, str]] = {}
    for m in runs:
        got = outcomes(m)
        if got is None:
            return None
        for seq, status in got.items():
            out[seq] = (status, m["run_id"])
    return out


def rolled_up(runs: list[dict[str, Any]]) -> dict[str, int]:
    """sent / failed / rejected of a run and its retries, each record counted once, by its final outcome."""
    f = final(runs)
    if f is None:
        return rolled_up_in_table(runs) or totals(runs[-1])
    c = Counter(s for s, _ in f.values())
    return {k: c.get(k, 0) for k in COUNTS}


def delivery(m: dict[str, Any], held: Held | None) -> dict[str, int] | None:
    """The run's delivery counts: from its reports file, or its PostgreSQL sink's reports table."""
    return held.delivery if held is not None else of_run(m)


def _delivered(m: dict[str, Any], held: Held | None) -> str:
    if held is not None and held.error is not None and ((m.get("origin") or {}).get("reports") or {}):
        return "?"  # it listened, but its table cannot be read now (said by `status`)
    d = delivery(m, held)
    return "-" if d is None else format(d["delivered"], ",")


def list_runs(state_dir: Path) -> str:
    runs = manifests(state_dir)
    if not runs:
        return f"no runs under {state_dir}"
    held = read(runs)
    lines = [f"{'run':<32} {'started':<19} {'tries':>5} {'sent':>10} {'failed':>8} {'rejected':>8} "
             f"{'delivered':>10}  state"]
    for m in runs:
        t = totals(m, held.get(m["run_id"]))
        state, why = state_of(m)
        lines.append(f"{m['run_id']:<32} {_when(m.get('created')):<19} {len(m.get('attempts', [])):>5} "
                     f"{t['sent']:>10,} {t['failed']:>8,} {t['rejected']:>8,} "
                     f"{_delivered(m, held.get(m['run_id'])):>10}  "
                     + (f"{state}, resumable: {why}" if why else state)
                     + (f" (retry of {m['retry_of']})" if m.get("retry_of") else ""))
    for m in runs:
        if m.get("retry_of"):
            continue
        tries = retries_of(runs, m["run_id"])
        if tries:
            r = rolled_up([m, *tries])
            heard = [d for d in (delivery(x, held.get(x["run_id"])) for x in [m, *tries]) if d is not None]
            # a retry sends what its run did not: their delivered records add up
            lines.append(f"{m['run_id']} + {len(tries)} retr{'y' if len(tries) == 1 else 'ies'}: "
                         + ", ".join(f"{r[k]:,} {k}" for k in COUNTS)
                         + (f", {sum(d['delivered'] for d in heard):,} delivered" if heard else ""))
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
        state = ("killed" if not a.get("counts") else STOPPED if c.get("interrupted") else
                 HALTED if c.get("deferred") or c.get("halted_all") else "done")
        lines.append(f"  attempt {i}  {_when(a.get('started'))} -> {_when(a.get('ended'))}  {state}: "
                     + ", ".join(f"{k} {c.get(k, 0):,}" for k in (*COUNTS, "deferred", "unsent", "in_doubt")))
    held = read([m]).get(run_id)
    t = totals(m, held)
    lines.append("  total     " + ", ".join(f"{k} {v:,}" for k, v in t.items()) + f" ({_where_from(m, held)})")
    d = delivery(m, held)
    if held is not None and held.error is not None and ((m.get("origin") or {}).get("reports") or {}):
        lines.append(f"  reports   not read: {held.error}")
    if d is not None:
        lines.append(f"  reports   delivered {d['delivered']:,}, undelivered {d['undelivered']:,}, no final report yet "
                     f"{d['reports_pending']:,} (of the sent records of {', '.join(_asked(m)) or 'no provider'}; "
                     f"late ones: {reports_command(m)})")
    tries = retries_of(manifests(state_dir), run_id)
    if tries:
        r = rolled_up([m, *tries])
        lines.append(f"  with {len(tries)} retr{'y' if len(tries) == 1 else 'ies'} "
                     f"({', '.join(x['run_id'] for x in tries)}): " + ", ".join(f"{k} {v:,}" for k, v in r.items()))
    state, why = state_of(m)
    lines.append(f"  state     {state}" + (f", resumable: {why}\n  resume    {resume_command(m)}" if why else ""))
    if t["failed"] and not tries:
        lines.append(f"  retry     {retry_command(m)}")
    return "\n".join(lines)


def _where_from(m: dict[str, Any], held: Held | None) -> str:
    if held is not None:
        if held.totals is not None:
            return f"in the PostgreSQL table {held.table}"
        return f"as the attempts counted them: the PostgreSQL table {held.table} was not read: {held.error}"
    return "in the results file" if results_file(m) else "as the attempts counted them"


def write_results(state_dir: Path, run_id: str, fmt: str, out: Any) -> int | None:
    """Each record's final outcome across the run and its retries, as JSONL or CSV lines on `out`
    (`seq`, `status`, `run_id`: the run that settled it). The count written, or None (no such run, or
    results this module cannot read)."""
    runs = manifests(state_dir)
    m = next((x for x in runs if x["run_id"] == run_id), None)
    if m is None:
        return None
    chain = [m, *retries_of(runs, run_id)]
    f = final(chain)
    if f is None and table_of(chain) is None:
        return None
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(("seq", "status", "run_id"))
        row = w.writerow
    else:
        def row(x: tuple[int, str, str]) -> None:
            out.write(orjson.dumps({"seq": x[0], "status": x[1], "run_id": x[2]}).decode() + "\n")
    if f is None:  # a PostgreSQL sink's table, streamed in seq order
        return final_rows(chain, lambda *x: row(x))
    for seq, (s, r) in sorted(f.items()):
        row((seq, s, r))
    return len(f)
