"""Sendix (WhatsApp templates, by Consist): one recipient per request, bearer token.

Only the collection description of the Sendix API is published (base URL, status codes,
the ValidationError body, 100 requests/s, the `TraceId` header). Every path and field
name below is the contract proposed in docs/providers/sendix.md and shared with the
simulator; they all live in `API` so they can be replaced in one place when the real
collection is known.

The campaign's options name the approved template and fill its positional parameters:
`options = {template_name = "promo", language = "es", parameters = ["name", "amount"]}`,
where `parameters` names record fields; without it the template's own placeholders, in
order, are the parameters (so the campaign text can mirror the approved template).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ..model import Message
from . import reports as dlr
from .base import HttpRequest, Outcome, Provider, Settings, Verdict, http_default, retry_after, secret

API = {  # the proposed contract [inf]: paths, request and response field names, headers
    "token_path": "/api/v1/auth/token",
    "send_path": "/api/v1/messages",
    "username": "username",
    "password": "password",
    "token": "token",
    "phone": "phone",
    "template": "templateName",
    "language": "language",
    "parameters": "parameters",
    "external_id": "externalId",
    "message_id": "messageId",
    "trace_header": "TraceId",
    "trace": "TraceId",  # also in problem bodies
    "errors": "Errors",
    "title": "Title",
    "app_status": "Status",  # the application code of a problem body (1000 validation, ...)
}
# Validation keys that are about this recipient's data (REJECTED); any other key is about the
# campaign (template, language...) and fails the message as FAILED. Compared in lower case.
RECIPIENT_KEYS = frozenset({API["phone"].lower(), API["parameters"].lower(), API["external_id"].lower()})
TOKEN_ATTEMPTS = 5


@dataclass(slots=True)
class SendixSettings(Settings):
    username_env: str = ""
    password_env: str = ""


def _field(key: str) -> str:
    """A validation key as the request field it names: `Phone`, `$.phone`, `parameters[1]` -> phone/parameters."""
    k = key.strip().lower()
    if k.startswith("$."):
        k = k[2:]
    for sep in ("[", "."):
        k = k.split(sep, 1)[0]
    return k


def parameters(m: Message) -> list[str]:
    """The template's positional parameters for this recipient."""
    names = m.content.options.get("parameters")
    if names is None:
        return list((m.slots or {}).values())
    return ["" if m.vars.get(n) is None else str(m.vars[n]) for n in names]


class Sendix(Provider):
    kind = "sendix"
    channels = frozenset({"whatsapp"})
    default_rate = 100.0  # documented: 100 requests per second (the token call counts too)
    max_batch = 1
    default_concurrency = 32
    settings_class = SendixSettings

    def __init__(self, alias: str, settings: SendixSettings) -> None:
        super().__init__(alias, settings)
        self._user = secret(alias, "username_env", settings.username_env)
        self._password = secret(alias, "password_env", settings.password_env)
        self._base = settings.url.rstrip("/")
        self._headers: dict[str, str] = {"Content-Type": "application/json", "Accept": "application/json"}

    def check(self, m: Message) -> tuple[str, str] | None:
        missing = [n for n in m.content.options.get("parameters") or () if m.vars.get(n) in (None, "")]
        if missing:
            return "missing_variable", f"template parameter field '{missing[0]}' has no value in this record"
        return None

    async def authenticate(self, session: aiohttp.ClientSession) -> None:
        """Exchange the API user's credentials for a bearer token.

        429, 5xx and lost connections are waited out a few times (a refresh in the middle of a
        run must not halt the provider for a blip); any other answer raises, saying only
        "HTTP <status>", never the credentials.
        """
        body = orjson.dumps({API["username"]: self._user, API["password"]: self._password})
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in range(1, TOKEN_ATTEMPTS + 1):
            wait = 0.2 * 2 ** attempt
            try:
                async with session.post(self._base + API["token_path"], data=body, headers=headers) as resp:
                    data = await resp.read()
                    if resp.status == 200:
                        token = orjson.loads(data)[API["token"]]
                        self._headers = {**headers, "Authorization": f"Bearer {token}"}
                        return
                    if not (resp.status == 429 or resp.status >= 500) or attempt == TOKEN_ATTEMPTS:
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                          message=resp.reason or "")
                    wait = retry_after(resp.headers) or wait
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt == TOKEN_ATTEMPTS:
                    raise
            await asyncio.sleep(wait)

    def build(self, batch: Sequence[Message]) -> HttpRequest:
        m = batch[0]
        opts = m.content.options
        body: dict[str, Any] = {API["phone"]: m.to.lstrip("+"), API["template"]: opts.get("template_name", "")}
        if opts.get("language"):
            body[API["language"]] = opts["language"]
        params = parameters(m)
        if params:
            body[API["parameters"]] = params
        body[API["external_id"]] = m.rid
        return HttpRequest("POST", self._base + API["send_path"], self._headers, orjson.dumps(body))

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str], body: bytes) -> list[Outcome]:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        problem = data if isinstance(data, dict) else {}
        trace = headers.get(API["trace_header"])
        if trace is None and problem.get(API["trace"]) is not None:
            trace = str(problem[API["trace"]])
        title = str(problem.get(API["title"]) or "")
        code = str(problem.get(API["app_status"]) or status)
        if 200 <= status < 300:
            mid = problem.get(API["message_id"])
            o = (Outcome(Verdict.SENT, message_id=str(mid), trace_id=trace) if mid else
                 Outcome(Verdict.FAILED, code="bad_answer", error="accepted without a message id", trace_id=trace))
        elif status == 400 and isinstance(problem.get(API["errors"]), dict):
            o = self._validation(problem[API["errors"]], code, title, trace)
        elif status == 401:  # the token expired or was revoked: fetch another and resend
            o = Outcome(Verdict.REAUTH, code="401", error=title or "No valid token provided", trace_id=trace)
        elif status == 403:  # the API user has no API permission: nothing will pass
            o = Outcome(Verdict.HALT, code="403", error=title or "API user has no API permission", trace_id=trace)
        else:
            text = title or (body[:200].decode("utf-8", "replace") if body else "")
            o = http_default(status, text, trace, headers)
        return [o] * len(batch)

    @staticmethod
    def _validation(errors: Mapping[str, Any], code: str, title: str, trace: str | None) -> Outcome:
        texts, keys = [], set()
        for key, msgs in errors.items():
            keys.add(_field(key))
            for msg in msgs if isinstance(msgs, list) else [msgs]:
                texts.append(f"{key}: {msg}")
        verdict = Verdict.REJECTED if keys and keys <= RECIPIENT_KEYS else Verdict.FAILED
        return Outcome(verdict, code=code, error="; ".join(texts) or title, trace_id=trace)

    # -- delivery reports ---------------------------------------------------------------------------
    # JSON {messageId, externalId, phone, status, timestamp, errorCode?} to the webhook set in the console.
    def report_item(self, it: dict[str, Any], now: dt.datetime) -> dlr.Report:
        raw = str(it.get("status", ""))
        status = {"queued": "accepted"}.get(raw.lower(), raw.lower() or "unknown")
        return dlr.Report(self.alias, dlr.text(it.get("messageId")), dlr.recipient(it.get("phone")), status,
                          raw or None, dlr.when(it.get("timestamp"), now), it)
