"""What a blast's delivery reports say of its sent records: delivered, undelivered, or still pending.

Reports are kept as they came, one JSON line each, beside the results file (`RUN.jsonl` ->
`RUN.reports.jsonl`), duplicates and strangers included. A record's delivery is read from them like the
daemon reads an outbox row's: by (provider alias, message id), the report of highest rank (accepted <
sent < final < engagement), the latest event among equals, the later arrival among those; so duplicates
and reports out of order change nothing. A final report says delivered (or an engagement: read, opened,
clicked) or undelivered (undelivered, failed, expired, rejected, bounced, dropped, deleted); anything
else, or no report, is pending. Only the records of providers the run asked to report are counted.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..model import RESULT_FIELDS
from ..providers.dlr import Report

DELIVERED, UNDELIVERED, PENDING = "delivered", "undelivered", "reports_pending"
DELIVERED_WORDS = frozenset({"delivered", "read", "opened", "clicked"})
Key = tuple[str, str]  # (provider alias, message id)


def reports_path(results: Path) -> Path:
    """The reports file beside a results file."""
    return results.with_name(f"{results.name.rsplit('.', 1)[0]}.reports.jsonl")


def line(r: Report, received: dt.datetime) -> bytes:
    """One report as the line the reports file keeps."""
    return orjson.dumps({"provider": r.provider, "message_id": r.message_id, "recipient": r.recipient,
                         "status": r.status, "rank": r.rank, "provider_status": r.provider_status,
                         "event_at": r.event_at.isoformat(), "part": r.part, "received_at": received.isoformat(),
                         "payload": r.payload}, default=str, option=orjson.OPT_APPEND_NEWLINE)


class Tally:
    """The latest word on each message: (rank, event time, arrival) -> status, the highest kept."""

    def __init__(self) -> None:
        self.best: dict[Key, tuple[int, str, int, str]] = {}
        self.arrivals = 0

    def add(self, provider: str, message_id: str | None, status: str, rank: int | None, event_at: str) -> None:
        if not message_id or rank is None:
            return
        self.arrivals += 1
        key = (provider, message_id)
        mine = (rank, event_at, self.arrivals, status)
        had = self.best.get(key)
        if had is None or mine > had:
            self.best[key] = mine

    def add_report(self, r: Report) -> None:
        self.add(r.provider, r.message_id, r.status, r.rank, r.event_at.isoformat())

    def word(self, key: Key) -> str:
        """delivered, undelivered or reports_pending."""
        had = self.best.get(key)
        if had is None or had[0] < 3:
            return PENDING
        return DELIVERED if had[0] > 3 or had[3] in DELIVERED_WORDS else UNDELIVERED

    def read(self, path: Path) -> Tally:
        """The reports a file kept (a torn last line skipped)."""
        if not path.exists():
            return self
        with open(path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    continue
                try:
                    d = orjson.loads(raw)
                    self.add(d["provider"], d.get("message_id"), d["status"], d.get("rank"), d.get("event_at") or "")
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
        return self


def sent_keys(kind: str, path: Path) -> dict[int, Key]:
    """seq -> (provider, message id) of every sent result of a results file (the last line of a seq wins;
    a later line for it that is not `sent` removes it)."""
    out: dict[int, Key] = {}
    if not path.exists():
        return out
    for seq, status, provider, mid in (_jsonl(path) if kind == "jsonl" else _csv(path)):
        if status == "sent" and mid:
            out[seq] = (provider, mid)
        else:
            out.pop(seq, None)
    return out


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


def count(keys: Iterable[Key], tally: Tally, asked: Iterable[str]) -> dict[str, int]:
    """delivered / undelivered / reports_pending of the sent records of the providers asked to report."""
    out = dict.fromkeys((DELIVERED, UNDELIVERED, PENDING), 0)
    wanted = set(asked)
    for key in keys:
        if key[0] in wanted:
            out[tally.word(key)] += 1
    return out


def of_run(m: dict[str, Any]) -> dict[str, int] | None:
    """A run's delivery counts from its files, when it listened for reports (its manifest says where)."""
    origin = m.get("origin") or {}
    r, res = origin.get("reports") or {}, origin.get("results") or {}
    if not r.get("path") or res.get("type") not in ("jsonl", "csv") or not res.get("path"):
        return None
    keys = sent_keys(res["type"], Path(res["path"]))
    return count(keys.values(), Tally().read(Path(r["path"])), r.get("asked") or ())
