"""What a blast's delivery reports say of its sent records: delivered, undelivered, or still pending.

Reports are kept as they came, one JSON line each, beside the results file (`RUN.jsonl` ->
`RUN.reports.jsonl`), duplicates and strangers included. A record's delivery is read from them like the
daemon reads an outbox row's: by (provider alias, message id), the report of highest rank (accepted <
sent < final < engagement), the latest event among equals, the later arrival among those; so duplicates
and reports out of order change nothing. A final report says delivered (or an engagement: read, opened,
clicked) or undelivered (undelivered, failed, expired, rejected, bounced, dropped, deleted); anything
else, or no report, is pending. Only the records of providers the run asked to report are counted. What
is held while counting is compact (blast/heard.py): a few bytes a sent record.
"""

from __future__ import annotations

import csv
import datetime as dt
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..model import RESULT_FIELDS
from ..providers.dlr import Report
from .heard import CHUNK, Keys, Tally, count


def reports_path(results: Path) -> Path:
    """The reports file beside a results file."""
    return results.with_name(f"{results.name.rsplit('.', 1)[0]}.reports.jsonl")


def line(r: Report, received: dt.datetime) -> bytes:
    """One report as the line the reports file keeps."""
    return orjson.dumps({"provider": r.provider, "message_id": r.message_id, "recipient": r.recipient,
                         "status": r.status, "rank": r.rank, "provider_status": r.provider_status,
                         "event_at": r.event_at.isoformat(), "part": r.part, "received_at": received.isoformat(),
                         "payload": r.payload}, default=str, option=orjson.OPT_APPEND_NEWLINE)


def sent_keys(kind: str, path: Path) -> Keys:
    """The message ids of every sent result of a results file (the last line of a seq wins; a later line
    for it that is not `sent` removes it), gathered in numpy chunks: a few bytes a record at the peak too."""
    seqs, aliases, mids = array("q"), array("h"), []
    names: dict[str, int] = {}
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        nonlocal seqs, aliases, mids
        if mids:
            chunks.append((np.frombuffer(seqs, np.int64).copy(), np.frombuffer(aliases, np.int16).copy(),
                           np.array(mids, dtype=np.bytes_)))
            seqs, aliases, mids = array("q"), array("h"), []
    if path.exists():
        for seq, status, provider, mid in (_jsonl(path) if kind == "jsonl" else _csv(path)):
            seqs.append(seq)
            sent = status == "sent" and bool(mid)
            aliases.append(names.setdefault(provider, len(names)) if sent else -1)
            mids.append(mid.encode() if sent and mid else b"")
            if len(mids) >= CHUNK:
                flush()
    flush()
    if not chunks:
        return Keys()
    seq, alias, mid = (np.concatenate(c) for c in zip(*chunks, strict=True))
    order = np.lexsort((np.arange(seq.size), seq))  # by seq, then the order written
    seq, alias, mid = seq[order], alias[order], mid[order]
    last = np.ones(seq.size, dtype=bool)
    last[:-1] = seq[1:] != seq[:-1]
    alias, mid = alias[last], mid[last]
    return Keys({name: np.sort(mid[alias == code]) for name, code in names.items()})


def _jsonl(path: Path) -> Iterator[tuple[int, str, str, str | None]]:
    with open(path, "rb", buffering=1 << 20) as f:
        for raw in f:
            if not raw.endswith(b"\n") or not raw.startswith(b'{"seq":'):
                continue
            try:
                d = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            yield int(d["seq"]), str(d.get("status")), str(d.get("provider")), d.get("message_id")


def _csv(path: Path) -> Iterator[tuple[int, str, str, str | None]]:
    at = {name: RESULT_FIELDS.index(name) for name in ("status", "provider", "message_id")}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f)
        next(rows, None)
        for row in rows:
            if len(row) == len(RESULT_FIELDS) and row[0].isdigit():
                yield int(row[0]), row[at["status"]], row[at["provider"]], row[at["message_id"]] or None


def of_run(m: dict[str, Any]) -> dict[str, int] | None:
    """A run's delivery counts from its files, when it listened for reports (its manifest says where)."""
    origin = m.get("origin") or {}
    r, res = origin.get("reports") or {}, origin.get("results") or {}
    if not r.get("path") or res.get("type") not in ("jsonl", "csv") or not res.get("path"):
        return None
    return count(sent_keys(res["type"], Path(res["path"])), Tally().read(Path(r["path"])), r.get("asked") or ())
