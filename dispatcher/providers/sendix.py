"""Sendix (WhatsApp templates, by Consist): one recipient per request, bearer token.

Only the collection description of the Sendix API is published (base URL, status codes,
the ValidationError body, 100 requests/s, the `TraceId` header). Every path and field
name below is the contract proposed in docs/providers/sendix.md and shared with the
simulator; they all live in `API`, and a user who has the real contract replaces any of
them in the config file without a code change:

    [providers.wa.api]
    token_path = "/oauth/token"
    send_path = "/v2/whatsapp"
    message_id = "data.id"        # response fields may be dotted paths into nested objects

The table of what is documented and what is inferred is in CONFORMANCE.md.

The campaign's options name the approved template and fill its positional parameters:
`options = {template_name = "promo", language = "es", parameters = ["name", "amount"]}`,
where `parameters` names record fields; without it the template's own placeholders, in
order, are the parameters (so the campaign text can mirror the approved template).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ..model import Content, Message
from . import dlr
from .base import (
    HttpRequest,
    Outcome,
    Provider,
    ProviderError,
    Settings,
    Verdict,
    contract,
    http_default,
    retry_after,
    secret,
)

API = {  # the proposed contract [inf] unless marked [doc]: paths, request and response field names, headers
    "token_path": "/api/v1/auth/token",
    "send_path": "/api/v1/messages",
    "username": "username",  # the token exchange's request fields
    "password": "password",
    "token": "token",  # the token in its answer (a dotted path for nested answers)
    "auth_header": "Authorization",
    "auth_scheme": "Bearer",
    "phone": "phone",
    "template": "templateName",
    "language": "language",
    "parameters": "parameters",
    "external_id": "externalId",
    "message_id": "messageId",  # the success answer's id (a dotted path for nested answers)
    "trace_header": "TraceId",  # [doc]
    "trace": "TraceId",  # [doc] also in problem bodies
    "errors": "Errors",  # [doc] the 400 ValidationError body
    "title": "Title",  # [doc]
    "app_status": "Status",  # [doc] the application code of a problem body (1000 validation, ...)
}
TOKEN_ATTEMPTS = 5


@dataclass(slots=True)
class SendixSettings(Settings):
    username_env: str = ""
    password_env: str = ""
    api: dict[str, str] = field(default_factory=dict)  # replacements for names in `API` ([providers.X.api])


def dig(data: Any, path: str) -> Any:
    """`data["a"]["b"]` for the path "a.b"; None where the answer has no such field."""
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


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
        self.api = api = contract(alias, API, settings.api)
        # Validation keys that are about this recipient's data (REJECTED); any other key is about the
        # campaign (template, language...) and fails the message as FAILED. Compared in lower case.
        self._recipient_keys = frozenset({api["phone"].lower(), api["parameters"].lower(),
                                          api["external_id"].lower()})

    def reads_fields(self, channel: str, content: Content) -> bool:
        return content.options.get("parameters") is not None

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
        api = self.api
        body = orjson.dumps({api["username"]: self._user, api["password"]: self._password})
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in range(1, TOKEN_ATTEMPTS + 1):
            wait = 0.2 * 2 ** attempt
            try:
                async with session.post(self._base + api["token_path"], data=body, headers=headers) as resp:
                    data = await resp.read()
                    if resp.status == 200:
                        token = dig(orjson.loads(data), api["token"])
                        if not isinstance(token, str) or not token:
                            raise ProviderError(f"the token answer has no '{api['token']}' (set providers.{self.alias}.api.token)")
                        self._headers = {**headers, api["auth_header"]: f"{api['auth_scheme']} {token}".strip()}
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
        api = self.api
        body: dict[str, Any] = {api["phone"]: m.to.lstrip("+"), api["template"]: opts.get("template_name", "")}
        if opts.get("language"):
            body[api["language"]] = opts["language"]
        params = parameters(m)
        if params:
            body[api["parameters"]] = params
        body[api["external_id"]] = m.rid
        return HttpRequest("POST", self._base + api["send_path"], self._headers, orjson.dumps(body))

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str], body: bytes) -> list[Outcome]:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        problem = data if isinstance(data, dict) else {}
        api = self.api
        trace = headers.get(api["trace_header"])
        if trace is None and problem.get(api["trace"]) is not None:
            trace = str(problem[api["trace"]])
        title = str(problem.get(api["title"]) or "")
        code = str(problem.get(api["app_status"]) or status)
        if 200 <= status < 300:
            mid = dig(problem, api["message_id"])
            o = (Outcome(Verdict.SENT, message_id=str(mid), trace_id=trace) if mid else
                 Outcome(Verdict.FAILED, code="bad_answer", error="accepted without a message id", trace_id=trace))
        elif status == 400 and isinstance(problem.get(api["errors"]), dict):
            o = self._validation(problem[api["errors"]], code, title, trace)
        elif status == 401:  # the token expired or was revoked: fetch another and resend
            o = Outcome(Verdict.REAUTH, code="401", error=title or "No valid token provided", trace_id=trace)
        elif status == 403:  # the API user has no API permission: nothing will pass
            o = Outcome(Verdict.HALT, code="403", error=title or "API user has no API permission", trace_id=trace)
        else:
            text = title or (body[:200].decode("utf-8", "replace") if body else "")
            o = http_default(status, text, trace, headers)
        return [o] * len(batch)

    def _validation(self, errors: Mapping[str, Any], code: str, title: str, trace: str | None) -> Outcome:
        texts, keys = [], set()
        for key, msgs in errors.items():
            keys.add(_field(key))
            for msg in msgs if isinstance(msgs, list) else [msgs]:
                texts.append(f"{key}: {msg}")
        verdict = Verdict.REJECTED if keys and keys <= self._recipient_keys else Verdict.FAILED
        return Outcome(verdict, code=code, error="; ".join(texts) or title, trace_id=trace)

    # -- delivery reports ---------------------------------------------------------------------------
    # JSON {messageId, externalId, phone, status, timestamp, errorCode?} to the webhook set in the console.
    def report_item(self, it: dict[str, Any], now: dt.datetime) -> dlr.Report:
        raw = str(it.get("status", ""))
        status = {"queued": "accepted"}.get(raw.lower(), raw.lower() or "unknown")
        return dlr.Report(self.alias, dlr.text(it.get("messageId")), dlr.recipient(it.get("phone")), status,
                          raw or None, dlr.when(it.get("timestamp"), now), it)
