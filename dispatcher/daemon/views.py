"""Read routes beside the API, behind the same key (what the operator's page reads besides the API's own):

    GET /v1/messages/{id}/events?cursor=&limit=   the message's status events, oldest first, a page at a time
                                                 (`next_cursor`: the last event id of the page; null on the last)

The events are the rows the outbox's triggers write on every status change (schema/002_events.sql), the
same ones the webhooks deliver, so the finder shows what a receiver was told, in the order it happened.
They live as long as `[daemon] retention_days` keeps them: a message older than that has none left (200,
an empty page), an id that was never a message is a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from .api import Invalid
from .outbox import Names

Handler = Callable[[web.Request], Awaitable[web.Response]]
Guard = Callable[[str, Handler], Handler]  # the API's key check and request counter around a handler
MAX_PAGE = 1000
MAX_ID = 10**18 - 1


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
            raise Invalid(400, f"unknown parameter '{k}'; known: {', '.join(known)}", code="unknown_parameter")


def event_view(r: asyncpg.Record) -> dict[str, Any]:
    """An event as the webhooks POST it (`event_id`, `status`, `code`, ...) and whether the receiver took it."""
    return {"event_id": r["id"], "id": r["outbox_id"], "status": r["status"], "code": r["code"], "error": r["error"],
            "provider": r["provider"], "message_id": r["message_id"], "at": r["at"].isoformat(),
            "webhook": {"delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None,
                        "attempts": r["attempts"]}}


class Views:
    """The read routes' statements, filled with this daemon's table names once."""

    def __init__(self, pool: asyncpg.Pool, names: Names) -> None:
        self.pool = pool
        self.events_sql = (f"SELECT id, outbox_id, status, code, error, provider, message_id, at, delivered_at, "
                           f"attempts FROM {names.events} WHERE outbox_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        self.exists_sql = f"SELECT EXISTS (SELECT 1 FROM {names.outbox} WHERE id = $1)"

    def routes(self, guard: Guard) -> list[web.RouteDef]:
        return [web.get("/v1/messages/{id}/events", guard("events", self.events))]

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
