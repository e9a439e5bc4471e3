"""When to try again: exponential backoff with full jitter, never sooner than `Retry-After`."""

from __future__ import annotations

import random

import aiohttp

# Raised before any byte of the request left: resending cannot duplicate anything.
NOT_SENT = (aiohttp.ClientConnectorError,)


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
    delay = random.uniform(0, min(cap, base * (2 ** (attempt - 1))))
    return max(delay, retry_after or 0.0)


def ambiguous(exc: BaseException) -> bool:
    """Whether the provider may have accepted a request that ended with `exc`."""
    return not isinstance(exc, NOT_SENT)
