"""The HTTP API on the daemon's listener: submit messages into the outbox and read them back.

    POST /v1/messages        {"messages": [{to, channel, body | template + variables, campaign,
                              provider | route, priority, not_before, key}, ...]}  (1 to 1,000)
                             -> 202 {"messages": [{"id", "key", "status"}, ...]}
    GET  /v1/messages/{id}   one message's state, delivery status included
    GET  /v1/messages?key=K  the same, by idempotency key
    GET  /v1/openapi.json    the OpenAPI 3.1 document (no key needed)

Enabled by `[http] api_key_env`; requests carry `Authorization: Bearer <key>` (401 without
it, 403 with a wrong one; compared in constant time). A request is validated whole before
anything is stored, with the same validator the claim path applies to rows applications
insert in SQL (`RowValidator.check`), so both routes accept exactly the same messages; then it is
one transaction. `key` makes a post idempotent: a key already stored answers the stored id
and status and enqueues nothing, unless the payload differs (409, with both hashes; a key
stored by SQL has no payload hash, so any payload re-posted under it answers the stored row).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import hmac
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from ..pg import explain
from .config import DaemonConfig
from .database import Connections
from .idempotency import MAX_KEY, Keys, request_hash
from .metrics import counter
from .openapi import complete, document
from .outbox import Problem, RowValidator, TableNames
from .problems import problem

MAX_MESSAGES = 1000
MAX_BODY = 4 * 1024 * 1024  # bytes; the listener's client_max_size
CHANNELS = ("sms", "whatsapp", "email", "voice", "rcs")
FIELDS = ("to", "channel", "body", "template", "variables", "campaign", "provider", "route", "priority",
          "not_before", "key")
STRINGS = ("body", "template", "campaign", "provider", "route")
STATUS = {"pending": "queued", "claimed": "sending"}  # the row's status as the API names it
_NAMED = re.compile(r"([A-Za-z0-9_.-]{1,40}):(\S{16,})")
log = logging.getLogger("dispatcher.daemon")


def api_keys(value: str) -> dict[str, bytes]:
    """The keys `[http] api_key_env` holds, by name: whitespace-separated, each `name:key` or a bare key
    (named `key1`, `key2`... by position), so a new key can be given out before the old one is removed."""
    out: dict[str, bytes] = {}
    for i, item in enumerate(value.split(), 1):
        m = _NAMED.fullmatch(item)
        name, key = (m.group(1), m.group(2)) if m else (f"key{i}", item)
        out[name] = key.encode()
    return out


class Invalid(Exception):
    """A request refused before anything was stored: its HTTP status, a code, and every error found."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.code = code

    def response(self, request: web.Request | None = None) -> web.Response:
        return problem(self.status, self.message, code=self.code, errors=self.errors, request=request)


class _InFlight(Invalid):
    """A 409 that asks the client to come back in a second."""

    def response(self, request: web.Request | None = None) -> web.Response:
        return problem(self.status, self.message, code=self.code, request=request, headers={"Retry-After": "1"})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(errors: list[dict[str, Any]], index: int | None, field: str, code: str, message: str) -> None:
    path = "messages" if index is None else f"messages[{index}]"
    errors.append({"index": index, "field": f"{path}.{field}" if field else path, "code": code, "message": message})


def _unknown(name: str) -> str:
    near = difflib.get_close_matches(name, FIELDS, n=1)
    return f"unknown field '{name}'" + (f"; did you mean '{near[0]}'?" if near else f"; known: {', '.join(FIELDS)}")


def payload_hash(m: dict[str, Any]) -> str:
    """What a key stands for: the message without its key and id, every field present (an omitted channel
    is 'sms', others null), canonical JSON (sorted keys), so field order and spelled-out defaults do not
    make another payload."""
    return hashlib.sha256(orjson.dumps({k: v for k, v in m.items() if k not in ("key", "id")},
                                       option=orjson.OPT_SORT_KEYS)).hexdigest()


class Api:
    """Validation, the insert and the look-ups; counts requests by route and status for /metrics."""

    def __init__(self, cfg: DaemonConfig, pool: Connections, names: TableNames, validator: RowValidator,
                 listing: Callable[[web.Request], Awaitable[web.Response]] | None = None) -> None:
        assert cfg.api_key is not None
        self.cfg = cfg
        self.pool = pool
        self.validator = validator
        self.keys = api_keys(cfg.api_key)
        self.used: Counter[str] = Counter()  # requests by API key name (the name is logged once when first used)
        self.idempotency = Keys(pool, names.table)
        self.requests: Counter[tuple[str, int]] = Counter()  # (route, status)
        self.accepted = 0
        self.duplicates = 0
        self.listing = listing  # GET /v1/messages without ?key (campaigns.Control.list_messages)
        t = names.outbox
        self.insert_sql = f"""
            INSERT INTO {t} (id, key, recipient, channel, provider, route, campaign, body, template, variables,
                             priority, not_before, payload_hash)
            SELECT m.id, m.key, m.to, m.channel, m.provider, m.route, m.campaign, m.body, m.template,
                   coalesce(m.variables, '{{}}'), coalesce(m.priority, 0), coalesce(m.not_before, now()), m.hash
            FROM jsonb_to_recordset($1::jsonb) AS m(id bigint, key text, "to" text, channel text, provider text,
                route text, campaign text, body text, template text, variables jsonb, priority smallint,
                not_before timestamptz, hash text)
            ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
            RETURNING id"""
        self.ids_sql = f"SELECT array_agg(nextval(pg_get_serial_sequence('{names.table}', 'id'))) " \
                       "FROM generate_series(1, $1)"
        self.by_key_sql = f"SELECT id, key, status, payload_hash FROM {t} WHERE key = ANY($1::text[])"
        self.row_sql = f"""
            SELECT id, key, status, recipient, channel, campaign, coalesce(sent_via, provider) AS provider,
                   provider_message_id, sent_to, parts, code, error, attempts, priority, created_at, not_before,
                   claimed_at, finished_at, delivery_status, delivery_at
            FROM {t} WHERE """

    def collect(self) -> Iterator[Metric]:
        """/metrics: requests by route and status, messages queued or already stored."""
        yield counter("dispatcher_api_requests", "API requests by route and status", ["route", "status"], self.requests)
        c = CounterMetricFamily("dispatcher_api_messages", "Messages posted, queued or already stored",
                                labels=["outcome"])
        c.add_metric(["queued"], self.accepted)
        c.add_metric(["duplicate"], self.duplicates)
        yield c

    # -- HTTP ---------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        doc = orjson.dumps(complete(document()))

        async def openapi(request: web.Request) -> web.Response:
            return web.Response(body=doc, content_type="application/json")

        return [web.post("/v1/messages", self._guard("post", self.post_once)),
                web.get("/v1/messages", self._guard("lookup", self.by_key)),
                web.get("/v1/messages/{id}", self._guard("get", self.by_id)),
                web.get("/v1/openapi.json", openapi)]

    def guard(self, name: str, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Any:
        """`handler` behind the API key, its errors answered and its requests counted (campaigns.py too)."""
        return self._guard(name, handler)

    def _guard(self, name: str, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Any:
        async def guarded(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization", "")
            scheme, _, given = auth.partition(" ")
            if not auth or scheme.lower() != "bearer" or not given.strip():
                response = problem(401, "an API key is required: Authorization: Bearer <key>", code="unauthorized",
                                   request=request, headers={"WWW-Authenticate": 'Bearer realm="dispatcher"'})
            elif (who := self._who(given.strip().encode())) is None:
                response = problem(403, "wrong API key", code="forbidden", request=request)
            else:
                if not self.used[who]:
                    log.info("API key '%s' in use", who)
                self.used[who] += 1
                try:
                    _text_params(request)
                    response = await handler(request)
                except Invalid as e:
                    response = e.response(request)
                except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError,
                        asyncpg.DeadlockDetectedError, TimeoutError) as e:
                    response = problem(503, f"database: {explain(e, self.cfg.dsn)}; try again", code="unavailable",
                                       request=request, headers={"Retry-After": "1"})
            self.requests[(name, response.status)] += 1
            return response
        return guarded

    def _who(self, given: bytes) -> str | None:
        """The name of the API key given, comparing with every key in constant time."""
        found = None
        for name, key in self.keys.items():
            if hmac.compare_digest(given, key):
                found = name
        return found

    async def post_once(self, request: web.Request) -> web.Response:
        """POST /v1/messages under an `Idempotency-Key` header (idempotency.py): the first answer, replayed."""
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return await self.post(request)
        if not 1 <= len(key) <= MAX_KEY:
            raise Invalid(400, f"Idempotency-Key must be 1 to {MAX_KEY} characters", code="bad_idempotency_key")
        if not text_safe(key):
            raise Invalid(422, "Idempotency-Key holds a character PostgreSQL text cannot hold", code="bad_characters")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return await self.post(request)  # the 413, not stored
        digest = request_hash(request.method, request.path, raw)
        stored = await self.idempotency.claim(key, digest)
        if stored is not None:
            if stored.status is None:
                raise _InFlight(409, "a request with this Idempotency-Key is still being handled; try again",
                                code="idempotency_key_in_flight")
            if stored.request_hash != digest:
                raise Invalid(422, "this Idempotency-Key was used with another request body; use a new key",
                              code="idempotency_key_reused")
            headers = {"Idempotent-Replayed": "true"} | ({"Location": stored.location} if stored.location else {})
            return web.Response(body=stored.body, status=stored.status, headers=headers,
                                content_type=stored.content_type)
        try:
            try:
                response = await self.post(request)
            except Invalid as e:
                response = e.response(request)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.idempotency.drop(key)
            raise
        if response.status >= 500:
            await self.idempotency.drop(key)
        else:
            assert isinstance(response.body, bytes)
            await self.idempotency.answer(key, response.status, response.content_type,
                                          response.headers.get("Location"), response.body)
        return response

    async def post(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise Invalid(415, f"Content-Type must be application/json, not '{request.content_type}'")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Invalid(413, f"the body is larger than {MAX_BODY:,} bytes; send fewer messages per request") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise Invalid(400, f"malformed JSON: {e}", code="malformed_json") from None
        messages = self.validate(data, request.headers.get("Idempotency-Key"))
        out = await self.store(messages)
        response = _json({"messages": out}, 202)
        if len(out) == 1:
            response.headers["Location"] = f"/v1/messages/{out[0]['id']}"
        return response

    async def by_id(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise Invalid(400, f"'{raw}' is not a message id (a positive whole number)")
        return await self._one("id = $1", int(raw), f"no message {raw}")

    async def by_key(self, request: web.Request) -> web.Response:
        key = request.query.get("key")
        if "key" not in request.query and self.listing is not None:
            return await self.listing(request)
        if not key:
            raise Invalid(400, "give ?key=K (or GET /v1/messages/{id})", code="key_required")
        if not text_safe(key):
            raise Invalid(422, "key holds a character PostgreSQL text cannot hold (U+0000 or a lone surrogate)",
                          code="bad_characters", errors=[{"index": None, "field": "key", "code": "bad_characters",
                                                          "message": "the key holds U+0000 or a lone surrogate"}])
        return await self._one("key = $1", key, f"no message with key '{key}'")

    async def _one(self, where: str, arg: Any, missing: str) -> web.Response:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(self.row_sql + where, arg)
        if row is None:
            raise Invalid(404, missing, code="not_found")
        return _json(view(row))

    # -- validation ------------------------------------------------------------------------------
    def validate(self, data: Any, idempotency_key: str | None = None) -> list[dict[str, Any]]:
        """The messages, each with its payload hash, or Invalid with every error of the request.
        An `Idempotency-Key` header keys the messages that have no `key` of their own: the one message
        of a request by the header itself, the Nth of several by `header/N`."""
        if not isinstance(data, dict):
            raise Invalid(400, "the body must be a JSON object {\"messages\": [...]}", code="not_an_object")
        errors: list[dict[str, Any]] = []
        for k in data:
            if k != "messages":
                near = " ; did you mean 'messages'?" if difflib.get_close_matches(k, ["messages"], n=1) else ""
                errors.append({"index": None, "field": k, "code": "unknown_field",
                               "message": f"unknown field '{k}'{near}".replace(" ;", ";")})
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            errors.append({"index": None, "field": "messages", "code": "required",
                           "message": "a list of 1 to 1,000 messages is required"})
            raise Invalid(422, "invalid request", errors)
        if len(messages) > MAX_MESSAGES:
            _error(errors, None, "", "too_many", f"{len(messages):,} messages; at most {MAX_MESSAGES:,} in one request")
            raise Invalid(422, "invalid request", errors)
        out = []
        check = self.validator.check
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                _error(errors, i, "", "not_an_object", "each message must be a JSON object")
                continue
            before = len(errors)
            for k in m:
                if k not in FIELDS:
                    _error(errors, i, k, "unknown_field", _unknown(k))
            to = m.get("to")
            if not isinstance(to, str) or not to.strip():
                _error(errors, i, "to", "required", "a recipient (phone number or email address) is required")
            channel = m.get("channel", "sms")
            if channel not in CHANNELS:
                _error(errors, i, "channel", "unknown_channel",
                       f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
            for k in STRINGS:
                if m.get(k) is not None and not isinstance(m[k], str):
                    _error(errors, i, k, "type", f"must be a string, not {type(m[k]).__name__}")
            variables = m.get("variables")
            if variables is not None and not isinstance(variables, dict):
                _error(errors, i, "variables", "type", "must be an object of template values")
            priority = m.get("priority")
            if priority is not None and (type(priority) is not int or not -32768 <= priority <= 32767):
                _error(errors, i, "priority", "type", f"must be a whole number from -32768 to 32767, not {priority!r}")
            not_before = m.get("not_before")
            if not_before is not None and not _timestamp(not_before):
                _error(errors, i, "not_before", "format",
                       f"{not_before!r} is not an RFC 3339 time with a zone, e.g. 2025-01-31T09:00:00+01:00")
            key = m.get("key")
            if key is None and idempotency_key:
                key = idempotency_key if len(messages) == 1 else f"{idempotency_key}/{i}"
            if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
                _error(errors, i, "key", "type", "must be a string of 1 to 200 characters")
            for field, bad in unsafe_fields(m):
                _error(errors, i, field, "bad_characters", f"{bad} holds U+0000 or a lone surrogate, which PostgreSQL "
                       "text cannot hold (the blast refuses it too)")
            if len(errors) > before:
                continue
            got = check(to, channel, m.get("provider"), m.get("route"), m.get("campaign"), m.get("body"),
                        m.get("template"), variables if variables is not None else {})
            if type(got) is Problem:
                _error(errors, i, got.field, got.code, got.message)
                continue
            row = {"id": None, "key": key, "to": to, "channel": channel, "provider": m.get("provider"),
                   "route": m.get("route"), "campaign": m.get("campaign"), "body": m.get("body"),
                   "template": m.get("template"), "variables": variables, "priority": priority,
                   "not_before": not_before}
            row["hash"] = payload_hash(row) if key is not None else None
            out.append(row)
        if errors:
            raise Invalid(422, f"{len({e['index'] for e in errors})} message(s) refused; nothing was stored", errors)
        return out

    # -- storing --------------------------------------------------------------------------------
    async def store(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One transaction: ids drawn in order, new keys inserted, stored keys answered (or 409)."""
        first: dict[str, int] = {}  # key -> index of its first message in this request
        conflicts: list[dict[str, Any]] = []
        fresh: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            k = m["key"]
            if k is None:
                fresh.append(m)
            elif k in first:
                if messages[first[k]]["hash"] != m["hash"]:
                    conflicts.append(_conflict(i, k, messages[first[k]]["hash"], m["hash"]))
            else:
                first[k] = i
                fresh.append(m)
        if conflicts:
            raise Invalid(409, "a key was posted twice with different payloads; nothing was stored", conflicts)
        async with self.pool.acquire() as conn, conn.transaction():
            ids = await conn.fetchval(self.ids_sql, len(fresh))
            for m, oid in zip(fresh, ids, strict=True):
                m["id"] = oid
            # keys inserted in key order: concurrent requests with the same keys wait on each other, never deadlock
            inserted = {r[0] for r in await conn.fetch(self.insert_sql, sorted(fresh, key=lambda m: m["key"] or ""))}
            stored: dict[str, Any] = {}
            taken = [m["key"] for m in fresh if m["id"] not in inserted]
            if taken:
                stored = {r["key"]: r for r in await conn.fetch(self.by_key_sql, taken)}
                for m in fresh:
                    if m["id"] not in inserted:
                        r = stored[m["key"]]
                        if r["payload_hash"] is not None and r["payload_hash"] != m["hash"]:
                            conflicts.append(_conflict(first[m["key"]], m["key"], r["payload_hash"], m["hash"]))
                if conflicts:
                    raise Invalid(409, "a key is already stored with a different payload; nothing was stored",
                                  conflicts)
        self.accepted += len(inserted)
        self.duplicates += len(messages) - len(inserted)
        out = []
        for m in messages:
            k = m["key"]
            if k is not None and k in stored:
                r = stored[k]
                out.append({"id": r["id"], "key": k, "status": STATUS.get(r["status"], r["status"]), "duplicate": True})
            elif k is not None:
                src = messages[first[k]]
                out.append({"id": src["id"], "key": k, "status": "queued", "duplicate": src is not m})
            else:
                out.append({"id": m["id"], "key": None, "status": "queued", "duplicate": False})
        return out


def _conflict(index: int, key: str, stored: str, posted: str) -> dict[str, Any]:
    return {"index": index, "field": f"messages[{index}].key", "code": "key_conflict",
            "message": f"key '{key}' stands for another payload (sha256 {stored}); this one is sha256 {posted}",
            "stored_hash": stored, "posted_hash": posted}


def _text_params(request: web.Request) -> None:
    """Every route's query and path parameters are text PostgreSQL can hold, or the request is a 422."""
    for where, params in (("query", request.query), ("path", request.match_info)):
        for k, v in params.items():
            if not (text_safe(k) and text_safe(v)):
                raise Invalid(422, f"{where} parameter '{k}' holds a character PostgreSQL text cannot hold "
                              "(U+0000 or a lone surrogate)", code="bad_characters",
                              errors=[{"index": None, "field": k, "code": "bad_characters",
                                       "message": f"the {where} parameter holds U+0000 or a lone surrogate"}])


def text_safe(v: str) -> bool:
    """PostgreSQL text (and jsonb) holds every character but U+0000 and lone surrogates (not UTF-8;
    a query string or header may carry them, decoded with surrogateescape)."""
    if "\x00" in v:
        return False
    if v.isascii():
        return True
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unsafe_fields(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, what) of each string in a message, its variables' names and values included, that
    PostgreSQL cannot store."""
    found = []
    for k, v in m.items():
        if isinstance(v, str) and not text_safe(v):
            found.append((k, f"'{k}'"))
    variables = m.get("variables")
    if isinstance(variables, dict):
        for name, v in variables.items():
            if _holds_nul(name) or _holds_nul(v):
                found.append(("variables", f"variable '{name.replace(chr(0), '?')}'"))
    return found


def _holds_nul(v: Any) -> bool:
    if isinstance(v, str):
        return not text_safe(v)
    if isinstance(v, dict):
        return any(_holds_nul(k) or _holds_nul(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_holds_nul(x) for x in v)
    return False


def _timestamp(v: Any) -> bool:
    if not isinstance(v, str) or len(v) < 20 or "T" not in v.upper():
        return False
    try:
        t = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return t.tzinfo is not None


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def view(r: asyncpg.Record) -> dict[str, Any]:
    """A row as the API shows it (the shape of the OpenAPI `Message` schema)."""
    return {"id": r["id"], "key": r["key"], "status": STATUS.get(r["status"], r["status"]), "to": r["recipient"],
            "channel": r["channel"], "campaign": r["campaign"], "provider": r["provider"],
            "message_id": r["provider_message_id"], "sent_to": r["sent_to"], "parts": r["parts"], "code": r["code"],
            "error": r["error"], "attempts": r["attempts"], "priority": r["priority"],
            "created_at": _iso(r["created_at"]), "not_before": _iso(r["not_before"]),
            "claimed_at": _iso(r["claimed_at"]), "finished_at": _iso(r["finished_at"]),
            "delivery": {"status": r["delivery_status"], "at": _iso(r["delivery_at"])}}
