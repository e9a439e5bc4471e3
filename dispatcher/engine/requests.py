"""A lane's queue of requests waiting for a worker, ranked: a batch is rank 0; an urgent one (its
messages' priority above 0) is rank -priority and overtakes every batch not yet on the wire, even one a
worker already holds while it waits for a rate slot (`overtaken`); a worker's stop signal is queued
last (STOP), after everything queued before it. Equal ranks keep their order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..model import Message

STOP = float("inf")
Batch = Sequence[Message]


class Requests:
    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[tuple[float, int, Batch | None]] = asyncio.PriorityQueue()
        self._order = 0
        self._urgent = 0  # urgent batches queued: while 0, a worker never looks for one

    def __len__(self) -> int:
        return self._queue.qsize()

    def put(self, batch: Batch | None, rank: float = 0) -> None:
        self._order += 1
        if rank < 0:
            self._urgent += 1
        self._queue.put_nowait((rank, self._order, batch))

    def stop(self) -> None:
        """One worker's stop signal, after everything queued."""
        self.put(None, STOP)

    async def get(self) -> tuple[float, Batch | None]:
        """The next batch and its rank; None: the worker stops."""
        rank, _, batch = await self._queue.get()
        if rank < 0:
            self._urgent -= 1
        return rank, batch

    def overtaken(self, batch: Batch, rank: float) -> tuple[Batch, float]:
        """What a worker sends with the slot it just got: an urgent batch queued meanwhile, if any (the
        one it held goes back in its place), else its own."""
        if rank >= 0 and self._urgent and not self._queue.empty():
            head = self._queue.get_nowait()
            if head[0] < rank and head[2] is not None:
                self._urgent -= 1
                self.put(batch, rank)
                return head[2], head[0]
            self._queue.put_nowait(head)
        return batch, rank

    def drain(self) -> list[Batch]:
        """Every batch queued, taken out; the workers' stop signals stay queued."""
        batches, stops = [], 0
        for _ in range(self._queue.qsize()):
            _, _, b = self._queue.get_nowait()
            if b is None:
                stops += 1
            else:
                batches.append(b)
        self._urgent = 0
        for _ in range(stops):
            self.stop()
        return batches
