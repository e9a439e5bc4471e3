"""`--limit N`: a test send to the first N sendable records of the source, as a run of its own.

"Sendable" is what the engine would hand a provider: a record that routes, has a valid recipient and
renders. Rows the source or the preparer rejects before the N-th sendable one keep their rejected
result (they are part of what was tried); nothing after it is read. The source is wrapped so that the
last chunk is cut right after the N-th sendable record, and the preparer so that each chunk is prepared
once (what the cut needed is reused, unless the engine changed the chunk). A resume of a limited run
counts the records earlier attempts finished (sent or failed) towards N.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ..engine import Prepared, Preparer
from ..model import Chunk, Result, column
from ..sources.base import Part, Source


class Limit:
    """The `source` and `preparer` of a limited run: reading stops after `n` sendable records."""

    def __init__(self, inner: Source, preparer: Preparer, n: int) -> None:
        self.left = max(n, 0)
        self.source = LimitedSource(inner, self)
        self.preparer = LimitedPreparer(preparer, self)
        self.inner_preparer = preparer
        self.ready: tuple[Chunk, Prepared] | None = None  # the chunk last given out, prepared

    def cut(self, records: Chunk, bad: list[Result]) -> tuple[Chunk, list[Result], bool]:
        """The chunk (and its unreadable rows) up to the `left`-th sendable record; whether that was the last."""
        prepared = self.inner_preparer.prepare(records)
        sendable = sorted(s for msgs in prepared[0].values() for s in column(msgs, "seq"))
        if len(sendable) < self.left:
            self.left -= len(sendable)
            self.ready = (records, prepared)
            return records, bad, False
        last = sendable[self.left - 1] if self.left else -1
        self.left = 0
        keep = [i for i, s in enumerate(records.seq) if s <= last]
        cut = records.take(keep)
        self.ready = None  # the cut chunk is prepared again: the rows after the cut are not sent
        return cut, [r for r in bad if r.seq <= last], True


class LimitedSource(Source):
    """The wrapped source, up to the limit; everything else it says is the wrapped source's."""

    def __init__(self, inner: Source, limit: Limit) -> None:
        self.inner = inner
        self.limit = limit
        self.name = inner.name
        self.splits = False
        self.given = 0  # rows handed out (records and unreadable ones)
        self.through = False  # the limit was reached or the source read to its end

    def columns(self) -> list[str] | None:
        return self.inner.columns()

    async def chunks(self, skip: Callable[[int], bool] | None = None,
                     part: Part | None = None) -> AsyncIterator[tuple[Chunk, list[Result]]]:
        if self.limit.left <= 0:
            self.through = True
            return
        async for records, bad in self.inner.chunks(skip):
            records, bad, last = self.limit.cut(records, bad)
            self.given += len(records) + len(bad)
            if last:
                self.through = True
                if len(records) or bad:
                    yield records, bad
                return
            yield records, bad
        self.through = True

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def progress(self) -> float | None:
        return None

    def estimate_total(self) -> int | None:
        """Once through: the rows given out (a resume's skipped records are added by the caller's count)."""
        return self.given if self.through else None

    async def close(self) -> None:
        await self.inner.close()


class LimitedPreparer:
    """The wrapped preparer, reusing what the cut already prepared."""

    def __init__(self, inner: Preparer, limit: Limit) -> None:
        self.inner = inner
        self.limit = limit

    def prepare(self, rows: Chunk) -> Prepared:
        ready = self.limit.ready
        self.limit.ready = None
        if ready is not None and ready[0] is rows:
            return ready[1]
        return self.inner.prepare(rows)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def digest(self) -> str:
        return self.inner.digest()

    def describe(self, seq: int, fields: dict[str, Any]) -> tuple[str, str]:
        return self.inner.describe(seq, fields)
