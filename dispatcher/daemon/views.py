"""Read routes beside the API, behind the same key (what the operator's page reads besides the API's own):

    GET /v1/messages/{id}/events?cursor=&limit=   the message's status events, oldest first, a page at a time
                                                 (`next_cursor`: the last event id of the page; null on the last)
    GET /v1/throughput                           this worker's rows finished a second, sent and failed, over
                                                 the last 5 minutes (the page's chart: whole from its first look)

The events are the rows the outbox's triggers write on every status change (schema/002_events.sql), the
same ones the webhooks deliver, so the finder shows what a receiver was told, in the order it happened.
They live as long as `[daemon] retention_days` keeps them: a message older than that has none left (200,
an empty page), an id that was never a message is a 404. The throughput is counted from the sink's own
counts (what /metrics' dispatcher_messages_total shows), noted after each write: no task, no query.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from .api import Invalid
from .database import Connections
from .outbox import TableNames

Handler = Callable[[web.Request], Awaitable[web.Response]]
Guard = Callable[[str, Handler], Handler]  # the API's key check and request counter around a handler
MAX_PAGE = 1000
MAX_ID = 10**18 - 1
SPAN = 300  # seconds of throughput kept
Counts = Callable[[], Mapping[tuple[str, str, str], int]]  # (provider, status, code) -> rows so far


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def whole(raw: str, what: str, lowest: int = 0) -> int:
    """A query or path parameter that must be a whole number from `lowest` to 10^18 - 1, or a 400."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < lowest:
        raise Invalid(400, f"{what}={raw!r} is not a whole number from {lowest} to {MAX_ID}", code="bad_parameter")
    return int(raw)


def only(request: web.Request, known: tuple[str, ...]) -> None:
    for k in request.query:
        if k not in known:
            raise Invalid(400, f"unknown parameter '{k}'; " + (f"known: {', '.join(known)}" if known else
                                                                "this route takes none"), code="unknown_parameter")


def event_view(r: asyncpg.Record) -> dict[str, Any]:
    """An event as the webhooks POST it (`event_id`, `status`, `code`, ...) and whether the receiver took it."""
    return {"event_id": r["id"], "id": r["outbox_id"], "status": r["status"], "code": r["code"], "error": r["error"],
            "provider": r["provider"], "message_id": r["message_id"], "at": r["at"].isoformat(),
            "webhook": {"delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None,
                        "attempts": r["attempts"]}}


class Throughput:
    """This worker's finished rows a second, from its running totals: `note()` after each write keeps the
    totals of that second (at most one sample a second, SPAN seconds of them)."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.samples: deque[tuple[int, int, int]] = deque()  # (epoch second, sent so far, failed so far)
        self.before = (0, 0)  # the totals as they were before the oldest sample kept

    def _totals(self) -> tuple[int, int]:
        sent = failed = 0
        for (_, status, _), n in self.counts().items():
            if status == "sent":
                sent += n
            else:  # failed and rejected
                failed += n
        return sent, failed

    def _prune(self, now: int) -> None:
        while self.samples and self.samples[0][0] < now - SPAN:
            _, sent, failed = self.samples.popleft()
            self.before = (sent, failed)

    def note(self, now: float | None = None) -> None:
        sec = int(time.time() if now is None else now)
        sample = (sec, *self._totals())
        if self.samples and self.samples[-1][0] == sec:
            self.samples[-1] = sample
        else:
            self.samples.append(sample)
        self._prune(sec)

    def series(self, now: float | None = None) -> dict[str, Any]:
        """Each whole second of the last SPAN (the current, unfinished one left out), oldest first."""
        end = int(time.time() if now is None else now) - 1
        self._prune(end + 1)
        sent: list[int] = []
        failed: list[int] = []
        last = self.before
        it = iter(self.samples)
        nxt = next(it, None)
        for sec in range(end - SPAN + 1, end + 1):
            total = last
            while nxt is not None and nxt[0] <= sec:
                total = (nxt[1], nxt[2])
                nxt = next(it, None)
            sent.append(total[0] - last[0])
            failed.append(total[1] - last[1])
            last = total
        return {"every": 1, "until": dt.datetime.fromtimestamp(end + 1, dt.UTC).isoformat(), "sent": sent,
                "failed": failed}


class Views:
    """The read routes' statements, filled with this daemon's table names once."""

    def __init__(self, pool: Connections, names: TableNames, throughput: Throughput) -> None:
        self.pool = pool
        self.throughput = throughput
        self.events_sql = (f"SELECT id, outbox_id, status, code, error, provider, message_id, at, delivered_at, "
                           f"attempts FROM {names.events} WHERE outbox_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        self.exists_sql = f"SELECT EXISTS (SELECT 1 FROM {names.outbox} WHERE id = $1)"

    def routes(self, guard: Guard) -> list[web.RouteDef]:
        return [web.get("/v1/messages/{id}/events", guard("events", self.events)),
                web.get("/v1/throughput", guard("throughput", self.rates))]

    async def rates(self, request: web.Request) -> web.Response:
        only(request, ())
        return _json(self.throughput.series())

    async def events(self, request: web.Request) -> web.Response:
        oid = whole(request.match_info["id"], "id", 1)
        only(request, ("cursor", "limit"))
        q = request.query
        after = whole(q.get("cursor", "0"), "cursor")
        limit = whole(q.get("limit", "100"), "limit", 1)
        if limit > MAX_PAGE:
            raise Invalid(400, f"limit must be from 1 to {MAX_PAGE}, not {limit}", code="bad_parameter")
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(self.events_sql, oid, after, limit + 1)
            if not rows and not await conn.fetchval(self.exists_sql, oid):
                raise Invalid(404, f"no message {oid}", code="not_found")
        page = rows[:limit]
        return _json({"events": [event_view(r) for r in page],
                      "next_cursor": str(page[-1]["id"]) if len(rows) > limit else None})
