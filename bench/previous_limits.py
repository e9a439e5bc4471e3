"""The limiter as it was before issue 10 (dispatcher/limits.py at d0057f9; today's is
dispatcher/engine/pace/throttle.py), kept verbatim as the pacing benchmark's baseline: an aiolimiter
bucket leaking at `rate - burst - 0.5%` floored at half the rate, and every 429 halving the pace.
Not used by the dispatcher.
"""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter


def safe_rate(rate: float, burst: int) -> float:
    """The leak rate that keeps `burst + leak * 1s`, plus half a percent for jitter, within `rate`."""
    return max(rate - burst - max(0.5, rate * 0.005), rate * 0.5, 0.1)


class PreviousRateLimit:
    """A provider's pace: an aiolimiter bucket plus AIMD after 429s. Concurrency is the Lane's worker count."""

    def __init__(self, rate: float, burst: int = 0, share: float = 1.0) -> None:
        self.rate = rate
        self.burst = max(1, int(burst)) if burst else max(2, int(rate * share / 200))
        self.ceiling = safe_rate(rate * share, self.burst) if rate else 0.0
        self.current = self.ceiling
        self._limiter = AsyncLimiter(self.burst, self.burst / self.ceiling) if rate else None
        self.throttled = 0  # 429s seen
        self._recover: asyncio.TimerHandle | None = None

    async def acquire(self) -> None:
        if self._limiter is not None:
            await self._limiter.acquire()

    async def prime(self) -> None:
        """Start with the bucket full, so the first second carries no burst on top of the rate
        (the provider counts the token exchange that precedes it too)."""
        if self._limiter is not None:
            for _ in range(self.burst):
                await self._limiter.acquire()

    def _set(self, rate: float) -> None:
        self.current = rate
        assert self._limiter is not None
        self._limiter.time_period = self.burst / rate
        self._limiter._rate_per_sec = rate  # aiolimiter derives it once, in __init__

    def set_share(self, share: float) -> None:
        """This process's part of the provider's rate (daemon workers split it between them)."""
        if self._limiter is None:
            return
        self.ceiling = safe_rate(self.rate * share, self.burst)
        self._set(min(self.current, self.ceiling) if self._recover is not None else self.ceiling)

    def throttle(self) -> None:
        """A 429: halve the pace now, then climb back by 5% of the ceiling a second."""
        self.throttled += 1
        if self._limiter is None:
            return
        self._set(max(self.current / 2, self.ceiling * 0.05))
        if self._recover is None:
            self._recover = asyncio.get_running_loop().call_later(1.0, self._climb)

    def _climb(self) -> None:
        self._recover = None
        if self.current < self.ceiling:
            self._set(min(self.ceiling, self.current + self.ceiling * 0.05))
            self._recover = asyncio.get_running_loop().call_later(1.0, self._climb)
