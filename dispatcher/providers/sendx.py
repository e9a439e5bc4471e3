"""SendX (transactional email): `POST /api/v1/rest/send/email` with `X-Team-ApiKey`.

The body is SendX's, not the legacy `/rest/email` one: `from` and `replyTo` are objects,
`to` is an array of `{email, name?, customFields?}` objects, the HTML goes in `htmlBody`.
Each `to` entry becomes its own email, so recipients whose rendered email is identical
share a request (up to 50, the simulator's cap; none is documented); personalised emails
go one per request. With `options.template` (a `template_...` id) the stored template is
sent through `/send/template` and every recipient's values go as `customFields`, so those
share requests too.

Two documented answers: the current docs' 202 `{"status":"success"}` (queued, no
per-recipient result, no message id: failures arrive later as webhook events), and the
SDK's 200 array with one `{to, messageId, errorCode, message}` per recipient. Both are read.

A 429 is either the rate limit (retry) or the plan's sending quota ("Email sending limit
exceeded. Please upgrade your plan."): the latter halts the provider for the run, since
no retry can pass before the plan changes.

Campaign options: `from_name`, `reply_to`, `reply_to_name`, `name_field` (record field with
the recipient's name), `headers` (custom email headers), `template`; the sender address is
the campaign's `sender`, the subject its `subject`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import orjson

from ..model import Content, Message
from . import dlr
from .base import (
    EMAIL,
    HttpRequest,
    Outcome,
    Provider,
    Settings,
    Verdict,
    email_address,
    http_default,
    retry_after,
    secret,
)

PREFIX = "/api/v1/rest"  # the documented base URL is https://api.sendx.io/api/v1/rest
PATHS = {"email": "/send/email", "template": "/send/template"}
_PLAN = re.compile(r"\b(plan|upgrade|quota|sending limit)\b", re.IGNORECASE)
_MENTIONED = re.compile(r"[^\s:,;'\"<>()\[\]]+@[^\s,;'\"<>()\[\]]+")


@dataclass(slots=True)
class SendxSettings(Settings):
    api_key_env: str = ""


class Sendx(Provider):
    kind = "sendx"
    channels = frozenset({"email"})
    address = "email"
    default_rate = 10.0  # none published; the simulator's default
    max_batch = 50  # none published; the simulator's cap on `to`
    default_concurrency = 8
    settings_class = SendxSettings

    def __init__(self, alias: str, settings: SendxSettings) -> None:
        super().__init__(alias, settings)
        key = secret(alias, "api_key_env", settings.api_key_env)
        self._headers = {"X-Team-ApiKey": key, "Content-Type": "application/json", "Accept": "application/json"}
        base = settings.url.rstrip("/")
        self._base = base if base.endswith(PREFIX) else base + PREFIX

    def validate(self, channel: str, content: Content) -> Content:
        """`from.email` and `replyTo.email` must be addresses (SendX answers 400 for every email)."""
        opts = dict(content.options)
        sender = email_address("message.sender", content.sender, "an email address (the `from` of every email)")
        if opts.get("reply_to"):
            opts["reply_to"] = email_address("message.options.reply_to", opts["reply_to"])
        return replace(content, sender=sender, options=opts)

    def batch_key(self, m: Message) -> Hashable:
        # An address SendX may refuse goes alone: a 400 names one address and refuses the whole request.
        if self.batch_size == 1 or not EMAIL.fullmatch(m.to):
            return m.seq
        return id(m.content) if m.content.options.get("template") else m.text

    def reads_fields(self, channel: str, content: Content) -> bool:
        return bool(content.options.get("name_field"))

    def check(self, m: Message) -> tuple[str, str] | None:
        opts = m.content.options
        if opts.get("template") and opts.get("headers"):  # the SDK's TemplateEmailMessage has no `headers`
            return "bad_option", "options.headers cannot go with options.template: SendX's /send/template takes no headers"
        return super().check(m)

    def build(self, batch: Sequence[Message]) -> HttpRequest:
        first = batch[0]
        c = first.content
        opts = c.options
        sender: dict[str, Any] = {"email": c.sender}
        if opts.get("from_name"):
            sender["name"] = opts["from_name"]
        template = opts.get("template")
        to = []
        for m in batch:
            entry: dict[str, Any] = {"email": m.to}
            name = m.vars.get(opts["name_field"]) if opts.get("name_field") else None
            if name:
                entry["name"] = str(name)
            if template and m.slots:
                entry["customFields"] = m.slots
            to.append(entry)
        body: dict[str, Any] = {"from": sender, "to": to, "subject": c.subject}
        if template:
            body["template"] = template
        else:
            body["htmlBody"] = first.text
        if opts.get("reply_to"):
            body["replyTo"] = {"email": opts["reply_to"], **({"name": opts["reply_to_name"]}
                                                            if opts.get("reply_to_name") else {})}
        if opts.get("headers"):
            body["headers"] = {str(k): str(v) for k, v in opts["headers"].items()}
        path = PATHS["template" if template else "email"]
        return HttpRequest("POST", self._base + path, self._headers, orjson.dumps(body))

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str], body: bytes) -> list[Outcome]:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        trace = headers.get("X-Request-Id")
        if 200 <= status < 300 and isinstance(data, list):
            return self._per_recipient(batch, data, trace)
        message = str(data.get("message") or "") if isinstance(data, dict) else ""
        if 200 <= status < 300:
            if isinstance(data, dict) and data.get("status") == "error":
                return [Outcome(Verdict.FAILED, code="error", error=message or "error", trace_id=trace)] * len(batch)
            return [Outcome(Verdict.SENT, trace_id=trace)] * len(batch)  # queued; no per-recipient id
        if status == 429:
            if _PLAN.search(message):
                o = Outcome(Verdict.HALT, code="plan_limit", error=message, trace_id=trace)
            else:
                o = Outcome(Verdict.RETRY, code="429", error=message or "rate limited", trace_id=trace,
                            retry_after=retry_after(headers))
        elif status in (401, 403):  # a bad key or an account without access: nothing will pass
            o = Outcome(Verdict.HALT, code=str(status), error=message or "unauthorized", trace_id=trace)
        elif status == 400:
            return self._invalid(batch, message, trace)
        elif status >= 500 or status == 408:
            o = Outcome(Verdict.RETRY, code=str(status), error=message, trace_id=trace, retry_after=retry_after(headers))
        else:
            o = http_default(status, message or (body[:200].decode("utf-8", "replace") if body else ""), trace, headers)
        return [o] * len(batch)

    @staticmethod
    def _invalid(batch: Sequence[Message], message: str, trace: str | None) -> list[Outcome]:
        """A 400 naming recipients refuses only them; the others of the request go again."""
        named = {s.rstrip(".") for s in _MENTIONED.findall(message)}
        if not named or not any(m.to in named for m in batch):
            return [Outcome(Verdict.FAILED, code="400", error=message, trace_id=trace)] * len(batch)
        bad = Outcome(Verdict.REJECTED, code="400", error=message, trace_id=trace)
        again = Outcome(Verdict.RETRY, code="400", error="resent: the request held a refused address", trace_id=trace,
                        retry_after=0.0)
        return [bad if m.to in named else again for m in batch]

    @staticmethod
    def _per_recipient(batch: Sequence[Message], items: list[Any], trace: str | None) -> list[Outcome]:
        by_to: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            if isinstance(item, dict):
                by_to.setdefault(str(item.get("to", "")).lower(), []).append(item)
        out = []
        for m in batch:
            found = by_to.get(m.to.lower())
            item = found.pop(0) if found else None
            if item is None:
                out.append(Outcome(Verdict.FAILED, code="missing", error="no result for this recipient", trace_id=trace))
            elif item.get("errorCode", 0) == 0 and item.get("messageId"):
                out.append(Outcome(Verdict.SENT, message_id=str(item["messageId"]), trace_id=trace))
            else:
                out.append(Outcome(Verdict.REJECTED, code=str(item.get("errorCode")),
                                   error=str(item.get("message") or "refused"), trace_id=trace))
        return out

    # -- delivery reports ---------------------------------------------------------------------------
    # JSON {type, time, provider_message_id, contact_email, ...} (type 7 open, 5 bounce, 73 unsubscribe...);
    # the documented 202 to a send carries no id, so the first report of a message is paired by recipient.
    ids_in_answers: ClassVar[bool] = False
    # event types (sendx.md): campaign, drip, RSS, workflow and seed-list events in the order the docs list
    # them (open, click, bounce, spam, dropped) [inferred for all but the campaign ones]
    EVENTS: ClassVar[dict[int, str]] = {73: "unsubscribed", 74: "contact_created", **{
        code: name for codes in ((7, 8, 5, 6, 60), (32, 33, 63, 62, 61), (172, 173, 180, 179, 178),
                                 (189, 190, 197, 196, 195), (271, 272, 276, 275, 278))
        for code, name in zip(codes, ("opened", "clicked", "bounced", "complaint", "dropped"), strict=True)}}

    def report_item(self, it: dict[str, Any], now: dt.datetime) -> dlr.Report:
        t = it.get("type")
        code = int(t) if t is not None and str(t).lstrip("-").isdigit() else None
        status = self.EVENTS.get(code, f"event_{code}") if code is not None else "unknown"
        return dlr.Report(self.alias, dlr.text(it.get("provider_message_id")), dlr.recipient(it.get("contact_email")),
                          status, dlr.text(t), dlr.when(it.get("time"), now), it)
