"""SendX simulator: transactional email and webhooks of the SendX REST API (docs/providers/sendx.md).

`X-Team-ApiKey` auth (401), `POST /send/email` and `POST /send/template` validated
synchronously (400; 422 for malformed JSON, 404 unknown template, at most 50 `to` entries),
the two documented 429s: the rate (10 requests/s by default, judged over any one second, `Retry-After: 1`) and
the plan's sending quota (the `credits` fault: one credit an email, "Email sending limit
exceeded. Please upgrade your plan."), and the two documented success answers: 202
`{"status":"success",...}` (`compat = "docs"`, the default) or the SDK's 200 array with a
`messageId` per recipient (`compat = "sdk"`).

Webhooks are registered through the API (`POST /webhook`); an accepted email produces one
event: 60 dropped for a suppressed address (`suppressed` setting), 5 bounce for an address
whose local part starts with "bounce", otherwise 7 open, each sent only to webhooks that
subscribed to it. Suppressed addresses are refused per recipient (errorCode 1) in the SDK
answer and accepted then dropped in the 202 one. The sender must be at a verified domain.

Every error, whatever its status, has the seed's one shape: `{"status": "error", "message": ...}`
("Error responses follow this format"); the official SDK's `ErrorResponse` accepts nothing else.

Settings: constructor keywords (`--set sendx.compat=sdk`) or live `POST /_sim/options`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import web

from .base import Simulator, json_response

BASE = "/api/v1/rest"
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_ID = re.compile(r"[a-z_]+_[a-zA-Z0-9]{22}")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
EVENTS = {"opened": 7, "bounced": 5, "dropped": 60}  # webhook flag -> event type sent by this simulator
FLAGS = ("enabled", "unsubscribed", "dropped", "bounced", "markedSpam", "clicked", "opened", "contactCreated")
PLAN_LIMIT = "Email sending limit exceeded. Please upgrade your plan."


def error(message: str, status: int = 400, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"status": "error", "message": message}, status, headers)


def _csv(spec: str) -> set[str]:
    return {s.strip().lower() for s in spec.split(",") if s.strip()}


class SendxSimulator(Simulator):
    kind = "sendx"
    option_types = {"compat": str}
    default_rate = 10.0
    default_max_batch = 50

    def __init__(self, *args: Any, api_key: str = "demo-team-key", compat: str = "docs",
                 verified_domains: str = "example.com,example.org,acme.com",
                 suppressed: str = "unsubscribed@example.com,spamtrap@example.org",
                 templates: str = "template_Welcome000000000000000,template_Invoice000000000000000", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.api_key = api_key
        self.verified = _csv(verified_domains)
        self.suppressed = _csv(suppressed)
        self.templates = {t.strip() for t in templates.split(",") if t.strip()}
        self.defaults = {"compat": compat}
        self.options = dict(self.defaults)
        self.webhooks: dict[str, dict[str, Any]] = {}

    def too_many(self) -> web.Response:
        return error("Rate limit exceeded. Slow down your requests.", 429, {"Retry-After": "1"})

    def server_error(self) -> web.Response:
        return error("Internal server error. Try again later.", 500)

    def _prefixed(self, prefix: str) -> str:
        return prefix + "_" + "".join(self.random.choice(_ALNUM) for _ in range(22))

    def _denied(self, request: web.Request) -> web.Response | None:
        """The 401 when the team key is missing or wrong, in the seed's one error shape."""
        if request.headers.get("X-Team-ApiKey") != self.api_key:
            return error("The Team ID or API Key specified is not valid", 401)
        return None

    async def _body(self, request: web.Request) -> Any:
        """The JSON body, or the answer refusing the request (401 bad key, 422 malformed JSON)."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error("Request body is not in proper format", 422)

    # -- sending ---------------------------------------------------------------------------------
    def _address(self, value: Any, what: str) -> str | None:
        """A problem with an `{email, name?}` object, or None."""
        if not isinstance(value, dict) or not isinstance(value.get("email"), str):
            return f"{what} must be an object with an email"
        if not _EMAIL.fullmatch(value["email"]):
            return f"Invalid email address: {value['email']}"
        if "name" in value and not isinstance(value["name"], str):
            return f"{what}.name must be a string"
        return None

    def _validate(self, body: Any, template: bool) -> str | None:
        if not isinstance(body, dict):
            return "Request body must be a JSON object"
        problem = self._address(body.get("from"), "from")
        if problem:
            return problem
        domain = body["from"]["email"].rsplit("@", 1)[1].lower()
        if domain not in self.verified:
            return f"From email domain {domain} is not verified"
        if "replyTo" in body and (problem := self._address(body["replyTo"], "replyTo")):
            return problem
        to = body.get("to")
        if not isinstance(to, list) or not to:
            return "to must hold at least one recipient"
        if len(to) > self.max_batch:
            return f"to must hold at most {self.max_batch} recipients"
        for i, entry in enumerate(to):
            if (problem := self._address(entry, f"to[{i}]")):
                return problem
            for copy in ("cc", "bcc"):
                extra = entry.get(copy, [])
                if not isinstance(extra, list) or not all(isinstance(e, str) and _EMAIL.fullmatch(e) for e in extra):
                    return f"to[{i}].{copy} must be a list of email addresses"
            fields = entry.get("customFields", {})
            if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
                return f"to[{i}].customFields must map names to strings"
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            return "subject is required"
        if not template and (not isinstance(body.get("htmlBody"), str) or not body["htmlBody"]):
            return "htmlBody is required"
        if "textBody" in body and not isinstance(body["textBody"], str):
            return "textBody must be a string"
        headers = body.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return "headers must map names to strings"
        return None

    async def send_email(self, request: web.Request) -> web.Response:
        return await self._send(request, template=False)

    async def send_template(self, request: web.Request) -> web.Response:
        return await self._send(request, template=True)

    async def _send(self, request: web.Request, template: bool) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        problem = self._validate(body, template)
        if problem:
            return error(problem)
        if template:
            tid = body.get("template")
            if not isinstance(tid, str) or not _ID.fullmatch(tid):
                return error("Invalid identifier format")
            if tid not in self.templates:
                return error("Template not found", 404)
        sdk = self.options["compat"] == "sdk"
        deliver = [e for e in body["to"] if not (sdk and e["email"].lower() in self.suppressed)]
        if deliver and not self.spend(len(deliver)):
            return error(PLAN_LIMIT, 429)
        now = time.time()
        items = []
        for entry in body["to"]:
            email = entry["email"]
            suppressed = email.lower() in self.suppressed
            if sdk and suppressed:
                items.append({"to": email, "submittedAt": int(now), "messageId": None, "errorCode": 1,
                              "message": "Recipient is suppressed (unsubscribed, bounced or marked spam)"})
                continue
            mid = self.next_id(22)
            self.record({"id": mid, "to": email, "name": entry.get("name"), "from": body["from"]["email"],
                         "subject": body["subject"], "html": body.get("htmlBody"), "template": body.get("template"),
                         "customFields": entry.get("customFields"), "replyTo": (body.get("replyTo") or {}).get("email"),
                         "headers": body.get("headers"), "channel": "email", "dropped": suppressed})
            items.append({"to": email, "submittedAt": int(now), "messageId": mid, "errorCode": 0, "message": "OK"})
            self._events(mid, email, suppressed, body, now)
        if sdk:
            return json_response(items, 200)
        return json_response({"status": "success", "message": "Email queued for delivery"}, 202)

    def _events(self, mid: str, email: str, suppressed: bool, body: dict[str, Any], now: float) -> None:
        if not self.webhooks:
            return
        flag = "dropped" if suppressed else "bounced" if email.split("@")[0].lower().startswith("bounce") else "opened"
        event = {"type": EVENTS[flag], "time": int(now * 1000), "data": "", "provider_message_id": mid,
                 "contact_email": email, "campaign_id": "", "contact_id": "", "template_id": body.get("template") or ""}
        if body.get("headers"):
            event["headers"] = body["headers"]
        for hook in self.webhooks.values():
            if hook["enabled"] and hook[flag]:
                self.report("POST", hook["url"], event)

    # -- webhooks --------------------------------------------------------------------------------
    async def create_webhook(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if not isinstance(body, dict) or not isinstance(body.get("url"), str) \
                or not body["url"].startswith(("http://", "https://")):
            return error("url must be an http(s) URL")
        if any(not isinstance(body.get(f, False), bool) for f in FLAGS):
            return error("webhook event flags must be booleans")
        hook = {"id": self._prefixed("webhook"), "url": body["url"],
                **{f: body.get(f, f == "enabled") for f in FLAGS}}
        self.webhooks[hook["id"]] = hook
        return json_response(hook, 201)

    async def list_webhooks(self, request: web.Request) -> web.Response:
        return self._denied(request) or json_response(list(self.webhooks.values()))

    async def delete_webhook(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        if self.webhooks.pop(request.match_info["webhook_id"], None) is None:
            return error("Webhook not found", 404)
        return json_response({"status": "success", "message": "Webhook deleted"})

    # -- control -----------------------------------------------------------------------------------
    async def _reset(self, request: web.Request) -> web.Response:
        self.webhooks.clear()
        return await super()._reset(request)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(BASE + "/send/email", self.send_email),
            web.post(BASE + "/send/template", self.send_template),
            web.post(BASE + "/webhook", self.create_webhook),
            web.get(BASE + "/webhook", self.list_webhooks),
            web.delete(BASE + "/webhook/{webhook_id}", self.delete_webhook),
        ]
