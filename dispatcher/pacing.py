"""The exact part of a provider's pace: never `n + 1` requests inside one judged window.

Providers (and our simulators) judge their limit over *any* one-second window, so a token
bucket is the wrong shape: `aiolimiter.AsyncLimiter` admits its whole capacity at once and
then its rate again within the same second. A sliding log is the right one: keep the send
times of the last `n` requests, and let the next one go only when the oldest of them is a
full window old. That is the most a window allows and never more, so it needs no leak-rate
fudge and reaches the limit at every rate, from one request a second to thousands.

Two things lie between our clock and the provider's:
- travel time: the provider stamps *arrival*, and two requests sent exactly one window apart
  can arrive less than a window apart when the first is delayed more than the second. The
  window we keep is therefore `1 s + margin` (15 ms by default, 1.5% of the rate).
- timer granularity: an event loop cannot sleep for microseconds. Waiters queue behind one
  lock and only the head sleeps, until the oldest slot frees; when it wakes late, every slot
  that freed meanwhile goes at once, so at high rates requests leave in small groups (one
  timer each) while every window still holds at most `n`.

A rate that is not a whole number of requests per second rounds down (a window holds whole
requests); below one a second the window stretches to `1 / rate`.

The clock and the sleep are injectable so tests drive the log exactly and instantly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

MARGIN = 0.015  # seconds added to every window: arrival jitter between our send and the provider's stamp


class Window:
    """A sliding log of send times: at most `n` sends in any `period`, and nothing before `paused_until`."""

    def __init__(self, rate: float, *, margin: float = MARGIN, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.margin = margin
        self.clock = clock
        self.sleep = sleep
        self.paused_until = 0.0
        self._log: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.n = 0
        self.period = 0.0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """Requests per second from now on; the log keeps the newest sends, so the change is exact too."""
        self.rate = rate
        if rate <= 0:
            self.n = 0
            return
        self.n = max(1, math.floor(rate + 1e-9))
        self.period = max(1.0, self.n / rate) + self.margin
        if self._log.maxlen != self.n:
            self._log = deque(self._log, maxlen=self.n)

    def prime(self) -> None:
        """Start as if the last window had been sent evenly: the first second is paced, not a burst
        that every later window would repeat (a sliding log keeps whatever pattern it starts with)."""
        if not self.n:
            return
        t = self.clock()
        step = self.period / self.n
        self._log.clear()
        self._log.extend(t - self.period + i * step for i in range(self.n))  # the first goes now

    def pause(self, seconds: float) -> None:
        """Nothing leaves for `seconds` (a provider's Retry-After); a longer pause already set stands."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def ready_at(self, now: float) -> float:
        """When the next request may leave (<= now: at once)."""
        log = self._log
        at = log[0] + self.period if len(log) >= self.n else now
        return max(at, self.paused_until)

    async def acquire(self) -> float:
        """Wait for a slot and take it; returns the time it was taken."""
        if not self.n:
            return self.clock()
        if not self._lock.locked():
            t = self.clock()
            if self.ready_at(t) <= t:
                self._log.append(t)
                return t
        async with self._lock:
            while True:
                t = self.clock()
                wait = self.ready_at(t) - t
                if wait <= 0:
                    self._log.append(t)
                    return t
                await self.sleep(wait)
