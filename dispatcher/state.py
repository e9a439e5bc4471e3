"""A run's memory across restarts: which records are finished, and which were on the wire.

Finished records come from the primary sink (its results are the truth). Before each
request the engine appends the batch's `seq`s to a journal; a record in the journal with
no result was in flight when the run died, so the provider may or may not have accepted
it: it is "in doubt". A resumed run resends those (at-least-once, the default) or holds
them as `failed` with code `in_doubt` (at-most-once), and says how many in its summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_DENSE_LIMIT = 1 << 27  # seqs below this live in a bytearray (1 byte each); beyond, in a set


class SeqSet:
    """A set of non-negative ints, dense for line numbers, sparse for large ids."""

    def __init__(self) -> None:
        self._dense = bytearray()
        self._sparse: set[int] = set()
        self.count = 0

    def add(self, seq: int) -> None:
        if 0 <= seq < _DENSE_LIMIT:
            d = self._dense
            if seq >= len(d):
                d.extend(bytes(max(seq + 1 - len(d), len(d))))
            if not d[seq]:
                d[seq] = 1
                self.count += 1
        elif seq not in self._sparse:
            self._sparse.add(seq)
            self.count += 1

    def discard(self, seq: int) -> None:
        if 0 <= seq < _DENSE_LIMIT:
            if seq < len(self._dense) and self._dense[seq]:
                self._dense[seq] = 0
                self.count -= 1
        elif seq in self._sparse:
            self._sparse.remove(seq)
            self.count -= 1

    def update(self, seqs: Iterable[int]) -> None:
        for s in seqs:
            self.add(s)

    def __contains__(self, seq: int) -> bool:
        if 0 <= seq < _DENSE_LIMIT:
            return seq < len(self._dense) and self._dense[seq] == 1
        return seq in self._sparse

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for i, v in enumerate(self._dense):
            if v:
                yield i
        yield from self._sparse


def _ranges(seqs: list[int]) -> bytes:
    """`3-7,9,12-13`: batches are mostly consecutive lines, so the journal stays small."""
    out = []
    start = prev = seqs[0]
    for s in seqs[1:]:
        if s == prev + 1:
            prev = s
            continue
        out.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = s
    out.append(f"{start}-{prev}" if prev != start else str(start))
    return (",".join(out) + "\n").encode()


def _parse(line: str) -> Iterable[int]:
    for part in line.strip().split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        yield from range(int(a), int(b or a) + 1)


class RunState:
    """The journal of one run; with no root (the daemon, whose outbox leases do this job) it keeps nothing."""

    def __init__(self, root: str | Path | None, run_id: str) -> None:
        self.dir = Path(root) / "runs" / run_id if root is not None else None
        self.journal_path = self.dir / "journal" if self.dir is not None else None
        self.resuming = self.journal_path is not None and self.journal_path.exists()
        self._fd = -1

    def open(self) -> None:
        if self.dir is None or self.journal_path is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def sending(self, seqs: list[int]) -> None:
        """Note a batch as on the wire, before its request leaves."""
        if self._fd >= 0:
            os.write(self._fd, _ranges(sorted(seqs)))

    def cleared(self, seqs: list[int]) -> None:
        """Note records known not to have been accepted (a stopped run's pending retries)."""
        if seqs and self._fd >= 0:
            os.write(self._fd, b"-" + _ranges(sorted(seqs)))

    def attempted(self) -> SeqSet:
        out = SeqSet()
        if self.journal_path is not None and self.journal_path.exists():
            with open(self.journal_path, encoding="ascii", errors="replace") as f:
                for line in f:
                    if not line.endswith("\n"):
                        continue  # a torn line from a killed run: it was never acted on
                    try:
                        if line.startswith("-"):
                            for s in _parse(line[1:]):
                                out.discard(s)
                        else:
                            out.update(_parse(line))
                    except ValueError:
                        continue
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
