from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ..model import Chunk, Result


class SourceError(Exception):
    """The source cannot be read at all (missing file, bad query): one clear line."""


class Source:
    """Chunks of rows as columns (`Chunk`) beside the rows it could not read (rejected results);
    `skip(seq)` is true for records a resumed run already finished."""

    name: str = "source"

    def columns(self) -> list[str] | None:
        """The fields every record has, when known before reading (CSV header, table columns)."""
        return None

    def chunks(self, skip: Callable[[int], bool] | None = None) -> AsyncIterator[tuple[Chunk, list[Result]]]:
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
