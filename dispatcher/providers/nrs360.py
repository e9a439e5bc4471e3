"""360nrs: SMS, email (`/mailing`), WhatsApp templates and voice (text to speech).

Many recipients per request. Texts that differ only by template variables share one
request: the template goes as `message` (`body` for email) and each recipient's values as
`sub` (one object per recipient, same order as `to`), so a personalised campaign costs one
request per `batch_size` recipients instead of one per recipient. Filters are applied here,
not by the server, so the text the server builds is exactly the text the codec counted.

The one exception is `{url|shorten}` in SMS (the channel the seed documents it for): only the
server can shorten (to `https://sms.tl/xxxxxx`, the seed's example), so the filter goes to the
server in the template, with the long link in `sub` (such templates always go with `sub`,
whatever `substitute` says); email and voice send the link as it is. The engine's codec
counted the rendered text with the long link (what any other provider sends); `check`, which
sees each message before it is batched, counts this provider's text again with SHORT_LINK in
place of each shortened link, so `parts`, the 15-part limit and the cost are what 360nrs charges.

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
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any, ClassVar

import msgspec
import orjson

from .. import codecs
from ..codecs.tables import TRANSLATE_TABLE
from ..errors import ConfigError
from ..model import Batch, Content, Message, column, head
from . import dlr
from .base import (
    Accepted,
    HttpRequest,
    Outcome,
    Provider,
    Settings,
    Verdict,
    basic_auth,
    email_address,
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
# "Sender text, this label will consist of 15 numbers or 11 alphanumeric characters" (seed, `from`)
SMS_SENDER = re.compile(r"[0-9]{1,15}|[A-Za-z0-9]{1,11}")
WHATSAPP_SENDER = re.compile(r"[0-9]{6,15}")  # a registered number, digits with the country code ("34666777555")


_ACCEPTED, _ID = itemgetter("accepted"), itemgetter("id")


class _Result(msgspec.Struct, gc=False):
    accepted: bool
    id: str | int | None  # required: an entry without one goes the generic way, as before


class _Answer(msgspec.Struct, gc=False):
    """The fields of a 202 that an all-accepted batch needs, decoded into slotted objects without the rest
    (`to`, `parts`): 122 against 251 us for a 1,000-recipient answer, with orjson's dicts."""
    result: list[_Result]
    sendingId: str | int | None = None


_ANSWER = msgspec.json.Decoder(_Answer)


def _recipients(channel: str, to: list[str]) -> bytes:
    """The "to" array's JSON: addresses as they are, E.164 numbers without their "+" as 360nrs takes them
    (one orjson call and one replace for the batch, no string a number: a "+" only ever leads an E.164
    number, so '"+' is only ever a number's start)."""
    body = orjson.dumps(to)
    return body if channel == "email" else body.replace(b'"+', b'"')


def _substitutions(batch: Sequence[Message]) -> list[dict[str, str] | None] | orjson.Fragment:
    """Each recipient's slot values: a campaign's fresh batch's as JSON made from its value columns (no
    dict a recipient), anything else's as its messages' dicts."""
    if type(batch) is Batch and batch.fresh and batch.vals and batch.content is not None:
        from .. import jsoncols  # numba: only once a campaign's batch is built

        keys = [key for key, _, _ in batch.content.template.slots]
        return orjson.Fragment(jsoncols.objects(keys, batch.vals))
    return column(batch, "slots")


def _kinds(msgs: Sequence[Message]) -> list[Message]:
    """One message for each (channel, content) of a chunk: what the per-content decisions need to see
    (a campaign's chunk has one, a batch always; the daemon's may have several)."""
    first = head(msgs)
    if type(msgs) is Batch:
        return [first]
    content, channel = first.content, first.channel
    if all([m.content is content and m.channel == channel for m in msgs]):
        return [first]
    return list({(m.channel, id(m.content)): m for m in msgs}.values())


def classify(code: int, status: int) -> Verdict:
    if code in RETRYABLE or status >= 500 or status == 429:
        return Verdict.RETRY
    if code in HALTING:
        return Verdict.HALT
    if code in PER_RECIPIENT:
        return Verdict.REJECTED
    return Verdict.FAILED


def _text_key(channel: str, encoding: str, transliterated: bool, text: Hashable) -> Hashable:
    """The batch key of a text message: one request carries one channel, encoding and text (or template)."""
    return (channel, encoding, transliterated, text)


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

    def validate(self, channel: str, content: Content) -> Content:
        """The seed's rules for what every request of the campaign carries: the SMS `from` (106 missing,
        107 too long), the email `fromEmail` / `replyTo`, the WhatsApp `from` (digits, no `+`) and its
        integer `templateId` (140 otherwise)."""
        opts = dict(content.options)
        sender = content.sender.strip()
        if channel == "sms":
            if sender.startswith("+") and sender[1:].isdigit():
                sender = sender[1:]
            if not sender:
                raise ConfigError("message.sender: required: 360nrs SMS need a sender (`from`, code 106)")
            if not SMS_SENDER.fullmatch(sender):
                raise ConfigError(f"message.sender: {content.sender!r} is not a 360nrs SMS sender: at most 11 "
                                  "letters and digits, or at most 15 digits (code 107)")
        elif channel == "email":
            sender = email_address("message.sender", sender, "an email address (`fromEmail`)")
            if opts.get("reply_to"):
                opts["reply_to"] = email_address("message.options.reply_to", opts["reply_to"])
        elif channel == "whatsapp":
            sender = re.sub(r"[\s().-]", "", sender).removeprefix("+")
            if not WHATSAPP_SENDER.fullmatch(sender):
                raise ConfigError(f"message.sender: {content.sender!r} is not a WhatsApp sender: the registered "
                                  "number, digits with the country code (e.g. 34666777555)" if sender else
                                  "message.sender: required: the registered WhatsApp number (`from`)")
            tid = opts.get("template_id")
            if isinstance(tid, str) and tid.strip().isdigit():
                tid = int(tid)
            if isinstance(tid, bool) or not isinstance(tid, int):
                raise ConfigError("message.options.template_id: " + (
                    "required: the approved WhatsApp template's id (an integer)" if tid is None else
                    f"{tid!r} is not an integer: 360nrs WhatsApp template ids are integers (code 140)"))
            opts["template_id"] = tid
        return replace(content, sender=sender, options=opts)

    def _substituted(self, m: Message) -> bool:
        t = m.content.template
        return (self.s.substitute or self._shortens(m)) and bool(t.slots)

    @staticmethod
    def _shortens(m: Message) -> bool:
        """`{url|shorten}` is documented for SMS only: other channels send the link as it is."""
        return m.channel == "sms" and m.content.template.shortens

    def batch_key(self, m: Message) -> Hashable:
        if m.channel == "whatsapp":  # the template lives on the server: every recipient can share a request
            return (m.channel, id(m.content))
        return _text_key(m.channel, m.encoding, m.transliterated, id(m.content) if self._substituted(m) else m.text)

    def reads_fields(self, channel: str, content: Content) -> bool:
        return channel == "whatsapp" and any(content.options.get(o) for o in WHATSAPP_FIELDS)

    def checks_each(self, msgs: Sequence[Message]) -> bool:
        """Shortened links, voice lengths and WhatsApp fields are checked a message at a time; plain SMS and
        email only against the limits."""
        return any(m.channel in ("voice", "whatsapp") or self._shortens(m) for m in _kinds(msgs))

    def batch_keys(self, msgs: Sequence[Message]) -> list[Hashable]:
        first = head(msgs)
        if first.channel != "whatsapp" and self._substituted(first) and len(_kinds(msgs)) == 1:
            # batch_key for the whole chunk at once: one key a (encoding, transliterated)
            channel, cid = first.channel, id(first.content)
            enc, tr = column(msgs, "encoding"), column(msgs, "transliterated")
            if tr.count(tr[0]) == len(tr):
                key = {e: _text_key(channel, e, tr[0], cid) for e in set(enc)}
                return list(map(key.__getitem__, enc))
            return [_text_key(channel, e, t, cid) for e, t in zip(enc, tr, strict=True)]
        return [self.batch_key(m) for m in msgs]

    def check(self, m: Message) -> tuple[str, str] | None:
        if self._shortens(m):
            self._count_shortened(m)
        if m.channel == "voice" and len(m.text) > VOICE_MAX_CHARS:
            return "too_long", f"{len(m.text)} characters, 360nrs voice messages hold at most {VOICE_MAX_CHARS}"
        if m.channel == "whatsapp":
            for option in WHATSAPP_FIELDS:
                for name in m.content.options.get(option) or ():
                    if m.vars.get(name) in (None, ""):
                        return "missing_variable", f"template field '{name}' has no value in this record"
        return super().check(m)

    @staticmethod
    def _count_shortened(m: Message) -> None:
        """Encoding and parts of the text 360nrs will send: shortened links, not the long ones."""
        text = m.content.template.shortened(m.slots)
        if m.transliterated:
            text = text.translate(TRANSLATE_TABLE)
        a = codecs.analyze([text], gsm_pt=m.encoding == "GSM-PT")
        m.encoding = codecs.ENCODINGS[int(a.encoding[0])]
        m.parts = int(a.parts[0])

    def build(self, batch: Sequence[Message]) -> HttpRequest:
        first = head(batch)
        c = first.content
        if first.channel == "whatsapp":
            body = self._whatsapp(batch)
        else:
            # "to" first, as one block of the batch's numbers, written into the body as it is
            body = {"to": orjson.Fragment(_recipients(first.channel, column(batch, "to")))}
            if first.channel == "sms":
                body.update({"from": c.sender, "encoding": ENCODING.get(first.encoding, "gsm"),
                             "parts": max(column(batch, "parts")) or 1})
            elif first.channel == "email":
                opts = c.options
                body.update({"fromEmail": c.sender, "replyTo": opts.get("reply_to") or c.sender, "subject": c.subject})
                if opts.get("from_name"):
                    body["fromName"] = opts["from_name"]
            else:  # voice
                body.update({k: c.options[k] for k in VOICE_OPTIONS if k in c.options})
            text = "body" if first.channel == "email" else "message"
            source = c.template.short_source if self._shortens(first) else c.template.server_source
            substituted = self._substituted(first)
            if substituted and first.transliterated:
                # transliteration maps character by character, so transliterating the template and
                # each value gives exactly the transliterated text the codec counted
                body[text] = source.translate(TRANSLATE_TABLE)
                body["sub"] = [{k: v.translate(TRANSLATE_TABLE) for k, v in slots.items()}
                               for slots in column(batch, "slots")]
            elif substituted:
                body[text] = source
                body["sub"] = _substitutions(batch)
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

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str],
              body: bytes) -> list[Outcome] | Accepted:
        if status in (202, 207) and body:  # the common answer first: every recipient accepted
            try:
                answer = _ANSWER.decode(body)
            except msgspec.MsgspecError:  # another shape: read generically below
                answer = None
            if answer is not None and len(answer.result) == len(batch) and \
                    all([r.accepted for r in answer.result]):
                sending = answer.sendingId
                return Accepted([r.id for r in answer.result], None if sending is None else str(sending))
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

    def _per_recipient(self, batch: Sequence[Message], results: list, trace: str | None) -> list[Outcome] | Accepted:
        if len(results) == len(batch):
            try:
                if all(map(_ACCEPTED, results)):
                    return Accepted(list(map(_ID, results)), trace)
            except (KeyError, TypeError):  # an entry without the key, or not an object: one at a time below
                pass
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
