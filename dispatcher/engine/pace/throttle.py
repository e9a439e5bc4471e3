"""How fast one provider is sent to: an exact window (window.py), and what a 429 changes.

A 429 is read by its cause, not by its count:
- *The provider says when*: a `Retry-After` pauses the lane for that long (the request itself
  is retried after it by the Lane's backoff). The rate stays.
- *Our pace is too high* (the account is really limited below the configured rate): 429s
  persist: at least `threshold` of them over at least one of the provider's windows, and at
  least `fraction` of what we sent meanwhile (or the one in `n + 1` that a window of one
  request too many draws). Only then is the rate lowered: to the most that the provider let
  through in the window before any of those 429s, when that is far below ours (it is exactly
  the limit when the limit refused us), else by one request a window. Once the lowered rate
  has settled, its 429s tell which it was:
  - as many as before (at least `fraction` of the sends): still ours, lower again;
  - a few, a smaller share: background noise (a proxy, another client of the account): the
    rate climbs straight back, a tenth of the ceiling every half second;
  - none: the limit is real. The rate stays, and every `probe` seconds one request a window
    more is tried (two, four... while they hold; the wait doubles, up to 30 s, each time one
    draws 429s again), so a lifted limit is found again and a real one costs few 429s.

A sporadic 429 therefore costs its own retry, not the campaign's pace.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque

from .window import MARGIN, Clock, Sleep, Window

SHARED_MARGIN = 0.05  # seconds added to a shared window: about 95% of each worker's part

LATE = 0.002  # seconds a request may leave after its slot before the window counts it from when it left
MAX_PAUSE = 60.0  # a Retry-After longer than this is honoured only this long: the lane keeps moving
QUIET = 1.0  # seconds without a 429 before climbing
SETTLE = 1.0  # after lowering, the provider's window still holds what we sent at the old rate
STEP_EVERY = 0.5  # seconds between two climbing steps
VERDICT = 2.0  # seconds (and 40 requests) of the settled rate weighed before deciding what the 429s were
SURE = 4  # answers on pooled connections (and at least a window of them) before their least time is trusted
MAX_PROBE = 30.0  # seconds between two tries of a limit that keeps proving real


class RateLimit:
    """A provider's pace: exact window, Retry-After pauses, lowering only on persistent 429s.

    Concurrency is the Lane's sender count. `current` and `throttled` are read by metrics."""

    def __init__(self, rate: float, share: float = 1.0, *, margin: float = MARGIN, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, threshold: int = 3, fraction: float = 0.15, evidence: int = 40,
                 probe: float = 10.0) -> None:
        self.rate = rate
        self.ceiling = rate * share
        self.current = self.ceiling
        self.clock = clock
        self._margin = margin
        self.window = Window(self.ceiling, margin=SHARED_MARGIN if share < 1 else margin, clock=clock, sleep=sleep)
        self.threshold = max(1, threshold)
        self.fraction = fraction
        self.probe_base = probe
        self.throttled = 0  # 429s seen
        self.lowered = 0  # times the rate was lowered
        keep = max(evidence, self.threshold, int(2 * self.ceiling))  # at least 2 s of sends at full rate
        self._sends: deque[float] = deque(maxlen=keep)  # the last sends' times
        self._least = float("inf")  # the least time an answer took from leaving (the provider's own work on a
        self._answers = 0  # request, after its stamp), over this many answers on pooled connections
        self._hits: deque[float] = deque(maxlen=keep)  # the last 429s' times
        self._passed: deque[int] = deque(maxlen=keep)  # for each of them, what its window let through
        self._limit = 0  # the window size (requests) that drew persistent 429s; 0: none known
        self._probe = probe
        self._settled = 0.0  # when the last lowering has settled (429s before are from the old rate)
        self._verdict = 0.0  # when the settled rate's 429s are weighed; 0: nothing pending
        self._changed = 0.0  # when the rate was last lowered or probed upwards
        self._step = 1  # requests a window added by the next probe
        self._good = 0  # the window size last seen to hold without 429s
        self._probing = False  # the rate in force is a probe: if it fails, wait longer before the next
        self._next_step = 0.0

    # -- the Lane's calls ---------------------------------------------------------------------
    async def acquire(self) -> float:
        """Wait for a slot and take it; returns the slot's time, for `left_at`."""
        if self.current < self.ceiling:
            self._climb(self.clock())
        slot = await self.window.acquire()
        self._sends.append(slot)
        return slot

    def left_at(self, slot: float, at: float, answered: float = 0.0) -> None:
        """The request given `slot` could leave at `at` (its connection ready; 0.0: not known) and was answered
        at `answered` (0.0: not known). The provider stamped it in between, and the log counts it from as late
        as that may have been (when that is more than LATE after its slot):
        - from its answer less the least time the provider ever took to answer here (its own work on one
          request, which follows the stamp): a provider that queues requests (busy, or stalled) reads and
          stamps them late, up to that close to their answer;
        - from its answer while that least time is not known yet (the lane's first window) or when the request
          opened its connection (a provider accepts a new one and reads its first request when it gets to it:
          tens of milliseconds later when several open at once, as at a lane's start).
        Less the window's margin, which already allows for a stamp up to that late: only a request whose stamp
        may have come later than that (it waited somewhere) holds the next ones back."""
        if answered and self.window.n:
            least = 0.0
            if at - slot <= LATE:
                took = answered - max(slot, at)
                self._answers += 1
                if took < self._least:
                    self._least = took
                if self._answers >= max(SURE, self.window.n):
                    least = self._least
            # the window's margin is slack for exactly this: a stamp up to `margin` after `at` still keeps it
            at = max(at, answered - least - self.window.margin)
        if at - slot > LATE:
            self.window.left_at(slot, at)

    def on_throttled(self, retry_after: float | None) -> None:
        """A 429: pause for its Retry-After; lower the rate only if 429s persist (see the module doc)."""
        self.throttled += 1
        t = self.clock()
        if retry_after:
            self.window.pause(min(retry_after, MAX_PAUSE))
        if not self.window.n:
            return
        self._hits.append(t)
        # what the provider let through in its last window (our sends in it less its 429s):
        # exactly its limit when the limit refused us, anything when a proxy did
        self._passed.append(self._since(self._sends, t - 1.0) - self._since(self._hits, t - 1.0))
        if t < self._settled or not self._sends:
            return
        since = max(self._sends[0], self._settled, self._changed)  # the last sends, at the rate in force now
        if t - since < 1.0:  # less than one of the provider's windows: too early to tell
            return
        hits = self._since(self._hits, since)
        # at one request a window too many, a provider refuses one in n + 1: that share counts too
        share = min(self.fraction, 0.8 / self.window.n)
        if hits >= self.threshold and hits >= share * self._since(self._sends, since):
            self._lower(t, since, hits)

    @property
    def paused(self) -> bool:
        """Waiting out a 429's Retry-After."""
        return self.window.paused_until > self.clock()

    def set_share(self, share: float) -> None:
        """This process's part of the provider's rate (daemon workers split it between them). A share is
        paced with a wider margin (SHARED_MARGIN): each worker is exact on its own clock, but their
        requests reach the provider through separate loops and connections, and the jitter of one adds
        to the other's in the provider's window."""
        self.window.margin = SHARED_MARGIN if share < 1 else self._margin
        self.ceiling = self.rate * share
        self._set(min(self.current, self.ceiling) if self._limit else self.ceiling)

    # -- deciding -----------------------------------------------------------------------------
    @staticmethod
    def _since(times: deque[float], since: float) -> int:
        """How many of `times` (in order) are at or after `since`."""
        return len(times) - bisect.bisect_left(times, since)

    def _set(self, rate: float) -> None:
        self.current = rate
        self.window.set_rate(rate)

    def _lower(self, t: float, since: float, hits: int) -> None:
        """To what the provider accepted in its last window when that is far below ours, else one
        request a window less (the verdict then tells whether that was it); never below a rate
        that held before a failed probe."""
        n = self.window.n
        if n <= 1:
            new = self.current / 2
        else:
            accepted = max(list(self._passed)[-hits:])  # the most any of these windows let through
            good = self._good if self._good < n else 0  # a failed probe goes back to what held
            guess = accepted if accepted <= 0.8 * n else n - 1  # far below, or one less and see
            new = float(max(1, min(n - 1, max(good, guess))))
        if self._probing:
            self._probe = min(self._probe * 2, MAX_PROBE)  # a failed probe: believe the limit longer
            self._probing = False
        self._limit = n
        self._step = 1
        self.lowered += 1
        self._set(max(new, min(self.ceiling, 0.1)))
        self._settled = t + SETTLE
        self._verdict = self._settled + max(VERDICT, 40.0 / max(self.current, 0.1))
        self._changed = t
        self._next_step = self._settled + QUIET

    def _forget(self) -> None:
        self._probing = False
        self._limit = 0
        self._good = 0
        self._probe = self.probe_base
        self._step = 1

    def _climb(self, t: float) -> None:
        if t < self._next_step:
            return
        self._next_step = t + STEP_EVERY
        if self._verdict and t >= self._verdict:
            self._verdict = 0.0
            hits = self._since(self._hits, self._settled)
            if hits and hits >= self.fraction * self._since(self._sends, self._settled):
                self._lower(t, self._settled, hits)  # still ours
                return
            if hits:  # 429s at a share that the lowered rate cannot have drawn: not ours
                self._forget()
            else:
                self._good = self.window.n
        if not self._limit:  # nothing known against it (or the 429s were noise): quickly back
            self._set(min(self.ceiling, self.current + max(1.0, self.ceiling * 0.1)))
            return
        if self._hits and self._hits[-1] > t - QUIET:
            return
        if t >= self._changed + self._probe:  # the last step held: try more, a little faster each time
            if self._changed > self._settled:
                self._step *= 2
                self._probe = self.probe_base
            self._good = self.window.n
            self._changed = t
            self._probing = True
            self._set(min(self.ceiling, float(self.window.n + self._step)))
            if self.current >= self.ceiling:
                self._forget()
