"""How fast one provider is sent to: an exact window (pacing.py), and what a 429 changes.

A 429 is read by its cause, not by its count:
- *The provider says when*: a `Retry-After` pauses the lane for that long (the request itself
  is retried after it by the Lane's backoff). The rate stays: the sliding window catches up
  afterwards, because the pause left the provider's window empty.
- *Our pace is too high* (the account is really limited below the configured rate): 429s
  persist, at least `threshold` of them and at least `fraction` of what we sent over the last
  `evidence` seconds. Only then is the rate lowered, straight to what the provider accepted
  meanwhile (one request a window less at the least), and the window that drew them is
  remembered. After the lowered rate settles, the 429s tell which it was:
  none -> the limit is real: stay one below it, probe it again after `probe` seconds (doubling
  each time it fails again); a few, at a share below `fraction` -> background noise (a proxy,
  another client): forget it and climb back at once; as many as before -> lower again.
- Climbing is quick (a tenth of the ceiling every half second) up to the remembered limit.

A sporadic 429 therefore costs its own retry and a pause, not the campaign's pace.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from .pacing import MARGIN, Clock, Sleep, Window

MAX_PAUSE = 60.0  # a Retry-After longer than this is honoured only this long: the lane keeps moving
QUIET = 1.0  # seconds without a 429 before climbing
SETTLE = 1.0  # after lowering, the provider's window still holds what we sent at the old rate
STEP_EVERY = 0.5  # seconds between two climbing steps
BUCKET = 0.25  # resolution of the send counts the evidence is weighed against


class RateLimit:
    """A provider's pace: exact window, Retry-After pauses, lowering only on persistent 429s.

    Concurrency is the Lane's worker count. `current` and `throttled` are read by metrics."""

    def __init__(self, rate: float, share: float = 1.0, *, margin: float = MARGIN, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, threshold: int = 3, fraction: float = 0.15, evidence: float = 1.0,
                 probe: float = 5.0) -> None:
        self.rate = rate
        self.ceiling = rate * share
        self.current = self.ceiling
        self.clock = clock
        self.window = Window(self.ceiling, margin=margin, clock=clock, sleep=sleep)
        self.threshold = max(1, threshold)
        self.fraction = fraction
        self.evidence = evidence
        self.probe_base = probe
        self.throttled = 0  # 429s seen
        self.lowered = 0  # times the rate was lowered
        self._hits: deque[float] = deque()  # times of recent 429s
        self._sends: deque[list[float]] = deque()  # [bucket start, sends in it]
        self._limit = 0  # the window size (requests) that drew persistent 429s; 0: none known
        self._probe = probe
        self._settled = 0.0  # when the last lowering has settled (429s before are from the old rate)
        self._verdict = 0.0  # when the settled rate's 429s are weighed; 0: nothing pending
        self._probed = 0.0  # when the remembered limit was last tried again
        self._next_step = 0.0

    # -- the Lane's calls ---------------------------------------------------------------------
    async def prime(self) -> None:
        """Start paced: the first second is spread like every later one (the token exchange that
        follows takes the first slot: the provider counts it)."""
        self.window.prime()

    async def acquire(self) -> None:
        if self.current < self.ceiling:
            self._climb(self.clock())
        t = await self.window.acquire()
        s = self._sends
        if s and s[-1][0] > t - BUCKET:
            s[-1][1] += 1
        else:
            s.append([t, 1])
            while s[0][0] < t - 10.0:
                s.popleft()

    def on_throttled(self, retry_after: float | None) -> None:
        """A 429: pause for its Retry-After; lower the rate only if 429s persist (see the module doc)."""
        self.throttled += 1
        if retry_after:
            self.window.pause(min(retry_after, MAX_PAUSE))
        if not self.window.n:
            return
        t = self.clock()
        hits = self._hits
        hits.append(t)
        while hits[0] < t - 10.0:
            hits.popleft()
        if t < self._settled:
            return
        since = max(t - self._span(), self._settled)  # what the rate in force now drew
        recent = self._count(hits, since)
        if recent >= self.threshold and recent >= self.fraction * self._sent(since):
            self._lower(t, since, recent)

    def set_share(self, share: float) -> None:
        """This process's part of the provider's rate (daemon workers split it between them)."""
        self.ceiling = self.rate * share
        self._set(min(self.current, self.ceiling) if self._limit else self.ceiling)

    # -- deciding -----------------------------------------------------------------------------
    def _span(self) -> float:
        """Seconds of evidence: at least `evidence`, and enough for some 20 requests at low rates."""
        return min(10.0, max(self.evidence, 20.0 / max(self.current, 0.1)))

    def _sent(self, since: float) -> int:
        return sum(c for b, c in self._sends if b + BUCKET > since)

    @staticmethod
    def _count(hits: deque[float], since: float) -> int:
        n = 0
        for h in reversed(hits):
            if h < since:
                break
            n += 1
        return n

    def _set(self, rate: float) -> None:
        self.current = rate
        self.window.set_rate(rate)

    def _lower(self, t: float, since: float, recent: int) -> None:
        """To what the provider accepted since `since` (a provider judges whole seconds), and at
        least one request a window less; the climb corrects an estimate too low within seconds."""
        n = self.window.n
        if n <= 1:
            new = self.current / 2
        else:
            accepted = max(0.0, self._sent(since) - recent) / max(t - since, 1.0)
            new = float(max(1, min(n - 1, math.floor(accepted))))
        if self._limit:
            self._probe = min(self._probe * 2, 60.0)  # trouble again: believe the limit longer
        self._limit = n
        self.lowered += 1
        self._set(max(new, min(self.ceiling, 0.1)))
        self._settled = t + SETTLE
        self._verdict = self._settled + max(2.0, self._span())
        self._next_step = self._settled + QUIET

    def _climb(self, t: float) -> None:
        if t < self._next_step:
            return
        self._next_step = t + STEP_EVERY
        if self._verdict and t >= self._verdict:
            self._verdict = 0.0
            since = self._settled
            hits = self._count(self._hits, since)
            if hits >= self.fraction * self._sent(since) and hits >= self.threshold:
                self._lower(t, since, hits)
                return
            if hits:  # 429s at a rate that cannot have caused them: not ours
                self._limit = 0
                self._probe = self.probe_base
        if self._hits and self._hits[-1] > t - QUIET:
            return
        n = self.window.n
        if self._limit and n >= self._limit:
            if t >= self._probed + self._probe:  # the remembered limit held: it has gone
                self._limit = 0
                self._probe = self.probe_base
            return
        if self._limit and n + 1 >= self._limit:
            if t >= self._settled + self._probe:
                self._probed = t
                self._set(min(self.ceiling, float(self._limit)))
            return
        new = min(self.ceiling, self.current + max(1.0, self.ceiling * 0.1))
        if self._limit:
            new = min(new, self._limit - 1.0)
        self._set(new)
