"""The engine's long-lived tasks in one owner: the writer, the progress sampler, and every lane's senders.

What a stop, a failing task and the run's end do to them is decided here, once:
- a task that fails calls the policy it was started with, at once (the writer and the progress sampler:
  `Engine.stop`, as the first signal; a sender: `Engine.abandon`, as the second, because the batch it held
  can no longer settle and would keep the run waiting for it), and the first failure is the run's
  (`failure`), reported once the run has ended;
- whatever ends the run (its end, a failure, the third signal cancelling it) ends what is left (`close`):
  no task outlives its run.

Not a task group (asyncio.TaskGroup, anyio): a group cancels every sibling, and its body, at the first
failure, which would cut the requests on the wire that a stop lets settle. The cost is none a message:
these tasks start once a run (a lane's senders once a lane).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]  # (coroutine, name) -> its task


def unowned(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A task with no owner: a lane started on its own (tests) spawns its senders so."""
    return asyncio.create_task(coro, name=name)


class Tasks:
    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()
        self.failure: Exception | None = None  # the first task's failure

    def start(self, coro: Coroutine[Any, Any, None], name: str, *, on_failure: Callable[[], None]) -> asyncio.Task[None]:
        """Run `coro` as a task of the run; if it fails, `on_failure()` is called before its error goes on."""
        task = asyncio.create_task(self._watched(coro, on_failure), name=name)
        self._running.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # seen: it is `failure`, or whoever awaits the task raises it

    def spawner(self, on_failure: Callable[[], None]) -> Spawn:
        """`start` with `on_failure` given: what a lane starts its senders with."""
        return lambda coro, name: self.start(coro, name, on_failure=on_failure)

    async def _watched(self, coro: Coroutine[Any, Any, None], on_failure: Callable[[], None]) -> None:
        try:
            await coro
        except Exception as e:
            if self.failure is None:
                self.failure = e
            on_failure()
            raise

    async def close(self) -> None:
        """Cancel what is still running and wait for it: nothing of the run goes on after this."""
        left = list(self._running)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
