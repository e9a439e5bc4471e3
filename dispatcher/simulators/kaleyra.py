"""Kaleyra Hexa simulator: `POST /v1/<SID>/messages` (and `/sms`) as kaleyra.md describes it.

`api-key` header (or query parameter) checked against the SID in the path (401); form or JSON
bodies; the seed's E-codes for every validation rule, including the per-type number limits
(OTP one: E404, TXN at most 100: E405, several numbers only for MKT: E400, MKT capped at
`max_batch`, default 1000); numbers it cannot read are dropped from `data` (E406 if none is
left); `unicode=0` with a text outside GSM 03.38 is refused (E604: a strictness of the
simulator, so an adapter that picks the wrong flag is caught); credits per part and number
(402 NO-CREDITS); 202 with one `data` entry per accepted number; 429 E429 past the rate
(default 20 requests/s: none is published); faults answer 500 E403. Delivery reports go to
the `callback` JSON (GET query string or POST JSON) and to the seed's `dlrurl` (GET), and
`GET .../messages/status?message_ids=` answers from the same state. A scheduled `time` must
be at least 5 minutes and at most 3 months ahead, as the seed's E402 says ("Minimum 5 minutes
time gap is required and 3 months from now"; `schedule_min_minutes` changes the 5).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from ..codecs import reference
from .base import Simulator, json_response

ERRORS = {
    "E400": "For bulk SMS type should be MKT", "E401": "SMS length is exceeding 4000 characters",
    "E402": "Invalid schedule time. Minimum 5 minutes time gap is required and 3 months from now", "E403": "Some thing went wrong at our end please try again after some time",
    "E404": "If Type is OTP then only one mobile number is allowed",
    "E405": "If Type is TXN then mobile numbers should not be more than 100", "E406": "No Valid mobile numbers found",
    "E600": "To field has to be filled", "E601": "Body cannot be left empty", "E602": "Sender-Id is required",
    "E603": "Port number must contain only numbers", "E604": "Unicode should contain only 0, 1 or AUTO",
    "E605": "Duplicate should contain only 1 or 0", "E606": "Flash should contain only 1 or 0",
    "E608": "ref should contain only alpha numerics", "E609": "ref1 should contain only alpha numerics",
    "E610": "ref2 should contain only alpha numerics", "E611": "Type is required",
    "E612": "For Group SMS Use Either 'to' field or 'list_id' field", "E613": "List_id field has to be filled",
    "E614": "For 'list_id' type should not be OTP", "E615": "Type has to be either TXN, MKT or OTP",
    "E619": "InValid Sender ID Pattern", "E429": "Too many requests", "NO-CREDITS": "Insufficient credits",
    "INVALID-CALLBACK": "callback must be JSON with an http(s) url and method GET or POST",
    "AUTH": "Invalid api-key or SID",
}
STATUS = {"E429": 429, "E403": 500, "NO-CREDITS": 402, "AUTH": 401}
TYPES = ("MKT", "TXN", "OTP", "DEFAULT")
MAX_CHARS = 4000
_NUMBER = re.compile(r"\+?[1-9][0-9]{7,14}")
_SENDER = re.compile(r"[A-Za-z0-9]{3,11}|\+?[0-9]{3,15}")
_ALNUM = re.compile(r"[A-Za-z0-9]*")
_FLAG = ("0", "1")


def error(code: str, message: str | None = None, field: str = "error") -> web.Response:
    text = message or ERRORS[code]
    return json_response({"code": code, "message": text, "data": [], "error": {field: text}}, STATUS.get(code, 400))


def parts_of(text: str, encoding: str) -> int:
    single, concat = reference.capacity(text, encoding)
    return len(reference.split(text, encoding, single, concat))


def parse_time(value: str) -> dt.datetime | None:
    for fmt in ("%d-%m-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


class KaleyraSimulator(Simulator):
    kind = "kaleyra"
    default_rate = 20.0
    default_max_batch = 1000

    def __init__(self, *args: Any, sid: str = "HXAP1600000000IN", api_key: str = "A0123456789abcdef0123456789abcdef",
                 schedule_min_minutes: str | float = 5, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sid = sid
        self.api_key = api_key
        self.schedule_min = float(schedule_min_minutes)
        self.statuses: dict[str, tuple[str, str]] = {}  # message id -> (status, status_details)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/{sid}/messages", self.send), web.post("/v1/{sid}/sms", self.send),
            web.get("/v1/{sid}/messages/status", self.status), web.get("/v1/{sid}/sms/status", self.status),
        ]

    def too_many(self) -> web.Response:
        r = error("E429")
        r.headers["Retry-After"] = "1"
        return r

    def server_error(self) -> web.Response:
        return error("E403")

    async def _reset(self, request: web.Request) -> web.Response:
        self.statuses.clear()
        return await super()._reset(request)

    def _authorised(self, request: web.Request) -> bool:
        key = request.headers.get("api-key") or request.query.get("api-key")
        return key == self.api_key and request.match_info["sid"] == self.sid

    async def _form(self, request: web.Request) -> dict[str, Any] | None:
        if request.content_type == "application/json":
            try:
                data = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                return None
            return data if isinstance(data, dict) else None
        return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}

    async def send(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error("AUTH", field="api-key")
        form = await self._form(request)
        if form is None:
            return error("E600", "Body must be form fields or a JSON object")
        get = lambda k: "" if form.get(k) is None else str(form.get(k)).strip()  # noqa: E731
        raw_to = form.get("to")
        to = [str(x).strip() for x in raw_to] if isinstance(raw_to, list) else [
            x.strip() for x in get("to").split(",") if x.strip()]
        listid = get("listid") or get("list_id")
        kind = get("type").upper()
        if not to:
            return self._no_numbers(form, listid, kind)
        body = form.get("body")
        if not isinstance(body, str) or not body:
            return error("E601", field="body")
        if len(body) > MAX_CHARS:
            return error("E401", field="body")
        sender = get("sender")
        if not sender:
            return error("E602", field="sender")
        if not _SENDER.fullmatch(sender):
            return error("E619", field="sender")
        if not kind:
            return error("E611", field="type")
        if kind not in TYPES:
            return error("E615", field="type")
        unicode = self._options(get)
        if isinstance(unicode, web.Response):
            return unicode
        callbacks = self._callbacks(form)
        if callbacks is None:
            return error("INVALID-CALLBACK", field="callback")

        valid = self._valid_numbers(kind, to)
        if isinstance(valid, web.Response):
            return valid

        natural = reference.encoding_of(body)
        if unicode == "0" and natural != "GSM-7":
            return error("E604", "unicode=0 but the body has characters outside GSM 03.38: send unicode=1",
                         field="unicode")
        encoding = "UCS-2" if unicode == "1" else natural
        parts = parts_of(body, encoding)
        if not self.spend(parts * len(valid)):
            return error("NO-CREDITS")

        rid = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y-%m-%d %H:%M:%S+00:00")
        data = []
        template_id = get("template_id")
        for i, number in enumerate(valid, 1):
            mid = f"{rid}:{i}"
            recipient = number.lstrip("+")
            data.append({"message_id": mid, "recipient": recipient})
            self.record({"id": mid, "to": recipient, "sender": sender, "type": kind, "body": body,
                         "unicode": unicode, "encoding": encoding, "parts": parts, "template_id": template_id,
                         "request_id": rid, "ref": get("ref")})
            if self.faults.ledger:
                self.statuses[mid] = ("Delivered", "DELIVRD")
            if callbacks:
                report = {"message_id": mid, "recipient": recipient, "sender": sender, "status": "Delivered",
                          "status_details": "DELIVRD", "sent_at": stamp, "delivered_at": stamp,
                          "ref": get("ref"), "ref1": get("ref1"), "ref2": get("ref2")}
                for method, url in callbacks:
                    if method == "GET":
                        sep = "&" if urllib.parse.urlsplit(url).query else "?"
                        self.report("GET", url + sep + urllib.parse.urlencode(report))
                    else:
                        self.report("POST", url, report)
        return json_response({"id": rid, "sender": sender, "type": kind, "body": body,
                              "source": get("source") or "API", "template_id": template_id,
                              "createdDateTime": stamp, "totalCount": len(valid), "data": data, "error": {}}, 202)

    @staticmethod
    def _no_numbers(form: dict[str, Any], listid: str, kind: str) -> web.Response:
        """The error for a request with no number in `to`: a contact list (not simulated), or nothing."""
        if "listid" in form or "list_id" in form:
            if not listid:
                return error("E613")
            if kind == "OTP":
                return error("E614")
            return error("E612", "Contact lists are not simulated: send numbers in 'to'")
        return error("E600", field="to")

    def _valid_numbers(self, kind: str, to: list[str]) -> list[str] | web.Response:
        """The well-formed numbers of `to`, within what the message type allows in one request."""
        if kind == "OTP" and len(to) > 1:
            return error("E404", field="to")
        if kind == "TXN" and len(to) > 100:
            return error("E405", field="to")
        if kind == "DEFAULT" and len(to) > 1:
            return error("E400", field="to")
        if len(to) > self.max_batch:
            return error("E400", f"At most {self.max_batch} numbers per request", field="to")
        valid = [n for n in to if _NUMBER.fullmatch(n)]
        if not valid:
            return error("E406", field="to")
        return valid

    def _options(self, get: Callable[[str], str]) -> str | web.Response:
        """The request's switches checked (unicode, flash, duplicate, port, refs, schedule time): its
        `unicode` ("0", "1" or "AUTO"), or the error the first wrong one gets."""
        unicode = get("unicode").upper() or "AUTO"
        if unicode not in ("0", "1", "AUTO"):
            return error("E604", field="unicode")
        for name, code in (("flash", "E606"), ("duplicate", "E605")):
            if get(name) and get(name) not in _FLAG:
                return error(code, field=name)
        if get("port") and not get("port").isdigit():
            return error("E603", field="port")
        for name, code in (("ref", "E608"), ("ref1", "E609"), ("ref2", "E610")):
            if not _ALNUM.fullmatch(get(name)):
                return error(code, field=name)
        if get("time"):
            when = parse_time(get("time"))
            now = dt.datetime.now(dt.UTC)
            if (when is None or when < now + dt.timedelta(minutes=self.schedule_min)
                    or when > now + dt.timedelta(days=92)):
                return error("E402", f"Invalid schedule time. Minimum {self.schedule_min:g} minutes time gap is "
                             "required and 3 months from now", field="time")
        return unicode

    @staticmethod
    def _callbacks(form: dict[str, Any]) -> list[tuple[str, str]] | None:
        """(method, url) of each delivery report asked for; None when `callback` is malformed."""
        out: list[tuple[str, str]] = []
        cb = form.get("callback")
        if cb:
            if isinstance(cb, str):
                try:
                    cb = orjson.loads(cb)
                except orjson.JSONDecodeError:
                    return None
            if not isinstance(cb, dict):
                return None
            url, method = cb.get("url"), str(cb.get("method") or "POST").upper()
            if not isinstance(url, str) or not url.startswith(("http://", "https://")) or method not in ("GET", "POST"):
                return None
            out.append((method, url))
        dlr = form.get("dlrurl")
        if dlr:
            if not isinstance(dlr, str) or not dlr.startswith(("http://", "https://")):
                return None
            out.append(("GET", dlr))
        return out

    async def status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error("AUTH", field="api-key")
        ids = [i for i in request.query.get("message_ids", "").split(",") if i]
        if not ids:
            return error("E600", "message_ids is required", field="message_ids")
        data = []
        for mid in ids:
            st = self.statuses.get(mid)
            if st is not None:
                data.append({"campaign_id": mid, "status": st[0], "status_details": st[1]})
        return json_response({"data": data, "error": {}})
