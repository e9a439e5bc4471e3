from __future__ import annotations

from collections.abc import Iterable

from ..errors import SinkError
from ..model import Results


class Sink:
    name: str = "sink"
    shared: bool = False  # opened once, then written by the processes forked after (a run's workers) at once

    async def open(self, resume: bool) -> None:
        """Prepare to write; on `resume`, keep what an earlier attempt of the same run wrote."""

    async def done(self) -> Iterable[int]:
        """The `seq` of every record that already has a terminal result here (for resume)."""
        return ()

    async def failed(self) -> Iterable[int]:
        """The `seq` of every record whose result here is `failed` (for --retry-failed)."""
        raise SinkError(f"{self.name}: cannot list failed records")

    async def write(self, results: Results) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass
