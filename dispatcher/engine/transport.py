"""How a lane's requests reach the provider: one pooled aiohttp session, or a fake in tests.

The lane only calls `send` and hands `session` to the provider's `authenticate`; so the whole
engine (retries, halts, deferral, failover, pacing) runs against a scripted fake in
milliseconds, and against real HTTP unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp

from ..providers.base import HttpRequest


class Transport(Protocol):
    session: aiohttp.ClientSession | None

    async def send(self, req: HttpRequest) -> tuple[int, Mapping[str, str], bytes]:
        """The answer's status, headers and body; raises what aiohttp raises (timeouts, dropped connections)."""
        ...

    async def close(self) -> None: ...


class HttpTransport:
    """One pooled `ClientSession` per provider alias: keep-alive, at most `concurrency` connections."""

    def __init__(self, concurrency: int, timeout: float) -> None:
        connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300, enable_cleanup_closed=True)
        self.session: aiohttp.ClientSession | None = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
            skip_auto_headers=("User-Agent",), raise_for_status=False,
        )

    async def send(self, req: HttpRequest) -> tuple[int, Mapping[str, str], bytes]:
        assert self.session is not None
        async with self.session.request(req.method, req.url, data=req.body, headers=req.headers) as resp:
            return resp.status, resp.headers, await resp.read()

    async def close(self) -> None:
        if self.session is not None and not self.session.closed:
            await self.session.close()


TransportFactory = Callable[[str, int, float], Transport]  # (alias, concurrency, timeout) -> Transport


def http_transport(alias: str, concurrency: int, timeout: float) -> Transport:
    return HttpTransport(concurrency, timeout)
