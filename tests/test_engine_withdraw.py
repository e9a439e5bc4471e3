"""A lane's queue as a service sees it (issue 24): what a claim may size itself by (`soon`, `urgent_waiting`),
a priority message overtaking what senders hold while they wait for a slot, and `withdraw` taking messages
not on the wire back out (a paused or cancelled campaign), from the queue, the open groups and the
batches senders hold, never one on the wire and never one twice.

The real Lane and Ledger with the fake provider (enginekit); waits are on events the fake transport sets,
each with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from enginekit import FakeProvider, FakeTransport

from dispatcher.engine.lane import Lane, LaneConfig, RunFlags
from dispatcher.engine.ledger import Events, Ledger, Stats
from dispatcher.model import Message
from dispatcher.state import RunState

pytestmark = pytest.mark.timeout(60)


def message(seq: int, group: str = "", priority: int = 0) -> Message:
    return Message(seq, str(seq), f"u{seq}@example.com", "hi", {}, channel="email", group=group, priority=priority)


class Wire(FakeTransport):
    """The fake transport, noting each request as it leaves and waking whoever waits for a seq."""

    def __init__(self) -> None:
        super().__init__(lambda seqs, n: ["SENT"] * len(seqs))
        self.seen: dict[int, asyncio.Event] = {}

    def on(self, seq: int) -> asyncio.Event:
        return self.seen.setdefault(seq, asyncio.Event())

    async def send(self, req):  # type: ignore[no-untyped-def]
        out = await super().send(req)
        for s in self.requests[-1]:
            self.on(s).set()
        return out


async def lane(rate: float, concurrency: int, batch: int) -> tuple[Lane, Ledger, Wire]:
    wire = Wire()
    ledger = Ledger(Stats(), RunState(None, "t"), Events())
    provider = FakeProvider(batch=batch, concurrency=concurrency, rate=rate)
    ln = Lane(LaneConfig("a", provider, "email"), ledger, Events(), lambda alias, c, t: wire, RunFlags())
    await ln.start()
    return ln, ledger, wire


def add(ln: Lane, ledger: Ledger, msgs: list[Message]) -> None:
    ledger.enter(len(msgs))
    ln.add(msgs)


async def drained(ln: Lane, ledger: Ledger, cut: bool = False) -> None:
    """Until every message has left; then the senders stop (`cut`: at once, not after their slots)."""
    ln.flush()  # what open groups hold goes (the engine does this when its source is done)
    ledger.close_source()
    await asyncio.wait_for(ledger.drained(), 20)
    if cut:
        ln.cancel()
        await ln.close()
    else:
        await ln.stop()


async def sent_by(wire: Wire, seq: int, timeout: float = 10) -> int:
    """The index of the request that carried `seq`, once it left."""
    await asyncio.wait_for(wire.on(seq).wait(), timeout)
    return next(i for i, r in enumerate(wire.requests) if seq in r)


def test_soon_counts_the_pace_and_the_wire_not_the_senders_waiting_for_a_slot():
    async def go() -> None:
        ln, ledger, wire = await lane(rate=2, concurrency=8, batch=1)
        add(ln, ledger, [message(i) for i in range(1, 13)])
        await sent_by(wire, 1)
        # eight senders hold a message each while they wait for a slot: four seconds of sending at 2/s,
        # which is not "soon" (half a second at 2/s is one message, plus the requests on the wire)
        assert ln.soon(0.5) <= 2.0
        assert ln.urgent_waiting == 0
        ledger.leave(ln.withdraw(lambda m: True))  # the held ones too
        assert ledger.in_flight == 0
        ln.cancel()
        await ln.close()
    asyncio.run(go())


def test_a_priority_message_takes_the_next_slot_from_senders_holding_older_ones():
    async def go() -> None:
        ln, ledger, wire = await lane(rate=4, concurrency=4, batch=1)
        add(ln, ledger, [message(i) for i in range(1, 21)])
        first = await sent_by(wire, 1)
        add(ln, ledger, [message(100, priority=10)])
        assert ln.urgent_waiting == 1  # queued: what an urgent claim is sized by
        at = await sent_by(wire, 100)
        # every sender held an older message waiting for a slot; the next slot went to the urgent one
        assert at - first <= 2, wire.requests
        assert ln.urgent_waiting == 0
        back = ln.withdraw(lambda m: True)
        ledger.leave(back)
        await drained(ln, ledger)
        assert sorted([s for r in wire.requests for s in r] + [m.seq for m in back]) == [*range(1, 21), 100]
    asyncio.run(go())


def test_a_priority_message_an_idle_sender_took_goes_with_the_next_slot_not_after_the_held_ones():
    async def go() -> None:
        ln, ledger, wire = await lane(rate=1, concurrency=4, batch=1)
        add(ln, ledger, [message(i) for i in range(1, 4)])  # one on the wire, two held, one sender idle
        first = await sent_by(wire, 1)
        t0 = asyncio.get_running_loop().time()
        add(ln, ledger, [message(100, priority=10)])  # the idle sender takes it and waits behind the two
        assert await sent_by(wire, 100, timeout=5) == first + 1
        assert asyncio.get_running_loop().time() - t0 < 2.0  # the next slot: at most a second away
        await drained(ln, ledger, cut=True)
        assert sorted(s for r in wire.requests for s in r) == [1, 2, 3, 100]
    asyncio.run(go())


def test_a_sender_whose_held_messages_were_withdrawn_sends_other_work_with_its_slot():
    async def go() -> None:
        ln, ledger, wire = await lane(rate=1, concurrency=4, batch=1)
        add(ln, ledger, [message(i, "paused") for i in range(1, 5)])
        await sent_by(wire, 1)
        ledger.leave(ln.withdraw(lambda m: m.group == "paused"))  # what the other three senders held
        t0 = asyncio.get_running_loop().time()
        add(ln, ledger, [message(10, "other")])  # the idle sender takes it, behind three in the limiter's line
        # the next slot is a sender's whose batch was withdrawn: it carries message 10 instead of going
        # unused (three unused slots would be 3 s at 1/s; the next one is at most a second away)
        assert await sent_by(wire, 10, timeout=5) == 1
        assert asyncio.get_running_loop().time() - t0 < 2.0
        await drained(ln, ledger, cut=True)
    asyncio.run(go())


@pytest.mark.parametrize("batch", [1, 3])
def test_withdraw_takes_back_what_is_not_on_the_wire_once_and_none_of_it_is_sent(batch):
    async def go() -> None:
        ln, ledger, wire = await lane(rate=10, concurrency=3, batch=batch)
        msgs = [message(i, "paused" if i % 2 else "other") for i in range(1, 26)]
        add(ln, ledger, msgs)
        await sent_by(wire, 1)
        before = len(wire.requests)
        unwanted: Callable[[Message], bool] = lambda m: m.group == "paused"  # noqa: E731
        back = ln.withdraw(unwanted)
        ledger.leave(back)  # the caller settles them (Engine.withdraw does)
        assert back and all(m.group == "paused" for m in back)
        assert ln.withdraw(unwanted) == [], "a message withdrawn twice"
        await drained(ln, ledger)
        sent = [s for r in wire.requests for s in r]
        after = [s for r in wire.requests[before:] for s in r]  # every request that left after the withdrawal
        assert not [s for s in after if s % 2], f"paused messages sent after the withdrawal: {after}"
        ids = [m.seq for m in back]
        assert len(set(ids)) == len(ids)
        assert sorted(sent + ids) == list(range(1, 26)), "every message sent or withdrawn, exactly once"
        assert ledger.in_flight == 0
    asyncio.run(go())
