"""The one PostgreSQL retry loop: transient failures retried within a budget, anything else at once."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher import pg


def go(coro):
    return asyncio.run(coro)


def test_transient_failures_are_retried_until_success():
    calls, seen = [], []

    async def op(n: int) -> str:
        calls.append(n)
        if n < 2:
            raise ConnectionResetError("lost")
        return "ok"

    async def failed(e, n, final):
        seen.append((type(e).__name__, n, final))

    assert go(pg.retrying(op, retry=pg.Retry(5, 0.001, 0.002), failed=failed)) == "ok"
    assert calls == [0, 1, 2] and seen == [("ConnectionResetError", 0, False), ("ConnectionResetError", 1, False)]


def test_the_budget_ends_with_the_last_error_marked_final():
    seen = []

    async def op(n: int) -> None:
        raise TimeoutError()

    async def failed(e, n, final):
        seen.append(final)

    with pytest.raises(TimeoutError):
        go(pg.retrying(op, retry=pg.Retry(2, 0.001, 0.002), failed=failed))
    assert seen == [False, False, True]


def test_a_non_transient_error_is_not_retried():
    calls = []

    async def op(n: int) -> None:
        calls.append(n)
        raise ValueError("a bug, not the network")

    with pytest.raises(ValueError):
        go(pg.retrying(op, retry=pg.Retry(5, 0.001, 0.002)))
    assert calls == [0]
