from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple

from ..model import Chunk, Result

# Records a chunk holds unless [engine] chunk_size says otherwise: what a source reads at once and the
# pipeline hands on whole. Per-chunk costs (kernel calls, a batch's columns cut and joined around each
# request) are spread over more records than at 2,048, while a chunk's columns still stay in the CPU's
# caches: 2.29 against 2.40 us a message batched, single the same (README, issue 28); 8,192 and up are slower.
CHUNK_SIZE = 4096


class Part(NamedTuple):
    """The share of a source one of `of` worker processes reads: the records whose `seq` falls in its
    runs of `span` consecutive seqs (run r belongs to worker r % of). Every record belongs to exactly one
    worker whatever the chunking, so the workers of a run read disjoint parts that add up to the whole,
    and a resume (with any number of workers) pairs the same seqs with the same records."""

    index: int
    of: int
    span: int = 4096

    def owns(self, seq: int) -> bool:
        return seq // self.span % self.of == self.index

    def runs(self, first: int, last: int) -> Iterator[tuple[int, int]]:
        """The owned (start, stop) ranges of seqs within first..last (inclusive), in order."""
        span, of, index = self.span, self.of, self.index
        r = first // span
        r += (index - r) % of  # the first owned run at or after first's
        while r * span <= last:
            yield max(first, r * span), min(last, r * span + span - 1) + 1
            r += of


class Source:
    """Chunks of rows as columns (`Chunk`) beside the rows it could not read (rejected results);
    `skip(seq)` is true for records a resumed run already finished, and with `part` only the records of
    that part are given (rows of other parts, read or rejected, are not this reader's to count)."""

    name: str = "source"
    splits: bool = False  # read by a run's workers, each its `part`, in processes forked after it was made

    def columns(self) -> list[str] | None:
        """The fields every record has, when known before reading (CSV header, table columns)."""
        return None

    def chunks(self, skip: Callable[[int], bool] | None = None,
               part: Part | None = None) -> AsyncIterator[tuple[Chunk, list[Result]]]:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What this source is, so a resume can tell it is resuming the same audience."""
        return {"name": self.name}

    def progress(self) -> float | None:
        """Fraction read so far, for the ETA, when it can be known cheaply."""
        return None

    def estimate_total(self) -> int | None:
        """How many records the source holds, for percent done and the ETA: exact once it has been
        read through, a cheap estimate before (None: no idea yet). Records a resume skips count."""
        return None

    async def close(self) -> None:
        pass
