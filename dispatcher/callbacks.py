"""The delivery-report endpoint both the daemon and a blast serve: one URL scheme, one secret check, the
provider's own parsing (`Provider.parse_report`); what to do with the reports is the caller's.

    GET|POST /dlr/{alias}/{secret}       the secret in the path (what `Provider.callback` wires in), or
    GET|POST /dlr/{alias}?secret=...     in the query, or
    POST /dlr/{alias}                    with `X-Webhook-Secret: <secret>` or
                                         `X-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`

No secret: 401; a wrong one: 403; an unknown alias (or one without a secret): 404. A callback is
answered 200 once `submit` has taken its reports (503 when it cannot, so the provider sends it again).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .providers.base import Provider
from .providers.dlr import Report

Lookup = Callable[[str], "tuple[Provider, str | None] | None"]  # alias -> (its reader, its secret)
Submit = Callable[[list[Report]], Awaitable[None]]


def payload_json(payload: dict) -> str:
    """A report's payload as JSON text PostgreSQL's jsonb accepts (it refuses the NUL character)."""
    return orjson.dumps(payload, default=str).decode().replace("\\u0000", "")


def callback_url(public: str, alias: str, secret: str) -> str:
    """Where `alias`'s reports go: what its requests carry (the secret in the path)."""
    return f"{public.rstrip('/')}/dlr/{alias}/{secret}"


def authorised(secret: str, given: str | None, signature: str | None, body: bytes) -> int | None:
    """None when the callback carries the secret (or signs its body with it); else the HTTP status."""
    key = secret.encode()
    if given:
        return None if hmac.compare_digest(given.encode(), key) else 403
    if signature:
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(signature.strip().removeprefix("sha256=").lower().encode(), expected.encode())
        return None if ok else 403
    return 401


def routes(lookup: Lookup, submit: Submit, refused: Counter[tuple[str, str]]) -> list[web.RouteDef]:
    """The endpoint's routes; `refused` counts refusals by (alias, reason: unknown, missing, wrong)."""
    async def dlr(request: web.Request) -> web.Response:
        alias = request.match_info["alias"]
        found = lookup(alias)
        if found is None or found[1] is None:
            refused[(alias if found else "?", "unknown")] += 1
            return web.Response(status=404, text="no such report endpoint\n")
        reporter, secret = found
        body = await request.read()
        given = request.match_info.get("secret") or request.query.get("secret") or request.headers.get("X-Webhook-Secret")
        status = authorised(secret, given, request.headers.get("X-Signature"), body)
        if status == 401:
            refused[(alias, "missing")] += 1
            return web.Response(status=401, text="a secret is required\n",
                                headers={"WWW-Authenticate": 'Bearer realm="delivery reports"'})
        if status is not None:
            refused[(alias, "wrong")] += 1
            return web.Response(status=403, text="wrong secret\n")
        query = {k: v for k, v in request.query.items() if k != "secret"}
        reports = reporter.parse_report(request.method, query, request.headers, body)
        try:
            await submit(reports)
        except Exception:
            return web.Response(status=503, text="cannot store the report now; send it again\n")
        return web.Response(text="OK")

    return [web.route("*", "/dlr/{alias}/{secret}", dlr), web.route("*", "/dlr/{alias}", dlr)]
