"""How a lane's requests reach the provider: pooled keep-alive connections (engine/wire.py), or a fake in tests.

The lane only calls `send` and hands `session` to the provider's `authenticate`; so the whole
engine (retries, halts, deferral, failover, pacing) runs against a scripted fake in
milliseconds, and against real HTTP unchanged. A provider's token exchange goes through an aiohttp
session (`session`); its messages through the lean client, which costs a request a seventh of the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp

from ..providers.base import HttpRequest
from .wire import Pool

Answer = tuple[int, Mapping[str, str], bytes, float]  # status, headers, body, when its connection was ready (0.0: not known)


class Transport(Protocol):
    session: aiohttp.ClientSession | None

    async def send(self, req: HttpRequest) -> Answer:
        """The answer's status, headers and body, and when the request's connection was ready (0.0 when not
        known); raises what aiohttp raises (timeouts, dropped connections)."""
        ...

    async def close(self) -> None: ...


class HttpTransport:
    """The lane's requests on pooled keep-alive connections (at most `concurrency` in use: one a sender),
    each answered within `timeout` seconds; an aiohttp session beside them for the provider's own calls."""

    def __init__(self, concurrency: int, timeout: float) -> None:
        self._pool = Pool(timeout)
        self.session: aiohttp.ClientSession | None = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=timeout), skip_auto_headers=("User-Agent",), raise_for_status=False)

    async def send(self, req: HttpRequest) -> Answer:
        return await self._pool.send(req.method, req.url, req.headers, req.body)

    async def close(self) -> None:
        self._pool.close()
        if self.session is not None and not self.session.closed:
            await self.session.close()


TransportFactory = Callable[[str, int, float], Transport]  # (alias, concurrency, timeout) -> Transport


def http_transport(alias: str, concurrency: int, timeout: float) -> Transport:
    return HttpTransport(concurrency, timeout)
