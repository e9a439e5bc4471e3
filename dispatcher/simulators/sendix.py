"""Sendix simulator: the proposed Sendix v1 contract (docs/providers/sendix.md), standing alone.

Bearer tokens from `POST /api/v1/auth/token` with an expiry (`token_ttl` seconds), the
documented problem bodies (400 ValidationError with an `Errors` map, 401 "No valid token
provided", 403 for an API user without API permission, 429 past 100 requests in any one
second, token calls included), a `TraceId` header on every answer, one message per
`POST /api/v1/messages`, message lookup, the group / contacts / campaign flow, and a JSON
webhook per message to `webhook_url` (status `Delivered`, or `Failed` for numbers ending
in 0000, which stand for numbers without WhatsApp).

Settings: constructor keywords (`dispatcher simulate --set sendix.token_ttl=2`) or, live,
`POST /_sim/options {"token_ttl": .., "webhook_url": ..}`; `/_sim/reset` restores them.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from .base import Simulator, json_response

_PHONE = re.compile(r"[1-9][0-9]{7,14}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z]{2})?")
UNDELIVERABLE = "0000"  # numbers ending so have no WhatsApp: their webhook says Failed


def _templates(spec: str) -> dict[str, int]:
    """`name:parameters,name:parameters` -> {name: number of parameters}."""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, n = item.partition(":")
        out[name] = int(n or 0)
    return out


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class SendixSimulator(Simulator):
    kind = "sendix"
    option_types = {"token_ttl": float, "webhook_url": str}
    default_rate = 100.0
    default_max_batch = 1000  # contacts per upload to a group

    def __init__(self, *args: Any, username: str = "demo", password: str = "demo-secret",
                 viewer_username: str = "viewer", viewer_password: str = "viewer-secret",
                 token_ttl: float | str = 3600.0, webhook_url: str = "",
                 templates: str = "promo:2,welcome:1,reminder:0,invoice:2,otp:1", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.users = {username: (password, True), viewer_username: (viewer_password, False)}  # (password, API permission)
        self.templates = _templates(templates)
        self.defaults = {"token_ttl": float(token_ttl), "webhook_url": webhook_url}
        self.options = dict(self.defaults)
        self.tokens: dict[str, tuple[str, float]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.campaigns: dict[str, dict[str, Any]] = {}
        self.stats.update(tokens=0, unauthorized=0, validation_errors=0)
        self._trace = 11750648

    # -- shapes -------------------------------------------------------------------------------
    def _next_trace(self) -> str:
        self._trace += 1
        return str(self._trace)

    def _answer(self, data: Any, status: int = 200) -> web.Response:
        return json_response(data, status, {"TraceId": self._next_trace()})

    def _problem(self, status: int, kind: str, title: str, code: int, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None) -> web.Response:
        trace = self._next_trace()
        body: dict[str, Any] = {"Type": kind, "Title": title, "Status": code, "TraceId": trace}
        if errors is not None:
            body["Errors"] = errors
        return json_response(body, status, {"TraceId": trace, **(headers or {})})

    def _invalid(self, errors: dict[str, list[str]]) -> web.Response:
        self.stats["validation_errors"] += 1
        return self._problem(400, "ValidationError", "One or more validation errors occurred.", 1000, errors)

    def too_many(self) -> web.Response:
        return self._problem(429, "RateLimit", "Too many requests", 1029, headers={"Retry-After": "1"})

    def server_error(self) -> web.Response:
        return self._problem(500, "ServerError", "Something is wrong on Sendix's end", 1500)

    def _guid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    # -- auth ----------------------------------------------------------------------------------
    async def _json(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return self._invalid({"body": ["A non-empty JSON object is required."]})
        return body

    def _user(self, request: web.Request) -> web.Response | None:
        """None when the bearer token is valid and its user may use the API; else the answer."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        held = self.tokens.get(token) if scheme == "Bearer" else None
        if held is None or held[1] <= time.monotonic():
            self.tokens.pop(token, None)
            self.stats["unauthorized"] += 1
            return self._problem(401, "Unauthorized", "No valid token provided", 1001)
        if not self.users[held[0]][1]:
            return self._problem(403, "Forbidden", "API User do not have an API permission", 1003)
        return None

    async def token(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        errors = {k: [f"The {k} field is required."] for k in ("username", "password")
                  if not isinstance(body.get(k), str) or not body[k]}
        if errors:
            return self._invalid(errors)
        user = self.users.get(body["username"])
        if user is None or user[0] != body["password"]:
            self.stats["unauthorized"] += 1
            return self._problem(401, "Unauthorized", "Invalid username or password", 1001)
        token = uuid.UUID(int=self.random.getrandbits(128)).hex + uuid.UUID(int=self.random.getrandbits(128)).hex
        ttl = self.options["token_ttl"]
        now = time.monotonic()
        self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
        self.tokens[token] = (body["username"], now + ttl)
        self.stats["tokens"] += 1
        return self._answer({"token": token, "expiresIn": int(ttl) if ttl == int(ttl) else ttl})

    # -- messages ------------------------------------------------------------------------------
    def _check_template(self, body: dict[str, Any], errors: dict[str, list[str]]) -> None:
        name = body.get("templateName")
        params = body.get("parameters", [])
        if not isinstance(name, str) or not name:
            errors["templateName"] = ["The templateName field is required."]
        elif name not in self.templates:
            errors["templateName"] = [f"template '{name}' not found"]
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            errors["parameters"] = ["parameters must be a list of strings"]
        elif any(not p.strip() for p in params):
            errors["parameters"] = ["template parameters must not be empty"]
        elif "templateName" not in errors and len(params) != self.templates[name]:
            errors["parameters"] = [f"template '{name}' takes {self.templates[name]} parameter(s), got {len(params)}"]
        language = body.get("language")
        if language is not None and (not isinstance(language, str) or not _LANGUAGE.fullmatch(language)):
            errors["language"] = [f"'{language}' is not a language code"]

    def _deliver(self, mid: str, phone: str, external_id: str | None, trace: str | None,
                 template: str, params: list[str], **extra: Any) -> None:
        now = time.time()
        failed = phone.endswith(UNDELIVERABLE)
        entry = {"id": mid, "phone": phone, "templateName": template, "parameters": params,
                 "externalId": external_id, "traceId": trace, "channel": "whatsapp", **extra}
        self.record(entry)
        self.messages[mid] = {"messageId": mid, "phone": phone, "status": "Failed" if failed else "Delivered",
                              "updatedAt": _iso(now), **({"errorCode": "131026"} if failed else {})}
        url = self.options["webhook_url"]
        if url:
            event: dict[str, Any] = {"messageId": mid, "externalId": external_id, "phone": phone,
                                     "status": "Failed" if failed else "Delivered", "timestamp": _iso(now)}
            if failed:
                event.update(errorCode="131026", errorMessage="Message undeliverable")
            self.report("POST", url, event)

    async def send(self, request: web.Request) -> web.Response:
        denied = self._user(request)
        if denied is not None:
            return denied
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        errors: dict[str, list[str]] = {}
        phone = body.get("phone")
        if not isinstance(phone, str) or not _PHONE.fullmatch(phone):
            errors["phone"] = ["The phone field must hold digits with the country code, without '+'."
                               if isinstance(phone, str) and phone.startswith("+")
                               else f"'{phone}' is not a valid phone number"]
        self._check_template(body, errors)
        external_id = body.get("externalId")
        if external_id is not None and (not isinstance(external_id, str) or len(external_id) > 100):
            errors["externalId"] = ["externalId must be a string of at most 100 characters"]
        if errors:
            return self._invalid(errors)
        mid = self._guid()
        trace = self._next_trace()
        self._deliver(mid, phone, external_id, trace, body["templateName"], body.get("parameters", []),
                      language=body.get("language"))
        return json_response({"messageId": mid, "status": "Queued"}, 200, {"TraceId": trace})

    async def message(self, request: web.Request) -> web.Response:
        denied = self._user(request)
        if denied is not None:
            return denied
        found = self.messages.get(request.match_info["message_id"])
        if found is None:
            return self._problem(404, "NotFound", f"message {request.match_info['message_id']} not found", 1004)
        return self._answer(found)

    # -- groups and campaigns --------------------------------------------------------------------
    def _group(self, group_id: str) -> dict[str, Any] | web.Response:
        group = self.groups.get(group_id)
        if group is None:
            return self._invalid({"groupId": [f"group ID {group_id} not found"]})
        return group

    async def create_group(self, request: web.Request) -> web.Response:
        denied = self._user(request)
        if denied is not None:
            return denied
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            return self._invalid({"name": ["The name field is required."]})
        gid = self._guid()
        self.groups[gid] = {"groupId": gid, "name": name, "contacts": {}}
        return self._answer({"groupId": gid, "name": name})

    async def list_groups(self, request: web.Request) -> web.Response:
        denied = self._user(request)
        if denied is not None:
            return denied
        return self._answer({"items": [{"groupId": g["groupId"], "name": g["name"], "contactsCount": len(g["contacts"])}
                                       for g in self.groups.values()]})

    async def add_contacts(self, request: web.Request) -> web.Response:
        denied = self._user(request)
        if denied is not None:
            return denied
        group = self._group(request.match_info["group_id"])
        if isinstance(group, web.Response):
            return group
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        contacts = body.get("contacts")
        if not isinstance(contacts, list) or not contacts:
            return self._invalid({"contacts": ["The contacts field is required."]})
        if len(contacts) > self.max_batch:
            return self._invalid({"contacts": [f"at most {self.max_batch} contacts per request"]})
        added = updated = 0
        rejected = []
        for c in contacts:
            phone = c.get("phone") if isinstance(c, dict) else None
            if not isinstance(phone, str) or not _PHONE.fullmatch(phone):
                rejected.append({"phone": phone, "reason": "invalid phone number"})
                continue
            if phone in group["contacts"]:
                updated += 1
            else:
                added += 1
            group["contacts"][phone] = c
        return self._answer({"added": added, "updated": updated, "rejected": rejected})

    async def create_campaign(self, request: web.Request) -> web.Response:
        denied = self._user(request)
        if denied is not None:
            return denied
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        errors: dict[str, list[str]] = {}
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            errors["name"] = ["The name field is required."]
        gid = body.get("groupId")
        if not isinstance(gid, str) or gid not in self.groups:
            errors["groupId"] = [f"group ID {gid} not found"]
        self._check_template(body, errors)
        scheduled = body.get("scheduledAt")
        if scheduled is not None and not isinstance(scheduled, str):
            errors["scheduledAt"] = ["scheduledAt must be an ISO 8601 date"]
        if errors:
            return self._invalid(errors)
        cid = self._guid()
        contacts = list(self.groups[gid]["contacts"])
        campaign = {"campaignId": cid, "status": "Scheduled" if scheduled else "Completed", "total": len(contacts),
                    "sent": 0, "delivered": 0, "read": 0, "failed": 0}
        self.campaigns[cid] = campaign
        if not scheduled:
            for phone in contacts:
                mid = self._guid()
                self._deliver(mid, phone, None, None, body["templateName"], body.get("parameters", []), campaignId=cid)
                failed = phone.endswith(UNDELIVERABLE)
                campaign["sent"] += 1
                campaign["failed" if failed else "delivered"] += 1
        return self._answer({"campaignId": cid, "status": "Scheduled" if scheduled else "Sending"})

    async def campaign(self, request: web.Request) -> web.Response:
        denied = self._user(request)
        if denied is not None:
            return denied
        found = self.campaigns.get(request.match_info["campaign_id"])
        if found is None:
            return self._problem(404, "NotFound", f"campaign {request.match_info['campaign_id']} not found", 1004)
        return self._answer(found)

    # -- control -----------------------------------------------------------------------------------
    async def _reset(self, request: web.Request) -> web.Response:
        self.tokens.clear()
        self.messages.clear()
        self.groups.clear()
        self.campaigns.clear()
        return await super()._reset(request)

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        if "TraceId" not in response.headers and not request.path.startswith("/_sim/"):
            response.headers["TraceId"] = self._next_trace()

    def app(self) -> web.Application:
        app = super().app()
        app.on_response_prepare.append(self._stamp)
        return app

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/auth/token", self.token),
            web.post("/api/v1/messages", self.send),
            web.get("/api/v1/messages/{message_id}", self.message),
            web.post("/api/v1/groups", self.create_group),
            web.get("/api/v1/groups", self.list_groups),
            web.post("/api/v1/groups/{group_id}/contacts", self.add_contacts),
            web.post("/api/v1/campaigns", self.create_campaign),
            web.get("/api/v1/campaigns/{campaign_id}", self.campaign),
        ]
