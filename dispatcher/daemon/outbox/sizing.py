"""How many rows a claim takes: the engine's free slots, so a claimed row goes out soon and whatever is
claimed next (a priority message, another campaign's share) is never stuck behind a deep in-memory queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ...engine import HALTED, LaneStatus

HORIZON = 1.0  # seconds of sending a claim fills ahead
COOLDOWN = 0.05  # seconds between claims while the engine has no free slot


def claim_size(lanes: Iterable[LaneStatus], batch: Mapping[str, int], in_flight: int, room: int, cap: int,
               horizon: float = HORIZON) -> int:
    """The free slots: how many rows to claim now (0: none).

    Each lane can send about `pace x batch size x horizon` messages in the next `horizon` seconds
    (its current pace: this worker's share of the rate, lowered after 429s), at least one batch; a lane
    without a rate limit, `cap`; a halted lane one batch (its rows are deferred at once). The free slots
    are the sum less what the engine holds already (`in_flight`: queued in lanes and on the wire), within
    its in-flight `room` and `cap`, and nothing when there is no room. Without lanes (before the engine
    starts), `cap` within the room."""
    target = 0.0
    seen = False
    for s in lanes:
        seen = True
        size = max(batch.get(s.alias, 1), 1)
        if s.state == HALTED:
            target += size
        elif s.rate <= 0:
            target += cap
        else:
            target += max(s.pace * size * horizon, size)
    if not seen:
        target = cap
    return max(0, min(int(target + 0.999) - in_flight, room, cap))
