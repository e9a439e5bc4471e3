"""SmsGateway24 (smsgateway24.com): an Android phone sends SMS, WhatsApp or RCS from its SIM slots.

A token comes from `gettoken` (email + password) in `authenticate` and travels as the
`token` parameter; an answer saying the token is bad asks the engine to authenticate again
(REAUTH) and resend. Messages go in bulk through `addalotofsms` (one form field `datajson`
holding `{"token", "smsdata": [...]}`; any messages may share a request, each item carries
its own number, text, device and SIM slot), or one per request through `addsms` with
`bulk = false`.

The bulk answer is `{"error":0,"message":...}` with no ids (smsgateway24.md, "addalotofsms"),
so a bulk result has `message_id` None and its `customerid` (the record's `seq`) in `meta`:
that is the key to find the message with `getallsms?customerid=` and to pair status
webhooks (by `sms_id`) afterwards. `addsms` answers one `sms_id`, which becomes the message id.
Every reply carries `error` (0 / 1) in an HTTP 200: `error:1` is a failure whatever the status.

The seed documents `error: 1` with a free "Mensagem de erro" and no codes or texts, so no
text can be trusted to say what went wrong. A few words are read as hints (MESSAGES below:
"token" or "login" logs in again, "device" or "credit" halts); any other text is handled safely: the
first one logs in again (an expired token that does not say "token"), and if the gateway
still refuses, the batch is retried with backoff; only after the attempts run out does it
fail, saying the text was not recognised. One batch of up to 1,000 never fails on a text
it has not seen before on the first try.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import urllib.parse
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import aiohttp
import orjson

from ..model import Message
from . import dlr
from .base import HttpRequest, Outcome, Provider, Settings, Verdict, http_default, secret

# -- every path and field name, in one place ----------------------------------------------------
API: dict[str, str] = {
    "base": "/getdata",  # appended to the configured url unless already there
    "token_path": "/gettoken", "single_path": "/addsms", "bulk_path": "/addalotofsms",
    "email": "email", "password": "pass", "token": "token",
    "bulk_field": "datajson", "items": "smsdata",
    "to": "sendto", "body": "body", "device": "device_id", "sim": "sim", "customer": "customerid",
    "urgent": "urgent", "when": "timetosend",
    "error": "error", "message": "message", "sms_id": "sms_id",
}
SIM_SLOTS = {"sms": (0, 1), "whatsapp": (2, 3), "rcs": (4, 5)}  # 2 WhatsApp Business, 3 WhatsApp; 4, 5 RCS

# `error:1` carries only a text; the published material gives no codes and no texts. These are
# hints (pattern, verdict, code), in order, kept loose on purpose; a text none matches is not final
# (see `SmsGateway24.unrecognised`).
MESSAGES: tuple[tuple[re.Pattern[str], Verdict, str], ...] = (
    (re.compile(r"token", re.I), Verdict.REAUTH, "token"),
    # a send refused with words about logging in: the session may have ended; a new login settles it
    # (wrong credentials then fail `gettoken`, which halts the provider)
    (re.compile(r"login|password", re.I), Verdict.REAUTH, "login"),
    (re.compile(r"credit|balance|subscription|tariff|payment", re.I), Verdict.HALT, "no_credit"),
    (re.compile(r"device", re.I), Verdict.HALT, "device"),
    (re.compile(r"too many|try again|temporar", re.I), Verdict.RETRY, "busy"),
)


def classify(message: str) -> tuple[Verdict, str] | None:
    """The verdict a known text hints at, or None for a text no hint matches."""
    for pattern, verdict, code in MESSAGES:
        if pattern.search(message):
            return verdict, code
    return None


class LoginRefused(Exception):
    """gettoken answered `error:1` (its text, never the credentials, is the message).

    The engine reports a failed authentication by the exception's class name, so the name says it."""


class GatewayBusy(LoginRefused):
    """gettoken kept answering 429 / 5xx."""


@dataclass(slots=True)
class SmsGateway24Settings(Settings):
    email_env: str = ""
    password_env: str = ""
    device_id: int = 0  # the phone, unless `[message] options` has `device_id`
    sim: int = -1  # SIM slot unless options has `sim`; -1: the channel's first (sms 0, whatsapp 2, rcs 4)
    urgent: bool = False  # picked up first by the phone (OTP)
    bulk: bool = True  # addalotofsms (no ids back); false: addsms, one message a request, with its sms_id


class SmsGateway24(Provider):
    kind = "smsgateway24"
    channels = frozenset(SIM_SLOTS)
    default_rate = 10.0  # none documented; the simulator's default
    max_batch = 1000  # none documented; the simulator's cap
    default_concurrency = 4
    settings_class = SmsGateway24Settings

    def __init__(self, alias: str, settings: SmsGateway24Settings) -> None:
        super().__init__(alias, settings)
        self._email = secret(alias, "email_env", settings.email_env)
        self._password = secret(alias, "password_env", settings.password_env)
        base = settings.url.rstrip("/")
        self._base = base if base.endswith(API["base"]) else base + API["base"]
        self._headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        self._token = ""
        self._relogged = False  # an unrecognised error already made us log in again (since the last success)
        if not settings.bulk:
            self.batch_size = 1

    @property
    def s(self) -> SmsGateway24Settings:
        return cast(SmsGateway24Settings, self.settings)

    # -- token ---------------------------------------------------------------------------------
    async def authenticate(self, session: aiohttp.ClientSession) -> None:
        form = urllib.parse.urlencode({API["email"]: self._email, API["password"]: self._password})
        for attempt in range(6):
            async with session.post(self._base + API["token_path"], data=form, headers=self._headers) as r:
                body = await r.read()
                if r.status == 429 or r.status >= 500:  # busy: the token is worth a short wait
                    await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
                    continue
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict) and _ok(data) and data.get(API["token"]):
                self._token = str(data[API["token"]])
                return
            text = str(data.get(API["message"], "")) if isinstance(data, dict) else f"HTTP {r.status}"
            raise LoginRefused(text or "no token in the answer")
        raise GatewayBusy("the gateway stayed busy")

    # -- batching ------------------------------------------------------------------------------
    def batch_key(self, m: Message) -> Hashable:
        return m.seq if self.batch_size == 1 else m.channel  # items are independent: any may share a request

    def check(self, m: Message) -> tuple[str, str] | None:
        if not m.text:
            return "empty_body", "the message text is empty"
        try:
            self._slot(m)
        except ValueError as e:
            return "bad_option", str(e)
        return Provider.check(self, m)

    def _slot(self, m: Message) -> tuple[int, int]:
        """(device_id, sim) for a message, from its options or the provider's settings."""
        opts = m.content.options if m.content is not None else {}
        device = opts.get("device_id") or self.s.device_id
        if not device:
            raise ValueError(f"no phone: set options.device_id or providers.{self.alias}.device_id")
        if not isinstance(device, int) and not str(device).isdigit():
            raise ValueError(f"device_id {device!r} is not a number")
        slots = SIM_SLOTS[m.channel]
        sim = opts.get("sim", self.s.sim)
        sim = slots[0] if sim is None or sim == -1 else sim
        if not isinstance(sim, int) or sim not in slots:
            raise ValueError(f"SIM slot {sim!r} does not carry {m.channel} (use {slots[0]} or {slots[1]})")
        return int(device), sim

    def _item(self, m: Message) -> dict[str, Any]:
        device, sim = self._slot(m)
        item: dict[str, Any] = {API["to"]: m.to, API["body"]: m.text, API["device"]: device, API["sim"]: sim,
                                API["customer"]: m.seq}
        opts = m.content.options if m.content is not None else {}
        if opts.get("urgent", self.s.urgent):
            item[API["urgent"]] = 1
        if opts.get("timetosend"):
            item[API["when"]] = str(opts["timetosend"])
        return item

    # -- one request ---------------------------------------------------------------------------
    def build(self, batch: Sequence[Message]) -> HttpRequest:
        items = [self._item(m) for m in batch]
        if self.s.bulk:
            doc = orjson.dumps({API["token"]: self._token, API["items"]: items}).decode()
            body = urllib.parse.urlencode({API["bulk_field"]: doc})
            return HttpRequest("POST", self._base + API["bulk_path"], self._headers, body.encode())
        fields = {API["token"]: self._token, **{k: str(v) for k, v in items[0].items()}}
        return HttpRequest("POST", self._base + API["single_path"], self._headers, urllib.parse.urlencode(fields).encode())

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str], body: bytes) -> list[Outcome]:
        if status == 429 or status >= 500:
            return [http_default(status, _text(body), headers=headers)] * len(batch)
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or API["error"] not in data:
            if 200 <= status < 300:  # it may have queued them: say so rather than guess
                return [Outcome(Verdict.FAILED, code="unreadable", error=f"unreadable answer: {_text(body)}",
                                extra={"customerid": m.seq, "in_doubt": True}) for m in batch]
            return [http_default(status, _text(body), headers=headers)] * len(batch)
        if not _ok(data):
            message = str(data.get(API["message"]) or "error 1 without a message")
            hint = classify(message)
            return [Outcome(hint[0], code=hint[1], error=message) if hint else self.unrecognised(message)] * len(batch)
        self._relogged = False
        if 200 <= status < 300:
            if not self.s.bulk:
                sid = data.get(API["sms_id"])
                return [Outcome(Verdict.SENT, message_id=str(sid) if sid is not None else None,
                                extra={"customerid": m.seq}) for m in batch]
            return [Outcome(Verdict.SENT, extra={"customerid": m.seq}) for m in batch]
        return [http_default(status, _text(body), headers=headers)] * len(batch)

    def unrecognised(self, message: str) -> Outcome:
        """An `error:1` text no hint matches: log in again once (it may be an expired token in words
        we do not know), then retry with backoff; the last attempt fails with this text."""
        if not self._relogged:
            self._relogged = True
            return Outcome(Verdict.REAUTH, code="unrecognised", error=message)
        return Outcome(Verdict.RETRY, code="unrecognised",
                       error=f"the gateway's error text was not recognised (after a new login and retries): {message}")

    # -- delivery reports ---------------------------------------------------------------------------
    # The device's status webhook, JSON {sms_id, status_id, status_message, sendto, senttime, ...}, and
    # incoming messages; the bulk send answers no ids, so the first report is paired by recipient.
    ids_in_answers: ClassVar[bool] = False
    STATUSES: ClassVar[dict[int, str]] = {1: "accepted", 2: "accepted", 3: "accepted", 5: "incoming", 6: "sent",
                                          7: "delivered", 8: "undelivered", 9: "failed"}

    def report_item(self, it: dict[str, Any], now: dt.datetime) -> dlr.Report:
        if "status_id" in it:
            sid = int(it["status_id"])
            return dlr.Report(self.alias, dlr.text(it.get("sms_id")), dlr.recipient(it.get("sendto")),
                              self.STATUSES.get(sid, "unknown"), f"{sid} {it.get('status_message') or ''}".strip(),
                              dlr.when(it.get("senttime"), now) if sid in (6, 7) else now, it)
        return dlr.Report(self.alias, dlr.text(it.get("sms_id") or it.get("internal_id")),
                          dlr.recipient(it.get("address")), "incoming", dlr.text(it.get("type")),
                          dlr.when(it.get("date"), now), it)


def _ok(data: dict) -> bool:
    e = data.get(API["error"])
    return e in (0, "0", False)


def _text(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace") if body else ""
