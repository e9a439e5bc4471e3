"""The exact part of a provider's pace: never `n + 1` requests inside one judged window.

Providers (and our simulators) judge their limit over *any* one-second window, which a token
bucket alone cannot keep: `aiolimiter.AsyncLimiter` admits its capacity at once and then its
rate again within the same second. So two parts, each doing what it is good at:
- the aiolimiter bucket *spaces* requests at the window's rate with a small capacity: sends
  are even (no bursts after an idle spell or a pause, which a provider that stamps arrivals
  would see bunched), and a timer that wakes late is absorbed by the next request;
- a sliding log of the last `n` send times *guarantees* the window: the next request goes only
  when the oldest of them is a full window old. That is the most a window allows and never
  more, so no leak-rate fudge is needed and the limit is reached at every rate, from one
  request a second to thousands.

Between our clock and the provider's lies travel time: the provider stamps *arrival*, and two
requests sent exactly one window apart arrive less than a window apart when the first was
delayed more than the second. The window kept is therefore `1 s + margin` (15 ms, 1.5%). A
request that had to open its connection first leaves later than that (the event loop runs
other work while it connects): the lane reports when it could leave (`left_at`), and the log
counts it from then. A provider also stamps late what waits in its own queue (a busy or stalled
server, or a new connection it accepts when it gets to it): the lane reports when each answer came,
and RateLimit counts the request from as late as its stamp may have been (throttle.py).

An event loop cannot sleep for microseconds: above 1,000/s one wake-up takes a group of
tokens (a millisecond's worth) and releases that many requests, while the log still holds
every window to `n`; the bucket's capacity (`n / 200`, 5 ms of sending) absorbs late timers.

A rate that is not a whole number of requests per second rounds down (a window holds whole
requests); below one a second the window stretches to `1 / rate`. The clock and the sleep
are injectable so tests drive the log exactly and instantly (the bucket runs on the loop's
clock, which a virtual-time loop provides).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

MARGIN = 0.015  # seconds added to every window: arrival jitter between our send and the provider's stamp


class Window:
    """Requests spaced by a bucket, at most `n` in any `period` by a log, and none before `paused_until`."""

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
        self._bucket: AsyncLimiter | None = None
        self._group = 1
        self._credit = 0
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
        room = max(2, self.n // 200)
        self._bucket = AsyncLimiter(room, room * self.period / self.n)  # a new one: aiolimiter sets its rate once
        self._group = max(1, self.n // 1000)  # requests released by one wake-up of the bucket (1 ms of them)
        self._credit = 0  # bucket tokens taken for a group and not used yet

    def pause(self, seconds: float) -> None:
        """Nothing leaves for `seconds` (a provider's Retry-After); a longer pause already set stands."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def left_at(self, slot: float, at: float) -> None:
        """The request given `slot` left only at `at` (it had to open its connection): count it from then.

        The log is what keeps the provider's window, and the provider stamps the request when it arrives;
        so the next `n` are held a full window from `at`. When `n` newer requests have taken slots since,
        the log no longer holds `slot` and there is nothing left to hold back."""
        log = self._log
        i = bisect.bisect_left(log, slot)  # the log is in order
        if i == len(log) or log[i] != slot:
            return
        del log[i]
        bisect.insort(log, at)

    def ready_at(self, now: float) -> float:
        """When the next request may leave (<= now: at once)."""
        log = self._log
        at = log[0] + self.period if len(log) >= self.n else now
        return max(at, self.paused_until)

    async def acquire(self) -> float:
        """Wait for a slot and take it; returns the time it was taken.

        One waiter at a time (behind a lock) waits for the log, then for the bucket, so no
        waiter holds a bucket token while the log keeps it back: tokens hoarded that way would
        all leave together when the log frees, a burst the bucket is there to prevent. At high
        rates one wake-up takes tokens for a group, and so does a request that finds the bucket free;
        the requests after it use them at once (the log still holds every window to `n`)."""
        if not self.n:
            return self.clock()
        bucket = self._bucket
        assert bucket is not None
        if not self._lock.locked():
            t = self.clock()
            if self.ready_at(t) <= t:
                if self._credit:
                    self._credit -= 1
                    self._log.append(t)
                    return t
                group = self._group  # above 1,000/s a group's tokens at once: one bucket call a group
                if bucket.has_capacity(group):
                    await bucket.acquire(group)  # has capacity: returns without yielding
                    self._credit = group - 1
                    self._log.append(t)
                    return t
        async with self._lock:
            while True:
                t = self.clock()
                wait = self.ready_at(t) - t
                if wait > 0:
                    await self.sleep(wait)
                    continue
                if not self._credit:
                    bucket = self._bucket  # set_rate may have replaced it meanwhile
                    assert bucket is not None
                    if bucket.has_capacity():
                        await bucket.acquire()  # returns without yielding
                        self._credit = 1
                    else:  # one wake-up for a group of requests
                        await bucket.acquire(self._group)
                        self._credit = self._group
                        continue  # time has passed: the log and the pause again
                self._credit -= 1
                self._log.append(t)
                return t
