"""What the providers are doing, said once: state changes at WARNING, counts at INFO, /healthz's view.

The one place the daemon reads `Engine.snapshot()` for health. A halt or a revival reaches `observe` at
once (the daemon's Events call it); the states that raise no event (throttled, circuit open, back to
sending) are found by a small task sampling the snapshot every `every` seconds. Each change of state is
logged once with its code and reason, plus one INFO line every `stats_every` seconds with the counts per
provider since the last.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from ..engine import SENDING, LaneState, LaneStatus
from ..tasks import Tasks, cancel
from .metrics import counter

log = logging.getLogger("dispatcher.daemon")
Counts = Callable[[], Mapping[tuple[str, str, str], int]]  # (provider, status, code) -> rows so far


class Monitor:
    def __init__(self, snapshot: Callable[[], list[LaneStatus]], counts: Counts, *, every: float = 0.5,
                 stats_every: float = 60.0) -> None:
        self.snapshot = snapshot
        self.counts = counts
        self.every = every
        self.stats_every = stats_every
        self.lanes: dict[str, LaneStatus] = {}
        self.changes: Counter[tuple[str, str]] = Counter()  # (provider, state entered)
        self._last_counts: Counter[tuple[str, str]] = Counter()
        self._last_requests: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def collect(self) -> Iterator[Metric]:
        """/metrics: each provider's state (a gauge a state, 1 for the one it is in), and the changes."""
        g = GaugeMetricFamily("dispatcher_provider_state", "1 for the state each provider is in",
                              labels=["provider", "state"])
        for alias, s in sorted(self.lanes.items()):
            for state in LaneState:
                g.add_metric([alias, state], 1.0 if s.state == state else 0.0)
        yield g
        yield counter("dispatcher_provider_state_changes", "Provider state changes, by state entered",
                      ["provider", "state"], self.changes)

    def start(self, tasks: Tasks) -> None:
        """The sampler as a task of `tasks`, restarted (logged, with backoff) if a bug ends it: health reporting
        must outlive a bug in itself."""
        self.observe(self.snapshot(), quiet=True)
        self._task = tasks.keep(self._run, "health")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        next_stats = time.monotonic() + self.stats_every
        while True:
            await asyncio.sleep(self.every)
            try:
                self.observe(self.snapshot())
                if self.stats_every and time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.stats_every
                    self.stats()
            except Exception as e:  # health reporting must outlive a bug in itself
                log.error("health: %s: %s", type(e).__name__, e)

    def observe(self, lanes: list[LaneStatus], quiet: bool = False) -> None:
        """Log every provider whose state differs from the last sample."""
        for s in lanes:
            before = self.lanes.get(s.alias)
            self.lanes[s.alias] = s
            if before is not None and before.state == s.state:
                continue
            if before is None and (quiet or s.state == SENDING):
                continue
            self.changes[(s.alias, s.state)] += 1
            why = f": {s.code} {s.reason}" if s.code or s.reason else ""
            log.warning("provider %s (%s): %s -> %s%s", s.alias, s.kind, before.state if before else "starting",
                        s.state, why.rstrip())

    def stats(self) -> None:
        """One INFO line: rows finished per provider and status since the last line, requests, state."""
        now: Counter[tuple[str, str]] = Counter()
        for (provider, status, _code), n in self.counts().items():
            now[(provider, status)] += n
        delta = now - self._last_counts
        self._last_counts = now
        parts = []
        for alias, s in sorted(self.lanes.items()):
            done = " ".join(f"{st} {delta[(alias, st)]}" for st in ("sent", "failed", "rejected"))
            reqs = s.requests - self._last_requests.get(alias, 0)
            self._last_requests[alias] = s.requests
            parts.append(f"{alias}: {done}, {reqs} requests, {s.state}")
        other = sum(n for (p, _), n in delta.items() if p not in self.lanes)
        if other:
            parts.append(f"before routing: rejected {other}")
        log.info("last %g s: %s", self.stats_every, "; ".join(parts) or "no providers")

    def degraded(self) -> list[dict[str, Any]]:
        """The providers not sending, for /healthz."""
        return [view(s) for s in self.lanes.values() if s.state != SENDING]

    def providers(self) -> list[dict[str, Any]]:
        return [view(s) for s in self.lanes.values()]


def _time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def view(s: LaneStatus) -> dict[str, Any]:
    """A provider as /healthz shows it; `last_error` is its last answer that was not a success (null before one)."""
    last = None if s.error_at is None else {"code": s.error_code, "error": s.error, "at": _time(s.error_at)}
    return {"provider": s.alias, "kind": s.kind, "channel": s.channel, "state": s.state,
            "since": _time(s.since), "code": s.code, "reason": s.reason,
            "pace": round(s.pace, 3), "rate": s.rate, "in_flight": s.in_flight, "requests": s.requests,
            "throttled": s.throttled, "retries": s.retries, "last_error": last}
