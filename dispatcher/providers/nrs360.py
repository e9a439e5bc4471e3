"""360nrs: SMS, email (`/mailing`), WhatsApp templates and voice (text to speech).

Many recipients per request. Texts that differ only by template variables share one
request: the template goes as `message` (`body` for email) and each recipient's values as
`sub` (one object per recipient, same order as `to`), so a personalised campaign costs one
request per `batch_size` recipients instead of one per recipient. Filters are applied here,
not by the server, so the text the server builds is exactly the text the codec counted.

WhatsApp sends an approved template (`options.template_id`) from a registered number (the
campaign's `sender`); each recipient's positional `bodyFields` are the record fields named
by `options.parameters` (else the template's own placeholders, in order), `headerFields`
and `callToActionFields` likewise from `header_parameters` / `call_to_action_parameters`.
Email takes `fromEmail` and `subject` from the campaign's sender and subject and
`fromName` / `replyTo` from `options.from_name` / `options.reply_to` (replyTo is required
by 360nrs: the sender address when not set). Voice takes `options.language` and
`options.gender` (required by 360nrs: left for the server to refuse when missing) and
optional `callers`, `retries`, `amd`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ..codecs.tables import TRANSLATE_TABLE
from ..model import Message
from . import reports as dlr
from .base import (
    HttpRequest,
    Outcome,
    Provider,
    Settings,
    Verdict,
    basic_auth,
    http_default,
    retry_after,
    secret,
)

PATHS = {"sms": "/api/rest/sms", "email": "/api/rest/mailing", "whatsapp": "/api/rest/whatsapp",
         "voice": "/api/rest/voice"}
ENCODING = {"GSM-7": "gsm", "GSM-PT": "gsm-pt", "UCS-2": "utf-16"}

RETRYABLE = frozenset({101, 122, 123, 429})
HALTING = frozenset({103, 111, 112})  # bad credentials, no credit, IP not allowed: nothing else will pass
PER_RECIPIENT = frozenset({102})  # "no valid recipients": this number is bad input
VOICE_MAX_CHARS = 500
# WhatsApp positional fields: option naming the record fields -> the message field they fill
WHATSAPP_FIELDS = {"header_parameters": "headerFields", "parameters": "bodyFields",
                   "call_to_action_parameters": "callToActionFields"}
VOICE_OPTIONS = ("language", "gender", "callers", "retries", "amd")


def classify(code: int, status: int) -> Verdict:
    if code in RETRYABLE or status >= 500 or status == 429:
        return Verdict.RETRY
    if code in HALTING:
        return Verdict.HALT
    if code in PER_RECIPIENT:
        return Verdict.REJECTED
    return Verdict.FAILED


@dataclass(slots=True)
class Nrs360Settings(Settings):
    username_env: str = ""
    password_env: str = ""
    notification_url: str = ""  # DLR URL with the 360nrs % escapes (%i id, %s status, ...)
    campaign_name: str = ""
    substitute: bool = True  # personalised texts share a request through `sub`


class Nrs360(Provider):
    kind = "nrs360"
    channels = frozenset(PATHS)
    default_rate = 50.0  # none documented; the simulator's default
    max_batch = 1000  # none documented; the simulator's default cap
    default_concurrency = 8  # big requests: a few in flight keep the rate
    max_parts = 15
    settings_class = Nrs360Settings

    def __init__(self, alias: str, settings: Nrs360Settings) -> None:
        super().__init__(alias, settings)
        self.s = settings
        self._auth = basic_auth(secret(alias, "username_env", settings.username_env),
                                secret(alias, "password_env", settings.password_env))
        self._headers = {"Authorization": self._auth, "Content-Type": "application/json", "Accept": "application/json"}
        self._base = settings.url.rstrip("/")

    def address_for(self, channel: str) -> str:
        """What a recipient of `channel` is: an email address for email, a phone number otherwise."""
        return "email" if channel == "email" else "phone"

    def _substituted(self, m: Message) -> bool:
        return self.s.substitute and bool(m.content.template.slots)

    def batch_key(self, m: Message) -> Hashable:
        if m.channel == "whatsapp":  # the template lives on the server: every recipient can share a request
            return (m.channel, id(m.content))
        text_key = id(m.content) if self._substituted(m) else m.text
        return (m.channel, m.encoding, m.transliterated, text_key)

    def check(self, m: Message) -> tuple[str, str] | None:
        if m.channel == "voice" and len(m.text) > VOICE_MAX_CHARS:
            return "too_long", f"{len(m.text)} characters, 360nrs voice messages hold at most {VOICE_MAX_CHARS}"
        if m.channel == "whatsapp":
            for option in WHATSAPP_FIELDS:
                for name in m.content.options.get(option) or ():
                    if m.vars.get(name) in (None, ""):
                        return "missing_variable", f"template field '{name}' has no value in this record"
        return super().check(m)

    def build(self, batch: Sequence[Message]) -> HttpRequest:
        first = batch[0]
        c = first.content
        if first.channel == "whatsapp":
            body = self._whatsapp(batch)
        else:
            body = {"to": [m.to if first.channel == "email" else m.to.lstrip("+") for m in batch]}
            if first.channel == "sms":
                body.update({"from": c.sender, "encoding": ENCODING.get(first.encoding, "gsm"),
                             "parts": max(m.parts for m in batch) or 1})
            elif first.channel == "email":
                opts = c.options
                body.update({"fromEmail": c.sender, "replyTo": opts.get("reply_to") or c.sender, "subject": c.subject})
                if opts.get("from_name"):
                    body["fromName"] = opts["from_name"]
            else:  # voice
                body.update({k: c.options[k] for k in VOICE_OPTIONS if k in c.options})
            text = "body" if first.channel == "email" else "message"
            if self._substituted(first) and first.transliterated:
                # transliteration maps character by character, so transliterating the template and
                # each value gives exactly the transliterated text the codec counted
                body[text] = c.template.server_source.translate(TRANSLATE_TABLE)
                body["sub"] = [{k: v.translate(TRANSLATE_TABLE) for k, v in m.slots.items()} for m in batch]
            elif self._substituted(first):
                body[text] = c.template.server_source
                body["sub"] = [m.slots for m in batch]
            else:
                body[text] = first.text
            if self.s.notification_url and first.channel == "sms":
                body["notificationUrl"] = self.s.notification_url
        if self.s.campaign_name:
            body["campaignName"] = self.s.campaign_name
        return HttpRequest("POST", self._base + PATHS[first.channel], self._headers, orjson.dumps(body))

    @staticmethod
    def _whatsapp(batch: Sequence[Message]) -> dict:
        opts = batch[0].content.options
        messages = []
        for m in batch:
            entry: dict = {"to": m.to.lstrip("+")}
            for option, field in WHATSAPP_FIELDS.items():
                names = opts.get(option)
                if names:
                    entry[field] = ["" if m.vars.get(n) is None else str(m.vars[n]) for n in names]
                elif option == "parameters" and m.slots:
                    entry[field] = list(m.slots.values())
            messages.append(entry)
        return {"templateId": opts.get("template_id"), "from": batch[0].content.sender, "messages": messages}

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str], body: bytes) -> list[Outcome]:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if status in (202, 207) and isinstance(data, dict) and isinstance(data.get("result"), list):
            trace = str(data.get("sendingId")) if data.get("sendingId") is not None else None
            return self._per_recipient(batch, data["result"], trace)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and isinstance(err.get("code"), int):
            code = err["code"]
            o = Outcome(classify(code, status), code=str(code), error=str(err.get("description", "")),
                        retry_after=retry_after(headers))
        else:
            o = http_default(status, body[:200].decode("utf-8", "replace") if body else "", headers=headers)
        return [o] * len(batch)

    def _per_recipient(self, batch: Sequence[Message], results: list, trace: str | None) -> list[Outcome]:
        if len(results) != len(batch):  # pair by number when the server did not keep the order
            by_to: dict[str, list] = {}
            for r in results:
                by_to.setdefault(str(r.get("to")), []).append(r)
            results = [(by_to.get(m.to.lstrip("+")) or [{}]).pop(0) if by_to.get(m.to.lstrip("+")) else {}
                       for m in batch]
        out = []
        for r in results:
            if r.get("accepted"):
                out.append(Outcome(Verdict.SENT, message_id=r.get("id"), trace_id=trace))
            elif isinstance(r.get("error"), dict):
                code = int(r["error"].get("code", 0))
                out.append(Outcome(classify(code, 400), code=str(code), error=r["error"].get("description"),
                                   trace_id=trace))
            else:
                out.append(Outcome(Verdict.FAILED, code="missing", error="no result for this recipient", trace_id=trace))
        return out

    # -- delivery reports ---------------------------------------------------------------------------
    # The per-message DLR GET to `notificationUrl` (id, status, to, part, done, sent: the % escapes below),
    # and the account-level event POSTs (form: id, channel, event, eventDate...).
    DLR: ClassVar[dict[str, str]] = {"DELIVRD": "delivered", "UNDELIV": "undelivered", "EXPIRED": "expired",
                                     "REJECTD": "rejected", "DELETED": "deleted", "ACCEPTD": "accepted",
                                     "RECEIVED": "accepted", "UNKNOWN": "unknown"}
    EVENTS: ClassVar[dict[str, str]] = {"hard_bounced": "bounced", "unsubscribed_landing": "unsubscribed"}

    def callback(self, url: str) -> bool:
        if not self.s.notification_url:
            self.s.notification_url = url + "?id=%i&status=%s&to=%P&part=%n&done=%y&sent=%t"
        return True

    def report_item(self, it: dict[str, Any], now: dt.datetime) -> dlr.Report:
        if "event" in it:  # account-level event notification (form POST)
            event = str(it["event"]).lower()
            return dlr.Report(self.alias, dlr.text(it.get("id")),
                              dlr.recipient(it.get("to") or it.get("email") or it.get("phone")),
                              self.EVENTS.get(event, event), event, dlr.when(it.get("eventDate"), now), it)
        raw = str(it.get("status", "")).upper()
        return dlr.Report(self.alias, dlr.text(it.get("id")), dlr.recipient(it.get("to")),
                          self.DLR.get(raw, raw.lower() or "unknown"), raw or None,
                          dlr.when(it.get("done") or it.get("sent"), now), it, dlr.part(it.get("part")))
