"""A run's account as a user reads it: its state word, the records with no result, its cost.

`unsent` is every record of the source without a result, read or not: a Ctrl-C after 10,240 of 20,000
records were read and 700 sent leaves 19,300 unsent, not the 9,540 read and not sent. The source's total
is exact when it was read through; otherwise a file source is counted (a byte scan: one record a line,
exact for JSONL and for a CSV without quotes) and any other source's estimate is marked as one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import Stats
from ..sources.base import Source

FINISHED, HALTED, STOPPED = "finished", "halted", "stopped"


def state_word(*, interrupted: bool, deferred: int, halted_all: bool) -> str:
    """finished, halted (a provider could not take some records: deferred) or stopped (by a signal)."""
    if interrupted:
        return STOPPED
    return HALTED if deferred or halted_all else FINISHED


def count_lines(path, *, csv: bool) -> int | None:
    """Records in a file counted a line each, or None when a line may not be a record (a quote in a CSV
    can hold a line end)."""
    n = 0
    last = b"\n"
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                if csv and b'"' in block:
                    return None
                n += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return None
    n += 0 if last == b"\n" else 1
    return max(n - (1 if csv else 0), 0)


@dataclass(slots=True)
class Total:
    records: int | None
    exact: bool


def source_total(source: Source, st: Stats) -> Total:
    """How many records the source holds, and whether that is a count or an estimate."""
    estimate = source.estimate_total()
    if estimate is not None and st.read + st.skipped >= estimate:
        return Total(estimate, True)  # read through: the count
    path, fmt = getattr(source, "path", None), getattr(source, "fmt", None)
    if path is not None and fmt in ("csv", "jsonl"):
        n = count_lines(path, csv=fmt == "csv")
        if n is not None:
            return Total(max(n, st.read + st.skipped), True)
    return Total(estimate, False)


def unsent(total: Total, st: Stats) -> int:
    """Records with no result, read or not (deferred ones included)."""
    if total.records is None:
        return st.unsent + st.deferred
    return max(total.records - st.skipped - st.done, 0)


def cost(st: Stats, prices: list[float]) -> float | None:
    """What the sent records cost, from the prices `--dry-run` uses (per SMS part, or per message where
    a message has no parts); None when the providers' prices differ (the split is not counted)."""
    if not prices or len(set(prices)) != 1:
        return None
    return round(prices[0] * max(st.parts, st.sent), 6)
