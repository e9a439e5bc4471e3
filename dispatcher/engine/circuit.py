"""A per-provider circuit breaker: pause instead of burning every message's attempts against a
provider that stopped answering, and say when it has been down for too long."""

from __future__ import annotations

import time
from collections.abc import Callable


class Circuit:
    """Opens after `failures` consecutive unanswered or 5xx requests, for `cooldown` seconds (doubling
    up to 60 s while it keeps failing). `exhausted` once it has been open `give_up_after` seconds in all:
    the lane then halts, and its records are deferred."""

    def __init__(self, failures: int, cooldown: float, give_up_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = max(1, failures)
        self.base = cooldown
        self.cooldown = cooldown
        self.give_up_after = give_up_after
        self.clock = clock
        self.failures = 0
        self.open_until = 0.0
        self.open_total = 0.0

    @property
    def is_open(self) -> bool:
        return self.clock() < self.open_until

    def record(self, ok: bool) -> None:
        if ok:
            self.failures = 0
            self.cooldown = self.base
            return
        self.failures += 1
        if self.failures >= self.threshold and not self.is_open:
            self.open_until = self.clock() + self.cooldown
            self.open_total += self.cooldown
            self.cooldown = min(self.cooldown * 2, 60.0)
            self.failures = self.threshold - 1  # half-open: one more failure opens it again

    @property
    def exhausted(self) -> bool:
        return self.open_total >= self.give_up_after

    def reset(self) -> None:
        """The provider is back (revived): start counting afresh."""
        self.failures = 0
        self.cooldown = self.base
        self.open_until = 0.0
        self.open_total = 0.0
