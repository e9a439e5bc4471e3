"""The engine's long-lived tasks (writer, progress, the lanes' senders) have one owner (dispatcher/tasks.py):
a failing one stops the run and its error is the run's, and whatever ends a run leaves none of them running."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from enginekit import FakeProvider, FakeTransport, ListSource, MemorySink, engine

from dispatcher.model import Message, Results
from dispatcher.providers.base import Accepted, Outcome

pytestmark = pytest.mark.timeout(60)


def all_sent(seqs, n):
    return ["SENT"] * len(seqs)


def left_running() -> set[asyncio.Task]:
    """Tasks of this loop other than the test's own."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


class BrokenSink(MemorySink):
    """Takes `good` writes, then fails every one."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    async def write(self, results: Results) -> None:
        if self.good <= 0:
            raise OSError(28, "No space left on device")
        self.good -= 1
        await super().write(results)


class BrokenAnswers(FakeProvider):
    """An adapter bug: the answer to the request holding `bad` is read into something that is not an Outcome."""

    def __init__(self, bad: int, **kw) -> None:
        super().__init__(**kw)
        self.bad = bad

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str],
              body: bytes) -> list[Outcome] | Accepted:
        if any(m.seq == self.bad for m in batch):
            return [None] * len(batch)  # type: ignore[list-item]
        return super().parse(batch, status, headers, body)


def test_a_failing_sink_ends_the_run_with_its_error_and_no_task_left(tmp_path):
    sink = BrokenSink(good=1)

    async def go():
        e = engine({"a": FakeProvider(batch=5, concurrency=2)}, {"a": FakeTransport(all_sent, latency=0.002)},
                   ListSource(200), sink, tmp_path)
        with pytest.raises(OSError, match="No space"):
            await e.run()
        return e, left_running()

    e, left = asyncio.run(go())
    assert e.stopping and e.tasks.failure is not None
    assert not left, left  # the progress sampler too (it used to outlive a run whose writer failed)
    assert 0 < len(sink.results) < 200 and max(Counter(r.seq for r in sink.results).values()) == 1


def test_a_failing_sender_ends_the_run_instead_of_waiting_for_its_batch(tmp_path):
    """A sender whose batch cannot settle (a bug past the request) abandons the run: what settled is written,
    the rest is in doubt for a resume, and the error is the run's (it used to wait for that batch forever)."""
    sink = MemorySink()

    async def go():
        e = engine({"a": BrokenAnswers(bad=50, batch=5, concurrency=2)}, {"a": FakeTransport(all_sent)},
                   ListSource(200), sink, tmp_path)
        with pytest.raises(AttributeError):
            await asyncio.wait_for(e.run(), 10)
        return e, left_running()

    e, left = asyncio.run(go())
    assert not left, left
    seen = Counter(r.seq for r in sink.results)
    assert 50 not in seen and max(seen.values()) == 1 and {r.status for r in sink.results} == {"sent"}
    assert e.interrupted and e.stats.unsent >= 5  # the broken batch, at least: no result, in doubt


def test_a_cancelled_run_leaves_none_of_its_tasks_running(tmp_path):
    """The third signal cancels the run's task: its writer, progress sampler and senders end with it."""

    async def go():
        e = engine({"a": FakeProvider(batch=5, concurrency=4)}, {"a": FakeTransport(all_sent, latency=0.05)},
                   ListSource(400), MemorySink(), tmp_path)
        run = asyncio.create_task(e.run())
        await asyncio.sleep(0.2)
        assert len(left_running()) > 4  # the run, its writer, progress and senders
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return left_running()

    assert not asyncio.run(go())
