"""What every provider simulator shares: a strict rate window, switchable faults, a ledger,
a control endpoint (`/_sim/...`) and a delivery-report sender.

A simulator module subclasses `Simulator`, adds its routes in `routes()`, and answers in
its provider's own shapes through `too_many()` and `server_error()`. It never imports the
adapter it stands in for: if both shared a bug, every test would pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Faults:
    """Knobs a test or an operator turns, at start (flags) or live (`POST /_sim/config`)."""

    rate: float = 0.0  # requests admitted in any one-second window; 0 = the module's default
    latency_ms: float = 0.0  # added before answering
    jitter_ms: float = 0.0  # uniform extra latency 0..jitter
    error_rate: float = 0.0  # fraction answered 5xx (nothing accepted)
    drop_rate: float = 0.0  # fraction whose connection is closed before anything is accepted
    drop_after_rate: float = 0.0  # fraction accepted, then the connection closed with no answer
    throttle_rate: float = 0.0  # fraction answered the module's 429 whatever the rate (a proxy's, a shared account's)
    throttle_retry_after: float = 0.0  # the Retry-After those 429s carry; 0 = none
    max_batch: int = 0  # recipients per request; 0 = the module's default
    credits: float = -1.0  # units of credit left; -1 = unlimited
    dlr_delay_ms: float = 0.0  # delay before a delivery report is sent
    ledger: bool = True  # keep accepted messages (off for long benchmarks: counts only)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


class Dropped(Exception):
    """Raised by a handler to close the connection without an answer."""


class Simulator:
    kind: ClassVar[str]
    default_rate: ClassVar[float] = 0.0
    default_max_batch: ClassVar[int] = 1
    option_types: ClassVar[dict[str, type]] = {}  # a module's own live settings (`POST /_sim/options`)

    def __init__(self, faults: Faults | None = None, *, seed: int | None = None, **credentials: str) -> None:
        self.faults = faults or Faults()
        self.credentials = credentials
        self.random = random.Random(seed)
        self.ledger: list[dict[str, Any]] = []
        self.accepted = 0
        self.stats = {"requests": 0, "admitted": 0, "rate_limited": 0, "errors_injected": 0, "dropped": 0,
                      "dropped_after": 0, "throttled_injected": 0, "max_window": 0, "dlr_sent": 0, "dlr_failed": 0}
        self._window: deque[float] = deque()
        self._dlr: asyncio.Queue[tuple[str, str, Any]] | None = None
        self._dlr_tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._ids = 0
        self.defaults: dict[str, Any] = {}  # a module fills these from its constructor's keywords
        self.options: dict[str, Any] = {}

    # -- what a module provides ---------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def too_many(self) -> web.Response:
        return json_response({"error": "Too many requests"}, 429, {"Retry-After": "1"})

    def server_error(self) -> web.Response:
        return json_response({"error": "Internal error"}, 500)

    # -- shared machinery -----------------------------------------------------------------
    @property
    def rate(self) -> float:
        return self.faults.rate or self.default_rate

    @property
    def max_batch(self) -> int:
        return self.faults.max_batch or self.default_max_batch

    def next_id(self, width: int = 13) -> str:
        """Distinct alphanumeric ids, as providers issue them."""
        self._ids += 1
        n, out = self._ids, []
        while n:
            n, r = divmod(n, 36)
            out.append("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r])
        return "".join(reversed(out)).rjust(width, "0")

    def record(self, entry: dict[str, Any]) -> None:
        self.accepted += 1
        if self.faults.ledger:
            self.ledger.append(entry)

    def spend(self, units: float) -> bool:
        """Take credit; False when there is not enough."""
        if self.faults.credits < 0:
            return True
        if self.faults.credits < units:
            return False
        self.faults.credits -= units
        return True

    def _admit(self) -> bool:
        """Strict sliding window: at most `rate` admitted requests in any one second."""
        now = time.monotonic()
        w = self._window
        while w and w[0] <= now - 1.0:
            w.popleft()
        rate = self.rate
        if rate and len(w) >= rate:
            return False
        w.append(now)
        if len(w) > self.stats["max_window"]:
            self.stats["max_window"] = len(w)
        return True

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        f, s = self.faults, self.stats
        s["requests"] += 1
        if f.drop_rate and self.random.random() < f.drop_rate:
            s["dropped"] += 1
            return self._drop(request)
        if f.latency_ms or f.jitter_ms:
            await asyncio.sleep((f.latency_ms + self.random.random() * f.jitter_ms) / 1000)
        if f.throttle_rate and self.random.random() < f.throttle_rate:
            s["throttled_injected"] += 1
            r = self.too_many()
            r.headers.popall("Retry-After", None)
            if f.throttle_retry_after:
                r.headers["Retry-After"] = f"{f.throttle_retry_after:g}"
            return r
        if not self._admit():
            s["rate_limited"] += 1
            return self.too_many()
        s["admitted"] += 1
        if f.error_rate and self.random.random() < f.error_rate:
            s["errors_injected"] += 1
            return self.server_error()
        try:
            response = await handler(request)
        except Dropped:
            return self._drop(request)
        if f.drop_after_rate and response.status < 300 and self.random.random() < f.drop_after_rate:
            s["dropped_after"] += 1
            return self._drop(request)
        return response

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=599)  # never reaches the client: the connection is gone

    # -- control endpoint -------------------------------------------------------------------
    async def _ledger(self, request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", str(len(self.ledger))))
        return json_response({"count": len(self.ledger), "accepted": self.accepted,
                              "entries": self.ledger[offset:offset + limit]})

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response({**self.stats, "accepted": self.accepted, "faults": asdict(self.faults),
                              "kind": self.kind, "rate": self.rate})

    async def _config(self, request: web.Request) -> web.Response:
        data = await request.json(loads=orjson.loads) if request.can_read_body else {}
        known = {f.name for f in fields(Faults)}
        unknown = set(data) - known
        if unknown:
            return json_response({"error": f"unknown setting(s): {', '.join(sorted(unknown))}"}, 400)
        for k, v in data.items():
            setattr(self.faults, k, type(getattr(self.faults, k))(v))
        return json_response(asdict(self.faults))

    async def _options(self, request: web.Request) -> web.Response:
        data = await request.json(loads=orjson.loads) if request.can_read_body else {}
        unknown = set(data) - set(self.option_types)
        if unknown:
            return json_response({"error": f"unknown option(s): {', '.join(sorted(unknown))}"}, 400)
        for k, v in data.items():
            self.options[k] = self.option_types[k](v)
        return json_response(self.options)

    async def _reset(self, request: web.Request) -> web.Response:
        """Empties the ledger, the counters and the queue of reports not yet sent; restores the options."""
        self.options = dict(self.defaults)
        while self._dlr is not None and not self._dlr.empty():
            self._dlr.get_nowait()
        self.ledger.clear()
        self.accepted = 0
        self._window.clear()
        for k in self.stats:
            self.stats[k] = 0
        return json_response({"reset": True})

    # -- delivery reports -----------------------------------------------------------------
    def report(self, method: str, url: str, payload: Any = None) -> None:
        """Queue a delivery report; a background task sends it, retrying a few times."""
        if self._dlr is not None:
            self._dlr.put_nowait((method, url, payload))

    async def _dlr_worker(self) -> None:
        assert self._dlr is not None
        while True:
            method, url, payload = await self._dlr.get()
            if self.faults.dlr_delay_ms:
                await asyncio.sleep(self.faults.dlr_delay_ms / 1000)
            ok = False
            for attempt in range(3):
                try:
                    assert self._session is not None
                    kw: dict[str, Any] = {}
                    if isinstance(payload, (bytes, str)):
                        kw["data"] = payload
                    elif payload is not None:
                        kw["data" if method == "FORM" else "json"] = payload
                    verb = "POST" if method == "FORM" else method
                    async with self._session.request(verb, url, **kw) as r:
                        ok = r.status < 300
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    break
                await asyncio.sleep(0.05 * (attempt + 1))
            self.stats["dlr_sent" if ok else "dlr_failed"] += 1

    async def _startup(self, app: web.Application) -> None:
        self._dlr = asyncio.Queue()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._dlr_tasks = [asyncio.create_task(self._dlr_worker()) for _ in range(4)]

    async def _cleanup(self, app: web.Application) -> None:
        for t in self._dlr_tasks:
            t.cancel()
        for t in self._dlr_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.add_routes([
            web.get("/_sim/ledger", self._ledger),
            web.get("/_sim/stats", self._stats),
            web.post("/_sim/config", self._config),
            web.post("/_sim/reset", self._reset),
            web.post("/_sim/options", self._options),
            *self.routes(),
        ])
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app
