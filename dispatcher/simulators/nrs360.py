"""360nrs simulator: `POST /api/rest/sms`, `/mailing`, `/whatsapp` and `/voice` as the 360nrs
document describes them.

Basic auth (103), the documented validation codes (the seed's table, its descriptions),
per-recipient `sub` substitution with the 360nrs filters (`shorten` gives `https://sms.tl/`
and six characters, as the seed's example, and parts are counted on the shortened text),
`parts` checked against the text (105, 110 past 15), `trans = 1` applying the seed's
translation table before counting, `scheduleDate` / `expirationDate` only in the seed's
`YYYYmmddHHiiss` (108 / 119), `tags` only with a `campaignName` (126), 202 / 207 / 400
envelopes, credits (402 / 111), 429 past the configured rate, and per-part delivery
reports to `notificationUrl` with its `%` escapes.

Email: verified sender and replyTo domains (115 / 117), subject (114), body or a known
template (104 / 140), per-recipient address check (102). WhatsApp: a known approved
template (140) whose body / header field counts each message must match, a registered
sender, per-message errors naming the index (`messages.1.to`), UUID ids. Voice: language
(130), gender (131, some languages are female only), callers (132), at most 500 characters
per recipient after substitution (105). The account-level event notifications (form POST,
event `delivered`) go to `events_url` for these three channels when it is set
(`--set nrs360.events_url=...` or live `POST /_sim/options`), as are `verified_domains` and
`whatsapp_templates` (`id:body fields:header fields,...`).
"""

from __future__ import annotations

import base64
import re
import time
import urllib.parse
import uuid
from typing import Any

import orjson
from aiohttp import web

from .base import Simulator, json_response
from .nrs360_text import TRANS, compile_message, parts_needed, stamp

# The seed's error table ("Errors | Error Code | HTTP Code | Description"), descriptions as written there.
ERRORS = {
    101: (500, "Internal Database error"), 102: (400, "No valid recipients"),
    103: (401, "Username or password unknown"), 104: (400, "Text message missing"),
    105: (400, "Text message too long"), 106: (400, "Sender missing"), 107: (400, "Sender too long"),
    108: (400, "No valid Datetime for send"), 109: (400, "Notification URL incorrect"),
    110: (400, "Exceeded maximum parts allowed or incorrect number of parts"), 111: (402, "Not enough credits"),
    112: (401, "IP address not allowed"), 113: (400, "Invalid coding"), 114: (400, "Invalid subject"),
    115: (400, "Sender is not verified"), 116: (400, "Invalid replyTo"), 117: (400, "ReplyTo is not verified"),
    119: (400, "Invalid expiration date"), 125: (400, "Invalid JSON"), 126: (400, "Empty campaign name"),
    130: (400, "Invalid voice language"), 131: (400, "Invalid voice gender"), 132: (400, "Invalid voice caller"),
    140: (400, "Template missing"),
    # not in the seed's table [inf]: the body of a request with the right JSON but wrong types, and the rate
    422: (422, "Input validation error"), 429: (429, "Too many requests"),
}
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
VOICE_LANGUAGES = {"en_GB", "en_US", "es_ES", "es_US", "pt_PT", "pt_BR", "cmn_CN", "arb", "de_DE", "fr_FR", "it_IT",
                   "hi_IN"}
FEMALE_ONLY = {"cmn_CN", "arb", "hi_IN"}
VOICE_MAX = 500
RESULT_FIELDS = {"email": {"scheduledAt": None}, "voice": {"scheduledAt": None, "expiresAt": None}, "whatsapp": {}}
EVENT_CHANNEL = {"email": "mailing", "voice": "text2speech", "whatsapp": "whatsapp"}
_NUMBER = re.compile(r"[1-9][0-9]{7,14}")
_SENDER = re.compile(r"[0-9]{1,15}|[A-Za-z0-9 ]{1,11}")
ENCODINGS = {"gsm": "GSM-7", "gsm-pt": "GSM-PT", "utf-16": "UCS-2"}


def error(code: int, description: str | None = None) -> web.Response:
    status, text = ERRORS[code]
    return json_response({"error": {"code": code, "description": description or text}}, status)


def campaign_fields(body: dict[str, Any]) -> web.Response | None:
    """The parameters every channel shares: `scheduleDate` / `expirationDate` in the seed's
    `YYYYmmddHHiiss` (108 / 119), `tags` only with a `campaignName` (126), `trans` 0 or 1."""
    if "scheduleDate" in body and stamp(body["scheduleDate"]) is None:
        return error(108)
    if "expirationDate" in body and stamp(body["expirationDate"]) is None:
        return error(119)
    tags = body.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return error(422, "The tags field must be an array of strings.")
        if not isinstance(body.get("campaignName"), str) or not body["campaignName"].strip():
            return error(126)
    if body.get("trans", 0) not in (0, 1) or isinstance(body.get("trans"), bool):
        return error(422, "The trans field must be 0 or 1.")
    return None


def scheduled_at(body: dict[str, Any]) -> str | None:
    when = stamp(body.get("scheduleDate"))
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else None


class Nrs360Simulator(Simulator):
    kind = "nrs360"
    option_types = {"events_url": str, "verified_domains": str, "whatsapp_templates": str}
    default_rate = 50.0
    default_max_batch = 1000

    def __init__(self, *args: Any, username: str = "demo", password: str = "demo-secret",
                 verified_domains: str = "example.com,example.org,acme.com", email_templates: str = "1,2",
                 whatsapp_senders: str = "34666777555", whatsapp_templates: str = "123:2:0,124:0:0,125:1:1",
                 events_url: str = "", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self._sending = 100000
        self.email_templates = {int(t) for t in email_templates.split(",") if t.strip()}
        self.whatsapp_senders = {s.strip() for s in whatsapp_senders.split(",") if s.strip()}
        self.defaults = {"events_url": events_url, "verified_domains": verified_domains,
                         "whatsapp_templates": whatsapp_templates}
        self.options = dict(self.defaults)

    @property
    def verified(self) -> set[str]:
        """The account's verified email domains (live option `verified_domains`, comma-separated)."""
        return {d.strip().lower() for d in self.options["verified_domains"].split(",") if d.strip()}

    @property
    def whatsapp_templates(self) -> dict[int, tuple[int, int]]:
        """id -> (body fields, header fields), from the live option `whatsapp_templates`
        (`id:body:header,...`): the seed's examples use one id, 123, for templates of every shape."""
        out = {}
        for spec in filter(None, (t.strip() for t in self.options["whatsapp_templates"].split(","))):
            tid, body_n, header_n = ([*spec.split(":"), "0", "0"])[:3]
            out[int(tid)] = (int(body_n or 0), int(header_n or 0))
        return out

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/rest/sms", self.sms), web.post("/api/rest/mailing", self.mailing),
                web.post("/api/rest/whatsapp", self.whatsapp), web.post("/api/rest/voice", self.voice)]

    def too_many(self) -> web.Response:
        r = error(429)
        r.headers["Retry-After"] = "1"
        return r

    def server_error(self) -> web.Response:
        return error(101)

    async def sms(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self._auth:
            return error(103)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error(125)
        if not isinstance(body, dict):
            return error(125)
        fields = self._sms_fields(body)
        if isinstance(fields, web.Response):
            return fields
        to, sender, message, encoding, parts, sub, urls = fields
        if sub:
            render = compile_message(message)
            texts = [render(s) for s in sub]
        else:
            texts = [message] * len(to)
        if body.get("trans") == 1:
            texts = [t.translate(TRANS) for t in texts]
        when, expires = scheduled_at(body), stamp(body.get("expirationDate"))
        expires_at = expires.strftime("%Y-%m-%d %H:%M:%S") if expires else None
        plan, cost = self._sms_plan(to, texts, encoding, parts, bool(sub))
        if cost and not self.spend(cost):
            return error(111)

        self._sending += 1
        sending, now = self._sending, time.time()
        results = []
        accepted = 0
        for i, p in enumerate(plan):
            if len(p) == 2:
                code = p[1]
                results.append({"accepted": False, "to": p[0], "error": {"code": code, "description": ERRORS[code][1]}})
                continue
            number, text, n = p
            mid = self.next_id()
            accepted += 1
            results.append({"accepted": True, "to": number, "id": mid, "parts": n, "scheduledAt": when,
                            "expiresAt": expires_at})
            self.record({"id": mid, "to": number, "from": sender, "text": text, "parts": n, "encoding": encoding,
                         "channel": "sms", "sending": sending})
            if urls:
                for part in range(1, n + 1):
                    self.report("GET", self._dlr_url(urls[i], mid, sender, number, now, part, sending))
        if not accepted:
            code = plan[0][1]
            return error(code, ERRORS[code][1])
        status = 202 if accepted == len(plan) else 207
        return json_response({"campaignId": 0, "sendingId": sending, "result": results}, status)

    def _sms_fields(self, body: dict[str, Any]) -> tuple[Any, ...] | web.Response:
        """An SMS request's fields checked in the seed's order (to, from, message, encoding, parts, sub, the
        shared campaign fields, notificationUrl), or the error the first wrong one gets."""
        to = body.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to:
            return error(102)
        if len(to) > self.max_batch:
            return error(422, f"At most {self.max_batch} recipients per request")
        sender = body.get("from")
        if not sender:
            return error(106)
        if not isinstance(sender, str) or not _SENDER.fullmatch(sender):
            return error(107)
        message = body.get("message")
        if not isinstance(message, str) or not message:
            return error(104)
        encoding = ENCODINGS.get(body.get("encoding", "gsm"))
        if encoding is None:
            return error(113)
        parts = body.get("parts", 1)
        if not isinstance(parts, int) or isinstance(parts, bool) or not 1 <= parts <= 15:
            return error(110)
        sub = body.get("sub")
        if sub is not None and (not isinstance(sub, list) or len(sub) != len(to)
                                or not all(isinstance(s, dict) for s in sub)):
            return error(422, "sub must hold one object per recipient")
        refused = campaign_fields(body)
        if refused is not None:
            return refused
        notify = body.get("notificationUrl")
        if notify is not None:
            urls = notify if isinstance(notify, list) else [notify] * len(to)
            if len(urls) != len(to) or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
                return error(109)
        else:
            urls = None

        return to, sender, message, encoding, parts, sub, urls

    @staticmethod
    def _sms_plan(to: list[Any], texts: list[str], encoding: str, parts: int, sub: bool
                  ) -> tuple[list[tuple[Any, ...]], int]:
        """(to, text, parts) of each acceptable recipient or (to, error code), and the credits they cost."""
        needed: dict[str, int | None] = {}
        plan = []  # (to, text, parts) of acceptable recipients, or (to, error code)
        cost = 0
        for number, text in zip(to, texts, strict=True):
            if not isinstance(number, str) or not _NUMBER.fullmatch(number):
                plan.append((number, 102))
                continue
            n = needed.get(text, -1) if not sub else -1
            if n == -1:
                n = needed[text] = parts_needed(text, encoding)
            if n is None:
                plan.append((number, 113))
            elif n > parts:
                plan.append((number, 105))
            else:
                plan.append((number, text, n))
                cost += n
        return plan, cost

    @staticmethod
    def _dlr_url(url: str, mid: str, sender: str, to: str, sent: float, part: int, sending: int) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(sent))
        values = {"i": mid, "p": sender, "P": to, "t": stamp, "c": "1", "s": "DELIVRD", "m": "01", "y": stamp,
                  "n": str(part), "C": "0", "S": str(sending)}
        return re.sub(r"%([ipPtcsmynCS])", lambda m: urllib.parse.quote(values[m.group(1)], safe=""), url)

    # -- email, WhatsApp, voice ---------------------------------------------------------------
    async def _json(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.headers.get("Authorization") != self._auth:
            return error(103)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error(125)
        return body if isinstance(body, dict) else error(125)

    def _recipients(self, values: Any) -> list[Any] | web.Response:
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values:
            return error(102)
        if len(values) > self.max_batch:
            return error(422, f"At most {self.max_batch} recipients per request")
        return values

    @staticmethod
    def _texts(body: dict[str, Any], key: str, n: int) -> list[str] | web.Response:
        """Each recipient's text: `body[key]` with its `sub` values."""
        sub = body.get("sub")
        if sub is None:
            return [body[key]] * n
        if not isinstance(sub, list) or len(sub) != n or not all(isinstance(s, dict) for s in sub):
            return error(422, "sub must hold one object per recipient")
        render = compile_message(body[key])
        return [render(s) for s in sub]

    def _verified(self, address: Any) -> bool:
        return isinstance(address, str) and bool(_EMAIL.fullmatch(address)) \
            and address.rsplit("@", 1)[1].lower() in self.verified

    def _accept(self, channel: str, plan: list[tuple[Any, Any]], body: dict[str, Any]) -> web.Response:
        """plan: per recipient (to, ledger fields) when acceptable, (to, (code, description)) when not."""
        refused = campaign_fields(body)
        if refused is not None:
            return refused
        fields = dict(RESULT_FIELDS[channel])
        if "scheduledAt" in fields:
            fields["scheduledAt"] = scheduled_at(body)
        cost = sum(1 for _, p in plan if isinstance(p, dict))
        if cost and not self.spend(cost):
            return error(111)
        self._sending += 1
        sending, now = self._sending, time.time()
        results, accepted = [], 0
        for to, p in plan:
            if not isinstance(p, dict):
                results.append({"accepted": False, "to": to, "error": {"code": p[0], "description": p[1]}})
                continue
            mid = str(uuid.UUID(int=self.random.getrandbits(128), version=4)) if channel == "whatsapp" \
                else self.next_id()
            accepted += 1
            results.append({"accepted": True, "to": to, "id": mid, **fields})
            self.record({"id": mid, "to": to, **p, "channel": channel, "sending": sending})
            if self.options["events_url"]:
                self._event(channel, mid, now)
        if not accepted:
            code, description = plan[0][1]
            return error(code, description)
        status = 202 if accepted == len(plan) else 207
        return json_response({"campaignId": 0, "sendingId": sending, "result": results}, status)

    def _event(self, channel: str, mid: str, when: float) -> None:
        form = {"id": mid, "channel": EVENT_CHANNEL[channel], "contactId": "0", "campaignId": "0", "campaignName": "",
                "event": "delivered", "extra": "{}", "eventDate": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))}
        if channel == "email":
            form["smtpResponse"] = "250 2.0.0 OK"
        self.report("FORM", self.options["events_url"], form)

    async def mailing(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        to = self._recipients(body.get("to"))
        if isinstance(to, web.Response):
            return to
        sender, reply_to, subject = body.get("fromEmail"), body.get("replyTo"), body.get("subject")
        if not sender:
            return error(106)
        if not self._verified(sender):
            return error(115)
        if not isinstance(reply_to, str) or not _EMAIL.fullmatch(reply_to):
            return error(116)
        if not self._verified(reply_to):
            return error(117)
        if not isinstance(subject, str) or not subject.strip() or len(subject) > 255:
            return error(114)
        for key in ("cc", "bcc"):
            extra = body.get(key, [])
            if not isinstance(extra, list) or not all(isinstance(e, str) and _EMAIL.fullmatch(e) for e in extra):
                return error(422, f"The {key} field must hold email addresses")
        template = body.get("templateId", body.get("templateV2Id"))
        if template is not None and (isinstance(template, bool) or not isinstance(template, int)
                                     or template not in self.email_templates):
            return error(140)
        if template is None and (not isinstance(body.get("body"), str) or not body["body"]):
            return error(104)
        texts = self._texts(body, "body", len(to)) if template is None else [None] * len(to)
        if isinstance(texts, web.Response):
            return texts
        plan = []
        for address, text in zip(to, texts, strict=True):
            if not isinstance(address, str) or not _EMAIL.fullmatch(address):
                plan.append((address, (102, ERRORS[102][1])))
                continue
            plan.append((address, {"from": sender, "fromName": body.get("fromName"), "replyTo": reply_to,
                                   "subject": subject, "text": text, "template": template}))
        return self._accept("email", plan, body)

    async def voice(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        to = self._recipients(body.get("to"))
        if isinstance(to, web.Response):
            return to
        if not isinstance(body.get("message"), str) or not body["message"]:
            return error(104)
        language, gender = body.get("language"), body.get("gender")
        if language not in VOICE_LANGUAGES:
            return error(130)
        if gender not in ("F", "M") or (gender == "M" and language in FEMALE_ONLY):
            return error(131)
        callers = body.get("callers", {})
        if not isinstance(callers, dict) or not all(isinstance(v, str) and v.isdigit() for v in callers.values()):
            return error(132)
        retries = body.get("retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 5:
            return error(422, "The retries field must be between 0 and 5")
        texts = self._texts(body, "message", len(to))
        if isinstance(texts, web.Response):
            return texts
        plan = []
        for number, text in zip(to, texts, strict=True):
            if not isinstance(number, str) or not _NUMBER.fullmatch(number):
                plan.append((number, (102, ERRORS[102][1])))
            elif len(text) > VOICE_MAX:
                plan.append((number, (105, f"Text message too long ({len(text)} characters, at most {VOICE_MAX})")))
            else:
                plan.append((number, {"text": text, "language": language, "gender": gender}))
        return self._accept("voice", plan, body)

    async def whatsapp(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        tid = body.get("templateId")
        if tid is None:
            return error(140)
        templates = self.whatsapp_templates
        if isinstance(tid, bool) or not isinstance(tid, int) or tid not in templates:
            return error(140, "Invalid template")
        sender = body.get("from")
        if not sender:
            return error(106)
        if sender not in self.whatsapp_senders:
            return error(422, "The selected from is invalid.")
        messages = self._recipients(body.get("messages"))
        if isinstance(messages, web.Response):
            return messages
        want = dict(zip(("bodyFields", "headerFields"), templates[tid], strict=True))
        plan = []
        for i, m in enumerate(messages):
            to = m.get("to") if isinstance(m, dict) else None
            if not isinstance(to, str) or not _NUMBER.fullmatch(to):
                plan.append((to, (102, f"The messages.{i}.to field does not contain a valid phone number")))
                continue
            problem = None
            for key, n in want.items():
                fields = m.get(key, [])
                if not isinstance(fields, list) or len(fields) != n:
                    problem = f"The messages.{i}.{key} field must contain {n} items."
                elif not all(isinstance(f, str) and f.strip() for f in fields):
                    problem = f"The messages.{i}.{key} items must not be empty."
                if problem:
                    break
            if problem:
                plan.append((to, (422, problem)))
                continue
            plan.append((to, {"from": sender, "templateId": tid, "bodyFields": m.get("bodyFields", []),
                              "headerFields": m.get("headerFields", [])}))
        return self._accept("whatsapp", plan, body)

    # -- control ---------------------------------------------------------------------------------
    async def _reset(self, request: web.Request) -> web.Response:
        return await super()._reset(request)
