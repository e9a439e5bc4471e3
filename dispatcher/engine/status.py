"""What a lane reports of itself: a snapshot for progress displays, health checks and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LaneState(StrEnum):
    """What a lane is doing, from best to worst: the one place that lists the states and orders them
    (a run shared by processes shows a provider's worst; /metrics has a gauge a state). Its members are
    their strings ("sending", ...), so JSON, logs and comparisons with text read them as before."""

    SENDING = "sending"
    THROTTLED = "throttled"  # waiting on a 429's Retry-After, or a pace lowered after one
    CIRCUIT_OPEN = "circuit_open"  # paused: the provider stopped answering
    HALTED = "halted"  # it cannot take anything now: records routed to it are deferred

    @property
    def severity(self) -> int:
        """0 for sending up to 3 for halted: of several, the worst state is the one to show."""
        return _SEVERITY[self]


_SEVERITY = {state: rank for rank, state in enumerate(LaneState)}


@dataclass(slots=True)
class LaneStatus:
    """What one provider lane is doing, for progress displays, health checks and metrics.

    A snapshot, not a view: readers never hold a Lane. `state` is a LaneState. `since` is
    the wall-clock time (epoch seconds) the lane entered that state; `code` / `reason` say why for
    the last three. `retries` counts records this lane put back to try again; `error_code`, `error` and
    `error_at` (epoch seconds) are the last answer that was not a success, whatever became of it.
    """

    alias: str
    kind: str
    channel: str
    state: LaneState
    since: float
    code: str | None
    reason: str | None
    rate: float  # configured requests/s (0: unlimited)
    pace: float  # requests/s the limiter admits now
    requests: int  # requests sent so far
    throttled: int  # 429 answers so far
    in_flight: int  # requests on the wire now
    retries: int = 0  # records retried so far (a batch of 10 retried once: 10)
    error_code: str | None = None
    error: str | None = None
    error_at: float | None = None
