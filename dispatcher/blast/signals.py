"""What Ctrl-C and SIGTERM mean to a running blast, in one process or in each of a run's workers.

The first stops reading and lets the requests on the wire settle; the second abandons them (in doubt
for a resume) and writes what is settled; the third leaves at once (the running task cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from ..engine import Engine


def on_signals(engine: Engine, notice: Callable[[int], None] | None = None) -> None:
    """Give SIGINT and SIGTERM those meanings for `engine`, on the running loop, for the current task;
    `notice(n)` hears the n-th signal first."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    count = 0

    def on_signal() -> None:
        nonlocal count
        count += 1
        if notice is not None:
            notice(count)
        if count == 1:
            engine.stop()
        elif count == 2:
            engine.abandon()
        elif task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
