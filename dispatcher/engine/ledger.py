"""The life of every record, and its one owner.

    read -> rejected
         -> queued -> on the wire -> sent | failed | waiting to retry -> (queued again)
         -> deferred (its provider cannot take anything now)

Every record that enters the engine leaves it exactly once: with one terminal result
(`finish`), deferred (`defer`: its provider halted; no result, a resume or the daemon's
outbox sends it later), or left unsent by a stop (`leave`: no result, a resume sends it).
Nothing else changes the count of records in flight, so "exactly one result per record, or
none and resumable" is true in one place, and the engine, its lanes and the daemon ask this
object rather than keep counts of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import FAILED, SENT, Message, ResultRow, Results
from ..providers.base import Outcome
from ..state import RunState


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    read: int = 0
    skipped: int = 0  # finished by an earlier attempt of this run (or not part of a retry)
    sent: int = 0
    failed: int = 0
    rejected: int = 0
    deferred: int = 0  # no result: the provider could not take them (halted); a resume sends them
    parts: int = 0
    requests: int = 0
    retries: int = 0  # requests retried
    retried: int = 0  # the records in them
    throttled: int = 0  # 429s
    ambiguous: int = 0  # retries after an answer that never came: possible duplicates
    in_doubt: int = 0  # in flight when an earlier attempt died
    unsent: int = 0  # left for a resume by a stop
    codes: Counter[str] = field(default_factory=Counter)
    texts: dict[str, str] = field(default_factory=dict)  # per key of `codes`, the first error text seen
    halts: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # alias -> (code, text)
    by_encoding: Counter[str] = field(default_factory=Counter)
    cost: float = 0.0
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, done, requests)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.rejected

    def add(self, other: Mapping[str, Any]) -> None:
        """Another process's Stats (as a dict of its fields) added to these: the counts summed, the codes
        and encodings counted, the first text of a code and every halt kept. `started`, `in_doubt` (the
        run's, found once by its owner) and `timeline` are the caller's to combine."""
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + other[name])
        self.codes.update(other["codes"])
        self.by_encoding.update(other["by_encoding"])
        for k, v in other["texts"].items():
            self.texts.setdefault(k, v)
        self.halts.update({a: tuple(w) for a, w in other["halts"].items()})


# the numbers of Stats that add up across the processes of a run (read from the dataclass: a new count is summed)
SUMMED = tuple(f.name for f in dataclasses.fields(Stats)
               if f.type in ("int", "float") and f.name not in ("started", "in_doubt"))


class Events:
    """What the engine tells its owner, instead of being read into. Every method is a cheap,
    synchronous notification; the default does nothing (the blast CLI needs none of them)."""

    def halted(self, alias: str, why: Outcome) -> None:
        """`alias` cannot take anything now (no credit, credentials refused, unreachable)."""

    def revived(self, alias: str) -> None:
        """`alias` takes messages again."""

    def deferred(self, alias: str, seqs: list[int], why: Outcome) -> None:
        """These records get no result now: their provider halted (or, with `defer_transient`, their
        retries ran out). The daemon puts their rows back in the outbox."""

    def idle(self) -> None:
        """Every record that entered has left: nothing in flight."""


class Ledger:
    """Counts the records in flight and settles each one exactly once."""

    def __init__(self, stats: Stats, journal: RunState, events: Events) -> None:
        self.stats = stats
        self.journal = journal
        self.events = events
        self.in_flight = 0
        self.limit = 0  # records in flight before the reader waits (set by the engine)
        self.source_done = False
        self._buffer: list[Results] = []
        self._rows: list[ResultRow] = []  # single accepted results since the last block (finish_sent)
        self._room = asyncio.Event()
        self._room.set()
        self._drained = asyncio.Event()
        self._pending = asyncio.Event()  # results wait for the writer

    # -- entering ---------------------------------------------------------------------------
    def enter(self, n: int) -> None:
        self.in_flight += n
        if self.limit and self.in_flight > self.limit:
            self._room.clear()

    @property
    def full(self) -> bool:
        return bool(self.limit) and self.in_flight > self.limit

    async def room(self) -> None:
        """Wait until the records in flight are back under the limit."""
        await self._room.wait()

    def room_for(self) -> int:
        """How many more records may enter now (the limit when there is none)."""
        return max(self.limit - self.in_flight, 0) if self.limit else 1 << 30

    # -- leaving: the only three ways out ------------------------------------------------------
    def finish(self, results: Results) -> None:
        """Terminal results: they go to the sinks on the next loop turn, one write for a turn's results."""
        n = len(results)
        if not n:
            return
        self._close_rows()  # the single results before these stay before them
        st = self.stats
        status = results.column("status")
        parts = results.column("parts")
        sent = status.count(SENT)
        st.sent += sent
        if sent == n:
            st.parts += sum(filter(None, parts))
        else:
            codes, texts = st.codes, st.texts
            for s, p, provider, code, error in zip(status, parts, results.column("provider"), results.column("code"),
                                                   results.column("error"), strict=True):
                if s == SENT:
                    st.parts += p or 0
                    continue
                key = f"{provider}:{code}" if s == FAILED else f"rejected:{code}"
                if s == FAILED:
                    st.failed += 1
                else:
                    st.rejected += 1
                codes[key] += 1
                if key not in texts:
                    texts[key] = error or ""
        self._buffer.append(results)
        self._pending.set()
        self._settled(n)

    def finish_sent(self, row: ResultRow) -> None:
        """One `sent` result as a row of RESULT_FIELDS: a one-message request's accepted answer. The rows of
        a turn become one block when the writer takes them (or when a block comes after them), so a message
        a request costs a tuple here, not a block of sixteen one-item columns and its concatenation."""
        st = self.stats
        st.sent += 1
        st.parts += row.parts or 0
        self._rows.append(row)
        self._pending.set()
        self._settled(1)

    def _close_rows(self) -> None:
        """The single results settled so far, as one block at the end of the buffer."""
        if self._rows:
            self._buffer.append(Results.of_rows(self._rows))
            self._rows = []

    def defer(self, alias: str, msgs: Sequence[Message], why: Outcome) -> None:
        """No result: the provider cannot take these now. Not in doubt (the provider refused them or never
        saw them) unless an earlier attempt went unanswered."""
        if not msgs:
            return
        self.stats.deferred += len(msgs)
        self.stats.halts.setdefault(alias, (why.code, why.error))
        self._clear(msgs)
        self.events.deferred(alias, [m.seq for m in msgs], why)
        self._settled(len(msgs))

    def leave(self, msgs: Sequence[Message]) -> None:
        """No result: a stop came first. A resume sends them."""
        if not msgs:
            return
        self.stats.unsent += len(msgs)
        self._clear(msgs)
        self._settled(len(msgs))

    def _clear(self, msgs: Sequence[Message]) -> None:
        # the journal marked them on the wire; an answered attempt means the provider does not hold them
        sent = [m.seq for m in msgs if m.attempts and not m.ambiguous]
        if sent:
            self.journal.cleared(sent)

    def _settled(self, n: int) -> None:
        self.in_flight -= n
        if not self.limit or self.in_flight <= self.limit:
            self._room.set()
        if self.in_flight == 0:
            self.events.idle()
            if self.source_done:
                self._drained.set()
                self._pending.set()

    def abandon(self) -> None:
        """A second signal: the records still in flight (on the wire) leave with no result; the journal
        holds them as sent, so a resume treats them as in doubt."""
        self.stats.unsent += max(self.in_flight, 0)
        self.in_flight = 0
        self._room.set()
        if self.source_done:
            self._drained.set()
            self._pending.set()

    # -- the end ---------------------------------------------------------------------------------
    def close_source(self) -> None:
        """No more records will enter."""
        self.source_done = True
        self._room.set()
        if self.in_flight == 0:
            self._drained.set()
            self._pending.set()

    async def drained(self) -> None:
        await self._drained.wait()

    async def results(self) -> Results:
        """The next results to write; empty once everything has left and been handed out."""
        while True:
            self._close_rows()
            if self._buffer:
                self._pending.clear()
                out, self._buffer = self._buffer, []
                return Results.concat(out)
            if self._drained.is_set():
                return Results.concat([])
            self._pending.clear()
            await self._pending.wait()

    def wake(self) -> None:
        """Let the writer look again (a stop)."""
        self._pending.set()

