"""Errors as RFC 9457 problem documents, for every non-2xx answer of the daemon's listener, and a
request id on every answer.

`problem()` builds one: `type`, `title`, `status`, `detail`, and as extension members `code` (the
project's short name for what went wrong), `errors` (every field at fault, for a 422) and `request_id`.
The middleware turns what aiohttp raises itself (404, 405, 413...) into the same shape, and an
unexpected exception into a 500 problem that tells the client only its request id: the traceback goes
to the log once, on one line with that id. `X-Request-Id` is taken from the request when it is a sane
token, else made here, and echoed on the answer."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("dispatcher.daemon")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://dispatcher.dev/problems/"  # + code: a stable name per kind of problem
REQUEST_ID = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_KEY = web.RequestKey("request_id", str)


def problem(status: int, detail: str, *, code: str | None = None, errors: list[dict[str, Any]] | None = None,
            title: str | None = None, request: web.Request | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    """An RFC 9457 problem document as a response."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    code = code or phrase.lower().replace(" ", "_").replace("-", "_")
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title or phrase, "status": status,
                            "detail": detail, "code": code, "errors": errors or []}
    if request is not None and request.get(REQUEST_KEY):
        body["request_id"] = request[REQUEST_KEY]
    return web.Response(body=orjson.dumps(body), status=status, content_type=PROBLEM, headers=headers)


@web.middleware
async def problems(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    given = request.headers.get(REQUEST_ID, "")
    rid = given if _SANE.fullmatch(given) else uuid.uuid4().hex
    request[REQUEST_KEY] = rid
    try:
        response = await handler(request)
    except web.HTTPException as e:  # aiohttp's own: no route (404), wrong method (405), body too large (413)
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        response = problem(e.status, _detail(e, request), request=request, headers=headers)
    except Exception:
        log.exception("request %s %s failed (request id %s)", request.method, request.path, rid)
        response = problem(500, f"an unexpected error; the daemon's log has it under request id {rid}",
                           code="internal", request=request)
    response.headers[REQUEST_ID] = rid
    if response.status >= 400:  # one line per refused request, with the id the client holds; the route's
        # pattern, not the path: a delivery-report path carries its secret
        resource = request.match_info.route.resource
        log.info("%s %s -> %d (request id %s)", request.method, resource.canonical if resource else "(no route)",
                 response.status, rid)
    return response


def _detail(e: web.HTTPException, request: web.Request) -> str:
    if e.status == 404:
        return f"no such resource: {request.path}"
    if e.status == 405:
        return f"{request.method} is not allowed on {request.path}; allowed: {e.headers.get('Allow', '')}"
    if e.status == 413:
        return "the body is too large; send fewer messages per request"
    return e.text or e.reason
