"""What a listening blast holds about its delivery reports, compact: a few bytes a sent record, not a dict
of Python strings (which cost some 500 bytes a record: 4 GB for 10 million).

- `Keys`: the message ids of the sent records, per provider alias a sorted numpy array of bytes
  (one fixed-width value a record: the id's length).
- `Tally`: every report heard, per alias as columns (message id, rank, event time, delivered or not),
  appended in chunks; the latest word on a message is resolved by one sort when it is asked for (its
  report of highest rank, the latest event among equals, the later arrival among those: duplicates and
  reports out of order change nothing). The columns are compacted to that best report a message when
  they have doubled, so many reports a message (a part each, accepted then delivered) cost no more.
- `Waiting`: the sent records still without a final report, narrowed by the finals heard since the last
  look (not a look at every record each time: that made hearing 20,000 reports quadratic).

A final report (rank 3) says delivered (or rank 4, an engagement: read, opened, clicked) or undelivered;
anything less, or none, is pending.
"""

from __future__ import annotations

import datetime as dt
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..providers.dlr import Report

DELIVERED, UNDELIVERED, PENDING = "delivered", "undelivered", "reports_pending"
DELIVERED_WORDS = frozenset({"delivered", "read", "opened", "clicked"})
FINAL = 3  # the rank of a final report
CHUNK = 8192  # reports buffered as Python values before they become numpy columns
Key = tuple[str, str]  # (provider alias, message id)


def _ids(values: Iterable[bytes]) -> np.ndarray:
    out = np.array(list(values), dtype=np.bytes_)
    return out if out.size else np.array([], dtype="S1")


def _when(event_at: Any) -> float:
    """A report's event time as seconds (ordering only); -inf when it has none."""
    if isinstance(event_at, dt.datetime):
        return event_at.timestamp()
    if event_at:
        try:
            return dt.datetime.fromisoformat(str(event_at)).timestamp()
        except ValueError:
            return float("-inf")
    return float("-inf")


class Keys:
    """The sent records' message ids: alias -> sorted bytes array (a record an entry, duplicates kept)."""

    def __init__(self, by_alias: dict[str, np.ndarray] | None = None) -> None:
        self.by_alias = by_alias or {}

    @classmethod
    def of(cls, pairs: Iterable[Key]) -> Keys:
        """From (alias, message id) pairs."""
        lists: dict[str, list[bytes]] = {}
        for alias, mid in pairs:
            if mid:
                lists.setdefault(alias, []).append(mid.encode())
        return cls({a: np.sort(_ids(v)) for a, v in lists.items()})

    def __len__(self) -> int:
        return sum(int(v.size) for v in self.by_alias.values())


class _Column:
    """One alias's reports: numpy chunks and a Python buffer of the latest."""

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.mids: list[bytes] = []
        self.ranks = array("b")
        self.events = array("d")
        self.good = array("b")
        self.stored = 0  # reports in the chunks
        self.compacted = 0  # messages after the last compaction
        self.generation = 0  # bumped when a compaction reorders the chunks
        self.best: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # resolved, while nothing new came

    def add(self, mid: bytes, rank: int, event: float, good: bool) -> None:
        self.mids.append(mid)
        self.ranks.append(rank)
        self.events.append(event)
        self.good.append(good)
        self.best = None
        if len(self.mids) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.mids:
            return
        self.chunks.append((_ids(self.mids), np.frombuffer(self.ranks, dtype=np.int8).copy(),
                            np.frombuffer(self.events, dtype=np.float64).copy(),
                            np.frombuffer(self.good, dtype=np.int8).astype(bool)))
        self.stored += len(self.mids)
        self.mids, self.ranks, self.events, self.good = [], array("b"), array("d"), array("b")
        if self.stored >= max(2 * self.compacted, 4 * CHUNK):
            self._compact()

    def _compact(self) -> None:
        mids, ranks, events, good = self.resolve(with_events=True)
        self.chunks = [(mids, ranks, events, good)]
        self.stored = self.compacted = int(mids.size)
        self.generation += 1

    def resolve(self, *, with_events: bool = False) -> Any:
        """(sorted unique message ids, their best rank, delivered or not) (and its event time)."""
        if self.best is not None and not with_events:
            return self.best
        self.flush()
        if not self.chunks:
            empty = np.array([], dtype="S1"), np.array([], np.int8), np.array([], np.float64), np.array([], bool)
            return empty if with_events else empty[:1] + empty[1:2] + empty[3:]
        mids, ranks, events, good = (np.concatenate(c) for c in zip(*self.chunks, strict=True))
        order = np.lexsort((np.arange(mids.size), events, ranks, mids))  # by id, then rank, event, arrival
        mids, ranks, events, good = mids[order], ranks[order], events[order], good[order]
        last = np.ones(mids.size, dtype=bool)
        last[:-1] = mids[1:] != mids[:-1]  # the last of each id is its best
        self.best = (mids[last], ranks[last], good[last])
        return (*self.best[:2], events[last], self.best[2]) if with_events else self.best

    def finals_since(self, mark: int) -> np.ndarray:
        """The message ids of the final reports that came after the first `mark` (of this generation)."""
        self.flush()
        out, seen = [], 0
        for mids, ranks, _, _ in self.chunks:
            if seen + mids.size > mark:
                take = slice(max(mark - seen, 0), None)
                out.append(mids[take][ranks[take] >= FINAL])
            seen += mids.size
        return np.concatenate(out) if out else np.array([], dtype="S1")


class Tally:
    """The reports a run heard, per alias (see the module's docstring)."""

    def __init__(self) -> None:
        self.columns: dict[str, _Column] = {}
        self.arrivals = 0

    def add(self, provider: str, message_id: str | None, status: str, rank: int | None, event_at: Any) -> None:
        """One report (`event_at`: a datetime, ISO text, or empty); one without an id or a rank is not kept."""
        if not message_id or rank is None:
            return
        self.arrivals += 1
        column = self.columns.get(provider)
        if column is None:
            column = self.columns[provider] = _Column()
        column.add(message_id.encode(), rank, _when(event_at), status in DELIVERED_WORDS)

    def add_report(self, r: Report) -> None:
        self.add(r.provider, r.message_id, r.status, r.rank, r.event_at)

    def read(self, path: Path) -> Tally:
        """The reports a reports file kept (blast/delivery.py's lines; a torn last line skipped)."""
        if not path.exists():
            return self
        with open(path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    continue
                try:
                    d = orjson.loads(raw)
                    self.add(d["provider"], d.get("message_id"), d["status"], d.get("rank"), d.get("event_at") or "")
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                    continue
        return self

    def words(self, alias: str, mids: np.ndarray) -> tuple[int, int, int]:
        """(delivered, undelivered, pending) of these message ids of `alias`."""
        column = self.columns.get(alias)
        if column is None or not mids.size:
            return 0, 0, int(mids.size)
        best, rank, good = column.resolve()
        if not best.size:
            return 0, 0, int(mids.size)
        at = np.minimum(np.searchsorted(best, mids), best.size - 1)
        found = best[at] == mids
        r = np.where(found, rank[at], 0)
        final = r >= FINAL
        delivered = final & ((r > FINAL) | good[at])
        d, f = int(np.count_nonzero(delivered)), int(np.count_nonzero(final))
        return d, f - d, int(mids.size) - f

    def word(self, key: Key) -> str:
        """delivered, undelivered or reports_pending of one message."""
        d, u, _ = self.words(key[0], np.array([key[1].encode()], dtype=np.bytes_))
        return DELIVERED if d else UNDELIVERED if u else PENDING


def keys_of(keys: Keys | Iterable[Key]) -> Keys:
    return keys if isinstance(keys, Keys) else Keys.of(keys)


def count(keys: Keys | Iterable[Key], tally: Tally, asked: Iterable[str]) -> dict[str, int]:
    """delivered / undelivered / reports_pending of the sent records of the providers asked to report."""
    out = dict.fromkeys((DELIVERED, UNDELIVERED, PENDING), 0)
    wanted = set(asked)
    for alias, mids in keys_of(keys).by_alias.items():
        if alias in wanted:
            d, u, p = tally.words(alias, mids)
            out[DELIVERED] += d
            out[UNDELIVERED] += u
            out[PENDING] += p
    return out


class Waiting:
    """The sent records of the asked providers still without a final report, narrowed as finals come."""

    def __init__(self, keys: Keys, tally: Tally, asked: Iterable[str]) -> None:
        self.tally = tally
        self.left: dict[str, np.ndarray] = {}
        self.marks: dict[str, tuple[int, int]] = {}  # alias -> (generation, reports looked at)
        wanted = set(asked)
        for alias, mids in keys.by_alias.items():
            if alias in wanted:
                self.left[alias] = mids
                self._recount(alias)

    def _recount(self, alias: str) -> None:
        column = self.tally.columns.get(alias)
        mids = self.left[alias]
        if column is not None and mids.size:
            best, rank, _ = column.resolve()
            if best.size:
                at = np.minimum(np.searchsorted(best, mids), best.size - 1)
                mids = mids[~((best[at] == mids) & (rank[at] >= FINAL))]
            column.flush()
            self.marks[alias] = (column.generation, column.stored)
        self.left[alias] = mids

    def look(self) -> int:
        """How many are still pending, after the finals heard since the last look."""
        for alias, mids in self.left.items():
            column = self.tally.columns.get(alias)
            if column is None or not mids.size:
                continue
            column.flush()  # (it may compact)
            generation, seen = self.marks.get(alias, (-1, 0))
            if generation != column.generation:
                self._recount(alias)  # compacted (or first heard) since: one full look
                continue
            finals = column.finals_since(seen)
            self.marks[alias] = (column.generation, column.stored)
            if finals.size:
                self.left[alias] = mids[~_among(mids, finals)]
        return sum(int(v.size) for v in self.left.values())


def _among(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which entries of `sorted_ids` (sorted, duplicates kept) are in `ids`: a search a new id, not a sort
    of all of them."""
    u = np.unique(ids)
    edges = np.zeros(sorted_ids.size + 1, dtype=np.int64)
    np.add.at(edges, np.searchsorted(sorted_ids, u, "left"), 1)
    np.add.at(edges, np.searchsorted(sorted_ids, u, "right"), -1)
    return np.cumsum(edges[:-1]) > 0
