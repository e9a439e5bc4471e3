"""Control of what is queued, over HTTP (registered beside the API, behind the same key):

    POST /v1/messages/{id}/cancel                  200 the message, now `cancelled`, while it is queued;
                                                   409 with its status otherwise (on the wire: never cancelled)
    GET  /v1/messages?campaign=&status=&since=&limit=&cursor=&order=
                                                   a page of messages by id (order=desc: newest first),
                                                   and `next_cursor` for the next
    GET  /v1/campaigns                             every campaign: state, weight, counts by status, rate, cost
    GET  /v1/campaigns/{name}                      one campaign
    PATCH /v1/campaigns/{name}  {"weight": 3}     its share of a provider against the other active ones
                                                   (POST the same); the campaign after it
    POST /v1/campaigns/{name}/pause | resume | cancel | retry-failed

The state lives in the outbox's campaigns table (schema/003_control.sql), which every claim of every
daemon reads: a pause is obeyed by the next claim of each of them, and the same UPDATE from SQL does
the same. A cancel turns the campaign's queued rows into `cancelled` in the statement that cancels it.
The rows the daemons had claimed and not put on the wire go back at the table's NOTIFY (withdrawal.py).
A pause or cancel over HTTP answers once that is done (at most SETTLE seconds): once every claim that
may have read the campaign as active has ended and no row of it is claimed, so after the answer nothing
of the campaign goes on the wire, and its counts are final but for `sending` rows still on the wire.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from .api import Invalid, view
from .config import DaemonConfig
from .database import Connections
from .outbox import OutboxQueries
from .problems import problem

Handler = Callable[[web.Request], Awaitable[web.Response]]
Guard = Callable[[str, Handler], Handler]  # the API's key check and request counter around a handler
STATES = {"pause": "paused", "resume": "active", "cancel": "cancelled"}
COUNTED = ("queued", "sending", "sent", "failed", "rejected", "cancelled", "delivered", "undelivered")
API_STATUS = {"queued": "pending", "sending": "claimed", "sent": "sent", "failed": "failed",
              "rejected": "rejected", "cancelled": "cancelled"}  # the API's status names -> the table's
ROW_STATUS = {v: k for k, v in API_STATUS.items()}
MAX_PAGE = 1000
MAX_ID = 10**18  # past every id a cursor can name (18 digits): where a listing newest first starts
RATE_WINDOW = 60.0  # seconds over which a campaign's rate is measured
MAX_WEIGHT = 1000  # the campaigns table's CHECK
SETTLE = 5.0  # seconds a pause or cancel waits at most for the daemons to take their claimed rows back


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class Control:
    """Cancel, pause, resume, retry, and the listings; each one statement on the outbox's tables."""

    def __init__(self, cfg: DaemonConfig, pool: Connections, store: OutboxQueries) -> None:
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.row_sql = store.sql["list_messages"].split("WHERE", 1)[0] + "WHERE id = $1"
        # each provider's `price` (per SMS part, else per message): the blast's --dry-run prices with it too
        self.prices = {alias: spec.settings.price for alias, spec in cfg.providers.items()}

    def routes(self, guard: Guard) -> list[web.RouteDef]:
        return [web.post("/v1/messages/{id}/cancel", guard("cancel", self.cancel_message)),
                web.get("/v1/campaigns", guard("campaigns", self.campaigns)),
                web.get("/v1/campaigns/{name}", guard("campaign", self.campaign)),
                web.patch("/v1/campaigns/{name}", guard("campaign_set", self.update)),
                web.post("/v1/campaigns/{name}", guard("campaign_set", self.update)),
                web.post("/v1/campaigns/{name}/{action}", guard("control", self.act))]

    # -- messages ---------------------------------------------------------------------------------
    async def cancel_message(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise Invalid(400, f"'{raw}' is not a message id (a positive whole number)", code="bad_id")
        oid = int(raw)
        async with self.pool.acquire() as conn:
            done = await self.store.cancel_message(conn, oid)
            row = await conn.fetchrow(self.row_sql, oid)
        if row is None:
            return problem(404, f"no message {oid}", code="not_found", request=request)
        if not done:
            status = view(row)["status"]
            return problem(409, f"message {oid} is {status}, not queued: it cannot be cancelled", code="not_queued",
                           errors=[{"field": "status", "code": status, "message": f"the message is {status}"}],
                           request=request)
        return _json(view(row))

    async def list_messages(self, request: web.Request) -> web.Response:
        """A page of messages oldest first after `cursor`, each exactly once while new ones arrive (in the
        order of the transactions that inserted them, then by id: queries.sql); with order=desc newest first
        by id, before `cursor`. `next_cursor` is null on the last page."""
        q = request.query
        for k in q:
            if k not in ("campaign", "status", "since", "limit", "cursor", "order"):
                raise Invalid(400, f"unknown parameter '{k}'; known: campaign, status, since, limit, cursor, "
                              "order, key", code="unknown_parameter")
        order = q.get("order") or "asc"
        if order not in ("asc", "desc"):
            raise Invalid(400, f"order={order!r}: asc or desc", code="bad_parameter")
        statuses = None
        if q.get("status"):
            names = q["status"].split(",")
            bad = [s for s in names if s not in API_STATUS]
            if bad:
                raise Invalid(400, f"unknown status '{bad[0]}'; known: {', '.join(API_STATUS)}", code="bad_parameter")
            statuses = [API_STATUS[s] for s in names]
        since = None
        if q.get("since"):
            try:
                since = dt.datetime.fromisoformat(q["since"].replace("Z", "+00:00"))
            except ValueError:
                raise Invalid(400, f"since={q['since']!r} is not an RFC 3339 time", code="bad_parameter") from None
            if since.tzinfo is None:
                raise Invalid(400, f"since={q['since']!r} has no zone (e.g. 2025-01-31T09:00:00Z)", code="bad_parameter")
        limit = _whole(q.get("limit", "100"), "limit")
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(400, f"limit must be from 1 to {MAX_PAGE}, not {limit}", code="bad_parameter")
        xid, dash, raw = q["cursor"].rpartition("-") if "cursor" in q else ("", "", "")
        after = _whole(raw, "cursor") if "cursor" in q else 0 if order == "asc" else MAX_ID
        if dash and (not xid.isascii() or not xid.isdigit() or len(xid) > 20):  # newest first: by its id
            raise Invalid(400, f"cursor={q['cursor']!r} is not a next_cursor of this listing", code="bad_parameter")
        async with self.pool.acquire() as conn:
            rows = await self.store.list_messages(conn, after, q.get("campaign"), statuses, since, limit + 1,
                                                  desc=order == "desc", after_xid=xid or None)
        page = rows[:limit]
        more = len(rows) > limit
        last = page[-1] if page else None
        after_last = None if last is None else str(last["id"]) if order == "desc" else f"{last['xid']}-{last['id']}"
        out = {"messages": [view(r) for r in page], "next_cursor": after_last if more else None}
        if order == "asc":
            out["resume_cursor"] = after_last
        return _json(out)

    # -- campaigns ------------------------------------------------------------------------------------
    def _known(self, name: str) -> None:
        if name not in self.cfg.campaigns:
            raise Invalid(404, f"no campaign '{name}' in the daemon's configuration", code="unknown_campaign")

    async def summaries(self, conn: asyncpg.Connection, name: str | None = None) -> list[dict[str, Any]]:
        """Each campaign's state, weight, rows by status, rate (sent a second over the last minute) and cost
        (sent and delivered units times the price of the provider that took them)."""
        states = await self.store.campaign_states(conn)
        counts: dict[str, dict[str, int]] = {}
        recent: dict[str, int] = {}
        cost: dict[str, dict[str, float]] = {}
        for r in await self.store.campaign_counts(conn, name, RATE_WINDOW):
            c = counts.setdefault(r["campaign"], dict.fromkeys(COUNTED, 0))
            c[ROW_STATUS.get(r["status"], r["status"])] += r["n"]
            c["delivered"] += r["delivered"]
            c["undelivered"] += r["undelivered"]
            recent[r["campaign"]] = recent.get(r["campaign"], 0) + r["recent"]
            spent = cost.setdefault(r["campaign"], {"sent": 0.0, "delivered": 0.0})
            price = self.prices.get(r["sent_via"], 0.0)
            spent["sent"] += r["units"] * price
            spent["delivered"] += r["delivered_units"] * price
        names = [name] if name is not None else sorted(set(self.cfg.campaigns) | (set(states) - {""}))
        out = []
        for n in names:
            s = states.get(n)
            out.append({"name": n, "state": s["state"] if s else "active", "weight": s["weight"] if s else 1,
                        "updated_at": s["updated_at"].isoformat() if s else None,
                        "counts": counts.get(n, dict.fromkeys(COUNTED, 0)),
                        "rate": round(recent.get(n, 0) / RATE_WINDOW, 3),
                        "cost": {k: round(v, 6) for k, v in cost.get(n, {"sent": 0.0, "delivered": 0.0}).items()}})
        return out

    async def campaigns(self, request: web.Request) -> web.Response:
        async with self.pool.acquire() as conn:
            return _json({"campaigns": await self.summaries(conn)})

    async def campaign(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self._known(name)
        async with self.pool.acquire() as conn:
            return _json((await self.summaries(conn, name))[0])

    async def update(self, request: web.Request) -> web.Response:
        """A campaign's weight: `{"weight": N}`, a whole number from 1 to MAX_WEIGHT."""
        name = request.match_info["name"]
        self._known(name)
        data = await _object(request)
        unknown = [k for k in data if k != "weight"]
        if unknown:
            raise Invalid(422, f"unknown field '{unknown[0]}'; known: weight", code="invalid",
                          errors=[{"field": k, "code": "unknown_field", "message": "not a campaign field"} for k in unknown])
        weight = data.get("weight")
        if type(weight) is float and weight.is_integer():
            weight = int(weight)
        if type(weight) is not int or not 1 <= weight <= MAX_WEIGHT:
            raise Invalid(422, f"weight must be a whole number from 1 to {MAX_WEIGHT}", code="invalid",
                          errors=[{"field": "weight", "code": "required" if weight is None else "bad_weight",
                                   "message": f"a whole number from 1 to {MAX_WEIGHT}"}])
        async with self.pool.acquire() as conn:
            await self.store.set_weight(conn, name, weight)
            return _json((await self.summaries(conn, name))[0])

    async def act(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if action not in (*STATES, "retry-failed"):
            raise Invalid(404, f"no action '{action}'; known: pause, resume, cancel, retry-failed", code="not_found")
        self._known(name)
        async with self.pool.acquire() as conn:
            extra: dict[str, Any] = {}
            if action == "retry-failed":
                extra["retried"] = await self.store.retry_failed(conn, campaign=name)
            else:
                if action == "cancel":  # paused first, in a statement of its own: obeyed at once, while the
                    await self.store.set_campaign(conn, name, "paused")  # cancel's own statement runs
                await self.store.set_campaign(conn, name, STATES[action])
                if action != "resume":
                    await self._settled(conn, name)
            summary = (await self.summaries(conn, name))[0]
        return _json({**summary, **extra})

    async def _settled(self, conn: asyncpg.Connection, name: str) -> bool:
        """Until every claim that may have read campaign `name` as active has ended and no row of it is
        claimed (the daemons took back what was not on the wire; what was has its answer); False after
        SETTLE seconds (a row on the wire of a slow provider, or a long transaction elsewhere)."""
        running = await self.store.running(conn)
        deadline = time.monotonic() + SETTLE
        while await self.store.settling(conn, running, name):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)  # the daemons' work, seen in the table: no event to wait on
        return True


async def _object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (415, 413, 400 otherwise)."""
    if request.content_type != "application/json":
        raise Invalid(415, f"Content-Type must be application/json, not '{request.content_type}'")
    try:
        data = orjson.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        raise Invalid(413, "the body is too large") from None
    except orjson.JSONDecodeError as e:
        raise Invalid(400, f"malformed JSON: {e}", code="malformed_json") from None
    if type(data) is not dict:
        raise Invalid(400, "the body must be a JSON object {\"weight\": N}", code="not_an_object")
    return data


def _whole(raw: str, what: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit(), and int() refuses it
        raise Invalid(400, f"{what}={raw!r} is not a whole number", code="bad_parameter")
    return int(raw)
