"""Long-lived tasks in one owner, with what a failing one does said where it is started: the engine's
(writer, progress sampler, every lane's senders) and the daemon's (heartbeat, upkeep, reports, health,
webhooks, listener, revive, withdrawal, the engine itself).

Two policies, one per call:
- `start(coro, name, on_failure=...)`: a task that fails calls its policy at once and its error goes on.
  The engine's writer and progress sampler: `Engine.stop`, as the first signal; a sender: `Engine.abandon`,
  as the second, because the batch it held can no longer settle and would keep the run waiting for it.
  The daemon's heartbeat and reports writer: a graceful stop, failed (the caller logs the error, kept
  in `failed` under the task's name). The first failure is `failure`.
- `keep(make, name)`: a loop that must outlive a bug in itself (the daemon's upkeep jobs, health monitor,
  webhooks, listener, revive, withdrawal, report rematcher) is logged with its traceback and run again,
  `make()` anew, after a backoff doubling from `backoff[0]` to `backoff[1]` seconds (back to the first once
  a run lasted the longest), counted in `restarts`. A coroutine that returns is over, not restarted.

Whatever ends the run or the process (its end, a failure, the last signal) ends what is left (`close`):
no task outlives its owner.

Not a task group (asyncio.TaskGroup, anyio): a group cancels every sibling, and its body, at the first
failure, which would cut the requests on the wire that a stop lets settle. The cost is none a message:
these tasks start once a run (a lane's senders once a lane), or once a process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("dispatcher.tasks")
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]  # (coroutine, name) -> its task
Make = Callable[[], Coroutine[Any, Any, None]]  # a fresh run of a loop that `keep` restarts
BACKOFF = (1.0, 60.0)  # seconds before a failed loop's first restart, and at most


def unowned(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A task with no owner: a lane started on its own (tests) spawns its senders so."""
    return asyncio.create_task(coro, name=name)


def nothing() -> None:
    """The policy of a task whose failure its awaiter handles."""


async def cancel(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel `tasks` and wait for them to end: a component's stop. What one of them failed with is not raised
    here: its owner's policy had it (Tasks.start's `on_failure`, or `keep`'s log)."""
    left = [t for t in tasks if t is not None]
    for t in left:
        t.cancel()
    if left:
        await asyncio.wait(left)


class Tasks:
    def __init__(self, backoff: tuple[float, float] = BACKOFF) -> None:
        self._running: set[asyncio.Task[None]] = set()
        self.backoff = backoff
        self.failure: Exception | None = None  # the first task's failure
        self.failed: dict[str, Exception] = {}  # the last failure of each task that failed, by its name
        self.restarts: Counter[str] = Counter()  # restarts of the loops `keep` runs, by name

    def start(self, coro: Coroutine[Any, Any, object], name: str, *, on_failure: Callable[[], None]) -> asyncio.Task[None]:
        """Run `coro` as a task of the run; if it fails, `on_failure()` is called before its error goes on."""
        task = asyncio.create_task(self._watched(coro, name, on_failure), name=name)
        self._running.add(task)
        task.add_done_callback(self._done)
        return task

    def keep(self, make: Make, name: str) -> asyncio.Task[None]:
        """Run `make()` as a task, again after each failure (logged, with backoff); see the module's docstring."""
        return self.start(self._restarting(make, name), name, on_failure=nothing)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # seen: it is `failure`, or whoever awaits the task raises it

    def spawner(self, on_failure: Callable[[], None]) -> Spawn:
        """`start` with `on_failure` given: what a lane starts its senders with."""
        return lambda coro, name: self.start(coro, name, on_failure=on_failure)

    async def _watched(self, coro: Coroutine[Any, Any, object], name: str, on_failure: Callable[[], None]) -> None:
        try:
            await coro
        except Exception as e:
            if self.failure is None:
                self.failure = e
            self.failed[name] = e
            on_failure()
            raise

    async def _restarting(self, make: Make, name: str) -> None:
        first, most = self.backoff
        delay = first
        while True:
            t0 = time.monotonic()
            try:
                await make()
                return
            except Exception as e:
                self.failed[name] = e
                self.restarts[name] += 1
                if time.monotonic() - t0 >= most:  # it ran well for a long while: a new fault
                    delay = first
                log.error("%s failed (%s: %s): restarting it in %g s", name, type(e).__name__, e, delay,
                          exc_info=e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)

    async def close(self) -> None:
        """Cancel what is still running and wait for it: nothing of the run goes on after this."""
        left = list(self._running)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
