"""360nrs simulator: `POST /api/rest/sms` as the 360nrs document describes it.

Basic auth (103), the documented validation codes, per-recipient `sub` substitution with
the 360nrs filters, `parts` checked against the text (105, 110 past 15), 202 / 207 / 400
envelopes, credits (402 / 111), 429 past the configured rate, and per-part delivery
reports to `notificationUrl` with its `%` escapes.
"""

from __future__ import annotations

import base64
import re
import time
import urllib.parse
from typing import Any

import orjson
from aiohttp import web

from ..codecs import reference
from .base import Simulator, json_response

ERRORS = {
    101: (500, "Internal database error"), 102: (400, "No valid recipients"), 103: (401, "Invalid username or password"),
    104: (400, "Text message missing"), 105: (400, "Text message too long"), 106: (400, "Sender missing"),
    107: (400, "Sender too long"), 109: (400, "Invalid notification URL"), 110: (400, "Parts exceeded or invalid"),
    111: (402, "Not enough credits"), 113: (400, "Invalid coding"), 125: (400, "Invalid JSON"),
    422: (422, "Input validation error"), 429: (429, "Too many requests"),
}
_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)((?:\|[A-Za-z]+)*)\}")
_NUMBER = re.compile(r"[1-9][0-9]{7,14}")
_SENDER = re.compile(r"[0-9]{1,15}|[A-Za-z0-9 ]{1,11}")
ENCODINGS = {"gsm": "GSM-7", "gsm-pt": "GSM-PT", "utf-16": "UCS-2"}


def error(code: int, description: str | None = None) -> web.Response:
    status, text = ERRORS[code]
    return json_response({"error": {"code": code, "description": description or text}}, status)


def _number(value: str, thousands: str, decimal: str) -> str:
    try:
        whole, _, frac = value.strip().replace(",", ".").partition(".")
        grouped = f"{int(whole):,}".replace(",", thousands)
    except ValueError:
        return value
    return grouped + (decimal + frac if frac else "")


FILTERS = {
    "lower": str.lower, "upper": str.upper,
    "capitalize": lambda s: s[:1].upper() + s[1:],
    "capitalizeAll": lambda s: " ".join(w[:1].upper() + w[1:] for w in s.split(" ")),
    "formatDotComma": lambda s: _number(s, ".", ","), "formatCommaDot": lambda s: _number(s, ",", "."),
    "shorten": lambda s: s,
}


def substitute(text: str, values: dict[str, Any]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            return m.group(0)
        s = str(values[m.group(1)])
        for f in filter(None, m.group(2).split("|")):
            s = FILTERS.get(f, lambda x: x)(s)
        return s
    return _VAR.sub(one, text) if "{" in text else text


def parts_needed(text: str, encoding: str) -> int | None:
    """Parts the text takes in the declared encoding, or None when it cannot be encoded in it."""
    if encoding == "UCS-2":
        return reference.count(text, gsm_pt=False)[2] if len(text) > 35 else 1
    enc, _units, parts = reference.count(text, gsm_pt=encoding == "GSM-PT")
    if enc == "UCS-2" or (enc == "GSM-PT" and encoding == "GSM-7"):
        return None
    return parts


class Nrs360Simulator(Simulator):
    kind = "nrs360"
    default_rate = 50.0
    default_max_batch = 1000

    def __init__(self, *args: Any, username: str = "demo", password: str = "demo-secret", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self._sending = 100000

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/rest/sms", self.sms)]

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
        notify = body.get("notificationUrl")
        if notify is not None:
            urls = notify if isinstance(notify, list) else [notify] * len(to)
            if len(urls) != len(to) or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
                return error(109)
        else:
            urls = None

        texts = [substitute(message, s) for s in sub] if sub else [message] * len(to)
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
            results.append({"accepted": True, "to": number, "id": mid, "parts": n, "scheduledAt": None, "expiresAt": None})
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

    @staticmethod
    def _dlr_url(url: str, mid: str, sender: str, to: str, sent: float, part: int, sending: int) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(sent))
        values = {"i": mid, "p": sender, "P": to, "t": stamp, "c": "1", "s": "DELIVRD", "m": "01", "y": stamp,
                  "n": str(part), "C": "0", "S": str(sending)}
        return re.sub(r"%([ipPtcsmynCS])", lambda m: urllib.parse.quote(values[m.group(1)], safe=""), url)
