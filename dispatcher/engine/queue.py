"""What a lane's senders take, in order, and what they hold while they wait for a slot.

Urgent batches (messages of priority > 0, ranked by -priority) come first, then batches in arrival
order (rank 0), and a sender's stop signal after everything queued before it. A batch a sender has
taken stays reachable (`hold`) until it goes on the wire, so `withdraw` can take messages out of it
too: the sender sends what is left when it gets its slot (`overtaken`). Nothing here sends or settles:
the lane does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from ..model import Message

STOP = float("inf")  # the rank of a sender's stop signal
NOTHING: tuple[float, Sequence[Message]] = (0.0, ())  # what a sender holds when it holds nothing


class LaneQueue:
    def __init__(self) -> None:
        self._q: asyncio.PriorityQueue[tuple[float, int, Sequence[Message] | None]] = asyncio.PriorityQueue()
        self._order = 0
        self.urgent = 0  # messages of urgent batches queued: while 0, a sender never looks for one
        self.stops = 0  # senders' stop signals queued
        self._holding: dict[int, tuple[float, Sequence[Message]]] = {}  # by sender: (rank, batch) not on the wire yet
        self._held_urgent = 0  # held urgent batches: while 0, a sender with a slot never looks at the others'

    def put(self, batch: Sequence[Message], rank: float = 0) -> None:
        if rank < 0:
            self.urgent += len(batch)
        self._order += 1
        self._q.put_nowait((rank, self._order, batch))

    def signal_stop(self) -> None:
        """One sender stops once it has taken everything queued before this."""
        self.stops += 1
        self._order += 1
        self._q.put_nowait((STOP, self._order, None))

    async def get(self) -> tuple[float, Sequence[Message] | None]:
        """The next batch and its rank; (STOP, None) for a stop signal."""
        rank, _, batch = await self._q.get()
        if batch is None:
            self.stops -= 1
        elif rank < 0:
            self.urgent -= len(batch)
        return rank, batch

    def qsize(self) -> int:
        return self._q.qsize()

    @property
    def waiting(self) -> bool:
        """A batch is queued (not only stop signals)."""
        return self._q.qsize() > self.stops

    def hold(self, sender: int, batch: Sequence[Message], rank: float) -> None:
        """`sender` holds `batch` while it waits (for a slot, for the circuit): a withdrawal reaches it, and
        so does a sender whose slot comes first (`overtaken`)."""
        self._let(sender)
        self._holding[sender] = (rank, batch)
        if rank < 0:
            self._held_urgent += 1

    def _let(self, sender: int) -> tuple[float, Sequence[Message]]:
        held = self._holding.pop(sender, NOTHING)
        if held[0] < 0:
            self._held_urgent -= 1
        return held

    def held(self, sender: int) -> Sequence[Message]:
        """What is left of `sender`'s batch (withdrawals may have taken some or all of it)."""
        return self._holding.get(sender, NOTHING)[1]

    def let_go(self, sender: int) -> None:
        """`sender`'s batch is settled: no longer held."""
        self._let(sender)

    def overtaken(self, sender: int) -> tuple[Sequence[Message], float]:
        """The batch (and rank) `sender` sends with the slot it just got, no longer held: the most urgent
        one waiting, queued or held by a sender still waiting for its slot (which gets this one's in its
        place); else its own; else, when all of its own was withdrawn meanwhile, any other one waiting, so
        the slot is not lost while there is something to send."""
        rank, batch = self._let(sender)
        if (not batch or (rank >= 0 and self.urgent)) and not self._q.empty():
            head = self._q.get_nowait()
            if head[2] is not None and (not batch or head[0] < rank):
                if head[0] < 0:
                    self.urgent -= len(head[2])
                if batch:
                    self.put(batch, rank)
                return head[2], head[0]
            self._q.put_nowait(head)
        if not batch or (self._held_urgent and rank >= 0):
            other, (theirs_rank, theirs) = min(((s, h) for s, h in self._holding.items() if h[1]),
                                               key=lambda sh: sh[1][0], default=(-1, NOTHING))
            if theirs and (not batch or theirs_rank < rank):
                self.hold(other, batch, rank)  # that sender sends this one's batch (or nothing) when its slot comes
                return theirs, theirs_rank
        return batch, rank

    def withdraw(self, unwanted: Callable[[Message], bool]) -> list[Message]:
        """The messages `unwanted` picks, out of the queued batches and the held ones."""
        out: list[Message] = []
        for sender, (rank, held) in self._holding.items():
            kept, gone = split(held, unwanted)
            self._holding[sender] = (rank, kept)
            out += gone
        queued = [self._q.get_nowait() for _ in range(self._q.qsize())]
        self.urgent = 0
        for rank, order, batch in queued:
            if batch is not None:
                batch, gone = split(batch, unwanted)
                out += gone
                if not batch:
                    continue
                if rank < 0:
                    self.urgent += len(batch)
            self._q.put_nowait((rank, order, batch))
        return out

    def drain(self) -> list[Sequence[Message]]:
        """Every queued batch, out; the stop signals stay."""
        out: list[Sequence[Message]] = []
        stops = 0
        for _ in range(self._q.qsize()):
            _, _, b = self._q.get_nowait()
            if b is None:
                stops += 1
            else:
                out.append(b)
        self.urgent = 0
        self.stops = 0
        for _ in range(stops):
            self.signal_stop()
        return out


def split(batch: Sequence[Message], unwanted: Callable[[Message], bool]) -> tuple[Sequence[Message], list[Message]]:
    """(`batch` without the messages `unwanted` picks, those messages). A batch with none to take is
    returned as it is."""
    gone = [m for m in batch if unwanted(m)]
    if not gone:
        return batch, gone
    ids = {m.seq for m in gone}
    return [m for m in batch if m.seq not in ids], gone
