"""How a lane's requests reach the provider: one pooled aiohttp session, or a fake in tests.

The lane only calls `send` and hands `session` to the provider's `authenticate`; so the whole
engine (retries, halts, deferral, failover, pacing) runs against a scripted fake in
milliseconds, and against real HTTP unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Protocol

import aiohttp

from ..providers.base import HttpRequest

Answer = tuple[int, Mapping[str, str], bytes, float]  # status, headers, body, when its connection was ready (0.0: not known)


class Transport(Protocol):
    session: aiohttp.ClientSession | None

    async def send(self, req: HttpRequest) -> Answer:
        """The answer's status, headers and body, and when the request's connection was ready (0.0 when not
        known); raises what aiohttp raises (timeouts, dropped connections)."""
        ...

    async def close(self) -> None: ...


_READY: ContextVar[float] = ContextVar("dispatcher_connection_ready", default=0.0)


class _Connector(aiohttp.TCPConnector):
    """Notes when each request's connection was ready. A request that opens a connection (at the start, or after
    the provider closed one) leaves only when it is up, and the event loop may run other work meanwhile: tens of
    milliseconds later than its limiter slot. The provider stamps it then, so the pace must count it from then."""

    async def connect(self, req: aiohttp.ClientRequest, traces: list[aiohttp.tracing.Trace],
                      timeout: aiohttp.ClientTimeout) -> aiohttp.connector.Connection:
        conn = await super().connect(req, traces, timeout)
        _READY.set(time.monotonic())  # the request's own task: the send that awaited this reads it
        return conn


class HttpTransport:
    """One pooled `ClientSession` per provider alias: keep-alive, at most `concurrency` connections."""

    def __init__(self, concurrency: int, timeout: float) -> None:
        connector = _Connector(limit=concurrency, ttl_dns_cache=300, enable_cleanup_closed=True)
        self.session: aiohttp.ClientSession | None = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
            skip_auto_headers=("User-Agent",), raise_for_status=False,
        )

    async def send(self, req: HttpRequest) -> Answer:
        assert self.session is not None
        async with self.session.request(req.method, req.url, data=req.body, headers=req.headers) as resp:
            return resp.status, resp.headers, await resp.read(), _READY.get()

    async def close(self) -> None:
        if self.session is not None and not self.session.closed:
            await self.session.close()


TransportFactory = Callable[[str, int, float], Transport]  # (alias, concurrency, timeout) -> Transport


def http_transport(alias: str, concurrency: int, timeout: float) -> Transport:
    return HttpTransport(concurrency, timeout)
