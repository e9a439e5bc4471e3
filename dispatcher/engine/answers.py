"""What a lane reads out of an attempt for its results: an exception as text safe for a log, and the meta a
result carries of its message. Kept apart from the lane so the lane holds only sending."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ..model import Message
from ..providers.base import Outcome, ProviderError


def describe(exc: BaseException) -> str:
    """An exception as text without URLs or headers (which may carry credentials)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, ProviderError):
        return str(exc)
    return type(exc).__name__


def message_meta(m: Message, o: Outcome | None) -> dict[str, Any] | None:
    """What a result says of its message beyond the columns (None when nothing): the provider's extras, attempts
    that may have reached it unanswered, a doubt from an earlier attempt, a failover."""
    extra = o.extra if o is not None else None
    if not m.ambiguous and not extra and not m.in_doubt and not m.failover_from:
        return None
    meta: dict[str, Any] = dict(extra or {})
    if m.ambiguous:
        meta["unanswered_attempts"] = m.ambiguous  # the provider may have accepted an earlier attempt
    if m.in_doubt:
        meta["in_doubt"] = True  # in flight when an earlier attempt of this run died
    if m.failover_from:
        meta["failover_from"] = m.failover_from
    return meta or None
