"""A lean HTTP/1.1 client for a lane's requests: pooled keep-alive connections, llhttp's parser (httptools).

Why not `ClientSession.request`: one message a request, aiohttp's request and response objects, header
handling, payload registry, timer and write task cost ~140 us of CPU a request here, against ~20 us for the
same request written as one block of bytes and read back by llhttp; with it a blast sends one message a request
at 1.25x the rate of a bare aiohttp loop (`python -m bench.blast`), where it reached 0.66x through aiohttp. A
lane needs none of what that buys: no redirects (a provider API that redirects a POST is misconfigured), no
cookies, no compression asked for, no proxy (the session never read the environment's either). aiohttp still serves everything else (token exchanges, the simulators, the daemon).

Failures are raised as the aiohttp exceptions the lane already classifies (engine/reach, retry):
a connection that cannot be made is `ClientConnectorError` (nothing left: not in doubt), a connection lost
after the request was written is `ServerDisconnectedError` (in doubt), no answer in time is `TimeoutError`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
import httptools
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy


class Origin(NamedTuple):
    """Where a URL's requests go, and what its request line and Host header say."""

    host: str
    port: int
    tls: bool
    host_header: bytes


class Target(NamedTuple):
    origin: Origin
    path: bytes  # path and query, as the request line carries them


def target(url: str) -> Target:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http(s) URL: {u.scheme}://{u.hostname or ''}")
    tls = u.scheme == "https"
    port = u.port or (443 if tls else 80)
    netloc = u.hostname if u.port is None else f"{u.hostname}:{u.port}"
    if ":" in u.hostname:  # an IPv6 literal keeps its brackets in the Host header
        netloc = f"[{u.hostname}]" + (f":{u.port}" if u.port else "")
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return Target(Origin(u.hostname, port, tls, f"Host: {netloc}\r\n".encode("idna")), path.encode())


class _Response(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    keep_alive: bool


class Connection(asyncio.Protocol):
    """One keep-alive connection: a request written whole, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[_Response] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._until_close = False  # an answer with neither a length nor chunks ends when the connection does

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(aiohttp.ClientPayloadError("the provider switched protocols"))
        except httptools.HttpParserError as e:
            self.fail(aiohttp.ClientPayloadError(f"malformed answer: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._until_close and self._answer is not None and not self._answer.done():
            self.on_message_complete()
            return
        self.fail(aiohttp.ServerDisconnectedError())

    # -- httptools callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        names = {k.lower() for k, _ in self._headers}
        self._until_close = "content-length" not in names and "transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer, self._answer = self._answer, None
        if self._parser.get_status_code() < 200:  # an interim answer (100 Continue): the real one follows
            self._answer = answer
            self._headers, self._body = [], []
            return
        if answer is not None and not answer.done():  # llhttp's keep-alive is False for a close-delimited answer
            answer.set_result(_Response(self._parser.get_status_code(), CIMultiDictProxy(CIMultiDict(self._headers)),
                                        b"".join(self._body), self._parser.should_keep_alive()))

    # -- the client's side --------------------------------------------------------------------
    def request(self, *data: bytes) -> asyncio.Future[_Response]:
        """The request's pieces (its head, its body) written as they are: one gathering write, no copy of
        a 100 kB body behind its head."""
        assert self.transport is not None
        self._answer = answer = asyncio.get_running_loop().create_future()  # the parser goes on from the last answer
        self._headers, self._body, self._until_close = [], [], False
        self.transport.writelines(data)
        return answer

    def fail(self, exc: BaseException) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections per origin. The lane's senders bound how many are in use at once (one request
    each); idle ones wait here for the next, and one the provider closed is never handed out again."""

    def __init__(self, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self._tls = tls
        self._idle: dict[Origin, list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._targets: dict[str, Target] = {}

    async def send(self, method: str, url: str, headers: Mapping[str, str],
                   body: bytes | None) -> tuple[int, CIMultiDictProxy[str], bytes, float]:
        """Status, headers, body, and when the request's connection was ready (the request left then)."""
        t = self._targets.get(url)
        if t is None:
            t = target(url)
            if len(self._targets) < 256:  # a provider's few URLs; one that varied by message would not grow this
                self._targets[url] = t
        data = self._head(method, t, headers) + b"Content-Length: %d\r\n\r\n" % len(body or b"")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        conn = await self._connection(t.origin, deadline)
        ready = time.monotonic()
        self._busy.add(conn)
        timer = loop.call_at(deadline, self._expire, conn)
        try:
            answer = conn.request(data, body) if body else conn.request(data)
            response = await answer
        except asyncio.CancelledError:
            conn.close()  # abandoned mid-request: the connection's state is unknown
            raise
        finally:
            timer.cancel()
            self._busy.discard(conn)
        if response.keep_alive and not conn.lost:
            self._idle.setdefault(t.origin, []).append(conn)
        else:
            conn.close()
        return response.status, response.headers, response.body, ready

    @staticmethod
    def _head(method: str, t: Target, headers: Mapping[str, str]) -> bytes:
        """The request line and headers (a provider's few headers: ~1 us to write out)."""
        lines = [method.encode(), b" ", t.path, b" HTTP/1.1\r\n", t.origin.host_header]
        lines += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()
                  if k.lower() not in ("host", "content-length")]
        return b"".join(lines)

    @staticmethod
    def _expire(conn: Connection) -> None:
        conn.fail(TimeoutError())

    async def _connection(self, origin: Origin, deadline: float) -> Connection:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn
        loop = asyncio.get_running_loop()
        key = ConnectionKey(origin.host, origin.port, origin.tls, True, None, None, None)
        tls = (self._tls or ssl.create_default_context()) if origin.tls else None
        if tls is not None:
            self._tls = tls
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(Connection, origin.host, origin.port, ssl=tls,
                                                       server_hostname=origin.host if tls else None)
        except TimeoutError:
            raise aiohttp.ConnectionTimeoutError(f"connection to {origin.host}:{origin.port} timed out") from None
        except ssl.SSLCertVerificationError as e:
            raise aiohttp.ClientConnectorCertificateError(key, e) from None
        except ssl.SSLError as e:
            raise aiohttp.ClientConnectorSSLError(key, e) from None
        except socket.gaierror as e:
            raise aiohttp.ClientConnectorDNSError(key, e) from None
        except OSError as e:
            raise aiohttp.ClientConnectorError(key, e) from None
        return conn

    def close(self) -> None:
        """Every connection closed, idle or carrying a request (whose sender then sees it lost)."""
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
        for c in list(self._busy):
            c.fail(aiohttp.ServerDisconnectedError())
        self._busy.clear()
