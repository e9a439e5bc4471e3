"""SmsGateway24 simulator: the `/getdata/` API of smsgateway24.md and a simulated phone.

`gettoken` (email + pass) issues 32-hex tokens; every other call needs `token` (query, form
field, or inside `datajson`). GET and POST (urlencoded or multipart) are both accepted.
`addsms` (comma-separated `sendto`, one `sms_id` back), `addalotofsms` (`datajson` form
field or the JSON object as the body; at most `max_batch` items, default 1000; validated
whole: one bad item refuses the request, naming it), `getallsms` (filters device_id,
status, customerid, sim, phone, onlycount), `getsmsstatus`, `getalldevices`,
`getdevicestatus`. API errors are `{"error":1,"message":...}` in an HTTP 200; only the
injected faults answer 429 (past the rate, default 10 requests/s) or 500.

The phone: each device drains its queue (urgent first) at `phone_rate` messages/s and moves
each message 1 New -> 2 taken -> 6 sent -> 7 delivered, posting the status webhook
(`{sms_id, status_id, status_message, sendto, senttime, channel_id, device_id}`) on each
change. Webhooks are set per device in the real web UI; here through the control endpoint
`POST /_sim/gateway {"webhook": url, "phone_rate": n, "token_uses": n, "revoke": true, "expired_text": s}`
(`token_uses`: a token expires after that many calls; `revoke`: every issued token expires;
`expired_text`: the words a bad token is refused with. The seed documents only `error: 1` and
a free text, so a client must not depend on these words: tests change them).
The phone ignores `timetosend` and sends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from .base import Simulator, json_response

SAVED = "Sms has been saved successfully"
EXPIRED = "Token is invalid or expired"
STATUS_TITLES = {1: "New", 2: "sending", 3: "queued on the phone", 5: "incoming", 6: "sent", 7: "delivered",
                 8: "not delivered", 9: "not sent"}
SLOT_CHANNELS = {0: "sms", 1: "sms", 2: "whatsapp", 3: "whatsapp", 4: "rcs", 5: "rcs"}
_DIGITS = re.compile(r"\+?[0-9][0-9 ()./-]{3,20}")
_WHEN = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


def fail(message: str) -> web.Response:
    return json_response({"error": 1, "message": message})


class Invalid(Exception):
    """One field of one message is wrong: the request is refused with this text."""


def _int(value: Any, name: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    s = str(value).strip()
    if not s.lstrip("-").isdigit():
        raise Invalid(f"{name} must be a whole number")
    return int(s)


def _date(d: dt.datetime) -> dict[str, Any]:
    return {"date": d.strftime("%Y-%m-%d %H:%M:%S.000000"), "timezone_type": 3, "timezone": "UTC"}


class SmsGateway24Simulator(Simulator):
    kind = "smsgateway24"
    default_rate = 10.0
    default_max_batch = 1000

    def __init__(self, *args: Any, email: str = "demo@example.com", password: str = "demo-secret",
                 devices: str = "260,261", phone_rate: str | float = 1.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.email = email
        self.password = password
        self.devices = [int(d) for d in str(devices).split(",") if d.strip()]
        self.default_phone_rate = float(phone_rate)
        self.phone_rate = self.default_phone_rate
        self.webhook = ""
        self.token_uses = 0  # calls a token allows; 0 = unlimited
        self.expired_text = EXPIRED
        self.tokens: dict[str, int] = {}  # token -> calls made with it
        self.smss: dict[int, dict[str, Any]] = {}
        self.queues: dict[int, tuple[deque[int], deque[int]]] = {}  # device -> (urgent, normal)
        self._wake: dict[int, asyncio.Event] = {}
        self._phones: dict[int, asyncio.Task[None]] = {}
        self._next_sms = 62807346

    def routes(self) -> list[web.RouteDef]:
        out = [web.get("/_sim/gateway", self.gateway), web.post("/_sim/gateway", self.gateway)]
        for name, handler in (("gettoken", self.gettoken), ("addsms", self.addsms), ("addalotofsms", self.addalotofsms),
                              ("getallsms", self.getallsms), ("getsmsstatus", self.getsmsstatus),
                              ("getalldevices", self.getalldevices), ("getdevicestatus", self.getdevicestatus)):
            out.append(web.route("*", f"/getdata/{name}", handler))
        return out

    def too_many(self) -> web.Response:
        return json_response({"error": 1, "message": "Too many requests"}, 429, {"Retry-After": "1"})

    def server_error(self) -> web.Response:
        return json_response({"error": 1, "message": "Internal server error"}, 500)

    # -- control ---------------------------------------------------------------------------------
    async def gateway(self, request: web.Request) -> web.Response:
        if request.method == "POST" and request.can_read_body:
            data = orjson.loads(await request.read() or b"{}")
            unknown = set(data) - {"webhook", "phone_rate", "token_uses", "revoke", "expired_text"}
            if unknown:
                return json_response({"error": f"unknown setting(s): {', '.join(sorted(unknown))}"}, 400)
            if "webhook" in data:
                self.webhook = str(data["webhook"] or "")
            if "phone_rate" in data:
                self.phone_rate = float(data["phone_rate"])
                for ev in self._wake.values():
                    ev.set()
            if "token_uses" in data:
                self.token_uses = int(data["token_uses"])
            if data.get("revoke"):
                self.tokens.clear()
            if "expired_text" in data:
                self.expired_text = str(data["expired_text"] or EXPIRED)
        return json_response({"webhook": self.webhook, "phone_rate": self.phone_rate, "token_uses": self.token_uses,
                              "tokens": len(self.tokens), "queued": sum(len(u) + len(n) for u, n in self.queues.values()),
                              "devices": self.devices})

    async def _reset(self, request: web.Request) -> web.Response:
        self.webhook = ""
        self.phone_rate = self.default_phone_rate
        self.token_uses = 0
        self.expired_text = EXPIRED
        self.tokens.clear()
        self.smss.clear()
        for urgent, normal in self.queues.values():
            urgent.clear()
            normal.clear()
        return await super()._reset(request)

    async def _cleanup(self, app: web.Application) -> None:
        for t in self._phones.values():
            t.cancel()
        for t in self._phones.values():
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await super()._cleanup(app)

    # -- request plumbing ----------------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                with contextlib.suppress(orjson.JSONDecodeError):
                    body = orjson.loads(await request.read())
                    if isinstance(body, dict):
                        params.update(body)
            else:
                for k, v in (await request.post()).items():
                    params[k] = v if isinstance(v, str) else getattr(v, "filename", "file")
        return params

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str) or token not in self.tokens:
            return False
        if self.token_uses and self.tokens[token] >= self.token_uses:
            del self.tokens[token]
            return False
        self.tokens[token] += 1
        return True

    # -- endpoints ---------------------------------------------------------------------------------
    async def gettoken(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        if p.get("email") != self.email or p.get("pass") != self.password:
            return fail("Login or password incorrect")
        token = f"{self.random.getrandbits(128):032x}"
        self.tokens[token] = 0
        return json_response({"error": 0, "message": "OK", "token": token})

    async def addsms(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        if not self._token_ok(p.get("token")):
            return fail(self.expired_text)
        if "file" in p and not p.get("body"):
            p["body"] = f"https://files.smsgateway24.invalid/{p['file']}"
        try:
            rows = self._validate(p)
        except Invalid as e:
            return fail(str(e))
        if not self.spend(len(rows)):
            return fail("Not enough credits: the subscription limit is reached")
        ids = self._accept(rows, "addsms")
        return json_response({"error": 0, "sms_id": ids[0], "message": SAVED})

    async def addalotofsms(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        doc: Any = p
        if "datajson" in p:
            raw = p["datajson"]
            try:
                doc = orjson.loads(raw) if isinstance(raw, str) else raw
            except orjson.JSONDecodeError:
                return fail("datajson is not valid JSON")
            if not isinstance(doc, dict):
                return fail("datajson must be a JSON object with token and smsdata")
        if not self._token_ok(doc.get("token", p.get("token"))):
            return fail(self.expired_text)
        items = doc.get("smsdata")
        if not isinstance(items, list) or not items:
            return fail("smsdata is required: a list of messages")
        if len(items) > self.max_batch:
            return fail(f"Too many messages in one request: at most {self.max_batch}")
        rows: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return fail(f"smsdata[{i}] must be an object")
            try:
                rows.extend(self._validate(item))
            except Invalid as e:
                return fail(f"smsdata[{i}]: {e}")
        if not self.spend(len(rows)):
            return fail("Not enough credits: the subscription limit is reached")
        self._accept(rows, "addalotofsms")
        return json_response({"error": 0, "message": SAVED})

    def _validate(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per number of a message, or Invalid."""
        sendto = p.get("sendto")
        if not isinstance(sendto, str) or not sendto.strip():
            raise Invalid("sendto is required")
        numbers = [n.strip() for n in sendto.split(",") if n.strip()]
        for n in numbers:
            if not _DIGITS.fullmatch(n):
                raise Invalid(f"sendto '{n}' is not a phone number")
        body = p.get("body")
        if not isinstance(body, str) or not body:
            raise Invalid("body is required")
        device = _int(p.get("device_id"), "device_id")
        if device is None:
            raise Invalid("device_id is required")
        if device not in self.devices:
            raise Invalid(f"Device {device} not found on this account")
        sim = _int(p.get("sim"), "sim", 0)
        if sim not in SLOT_CHANNELS:
            raise Invalid("sim must be 0 or 1 (SMS), 2 or 3 (WhatsApp), 4 or 5 (RCS)")
        customer = _int(p.get("customerid", p.get("customerId")), "customerid")
        urgent = _int(p.get("urgent"), "urgent", 0)
        if urgent not in (0, 1):
            raise Invalid("urgent must be 0 or 1")
        when = p.get("timetosend") or None
        if when is not None:
            for fmt in _WHEN:
                with contextlib.suppress(ValueError):
                    dt.datetime.strptime(str(when), fmt)
                    break
            else:
                raise Invalid("timetosend must be YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")
        return [{"sendto": n, "body": body, "device_id": device, "sim": sim, "channel": SLOT_CHANNELS[sim],
                 "customerid": customer, "urgent": urgent, "timetosend": when} for n in numbers]

    def _accept(self, rows: list[dict[str, Any]], endpoint: str) -> list[int]:
        ids = []
        now = dt.datetime.now(dt.UTC)
        keep = self.faults.ledger or bool(self.webhook)
        for row in rows:
            self._next_sms += 1
            sid = self._next_sms
            ids.append(sid)
            self.record({"sms_id": sid, **row, "endpoint": endpoint})
            if keep:
                self.smss[sid] = {"id": sid, "sendto": row["sendto"], "body": row["body"],
                                  "customerid": row["customerid"], "status": 1, "statustitle": STATUS_TITLES[1],
                                  "deviceid": row["device_id"], "urgent": row["urgent"], "created": _date(now),
                                  "senttime": None, "timetosend": row["timetosend"], "sim": row["sim"],
                                  "paketid": None, "pakettitle": None, "paketbody": None}
                self._queue(row["device_id"], sid, bool(row["urgent"]))
        return ids

    # -- the phone ------------------------------------------------------------------------------------
    def _queue(self, device: int, sid: int, urgent: bool) -> None:
        if device not in self.queues:
            self.queues[device] = (deque(), deque())
            self._wake[device] = asyncio.Event()
            self._phones[device] = asyncio.create_task(self._phone(device))
        self.queues[device][0 if urgent else 1].append(sid)
        self._wake[device].set()

    async def _phone(self, device: int) -> None:
        urgent, normal = self.queues[device]
        wake = self._wake[device]
        while True:
            if self.phone_rate <= 0 or not (urgent or normal):
                wake.clear()
                await wake.wait()
                continue
            sid = urgent.popleft() if urgent else normal.popleft()
            row = self.smss.get(sid)
            if row is None:
                continue
            self._status(row, 2)
            await asyncio.sleep(1.0 / self.phone_rate)
            if self.smss.get(sid) is not row:  # reset while it was being sent
                continue
            row["senttime"] = _date(dt.datetime.now(dt.UTC))
            self._status(row, 6)
            self._status(row, 7)

    def _status(self, row: dict[str, Any], status: int) -> None:
        row["status"] = status
        row["statustitle"] = STATUS_TITLES[status]
        if self.webhook:
            self.report("POST", self.webhook, {
                "sms_id": row["id"], "status_id": status, "status_message": STATUS_TITLES[status],
                "sendto": row["sendto"], "senttime": row["senttime"]["date"][:19] if row["senttime"] else None,
                "channel_id": row["sim"], "device_id": row["deviceid"]})

    # -- reading back ---------------------------------------------------------------------------------
    async def getallsms(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        if not self._token_ok(p.get("token")):
            return fail(self.expired_text)
        try:
            want = {k: _int(p.get(k), k) for k in ("device_id", "status", "customerid", "sim")}
            only_count = _int(p.get("onlycount"), "onlycount", 0)
            desc = _int(p.get("orderbydesc"), "orderbydesc", 0)
        except Invalid as e:
            return fail(str(e))
        phone = p.get("phone")
        field = {"device_id": "deviceid", "status": "status", "customerid": "customerid", "sim": "sim"}
        rows = [r for r in self.smss.values()
                if all(v is None or r[field[k]] == v for k, v in want.items()) and (not phone or r["sendto"] == phone)]
        if desc:
            rows.reverse()
        out: dict[str, Any] = {"error": 0, "count": len(rows), "message": "Ok"}
        if not only_count:
            out["smss"] = {str(r["id"]): r for r in rows}
        return json_response(out)

    async def getsmsstatus(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        if not self._token_ok(p.get("token")):
            return fail(self.expired_text)
        try:
            sid = _int(p.get("sms_id"), "sms_id")
        except Invalid as e:
            return fail(str(e))
        row = self.smss.get(sid) if sid is not None else None
        if row is None:
            return fail("Sms not found")
        return json_response({"error": 0, "sms_id": sid, "status": row["status"],
                              "status_description": row["statustitle"], "message": "Ok"})

    async def getalldevices(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        if not self._token_ok(p.get("token")):
            return fail(self.expired_text)
        now = _date(dt.datetime.now(dt.UTC))
        devices = {str(d): {"id": d, "title": f"Simulated phone {d}", "number": None, "imei": "358240051111110",
                            "created": now, "lastseen": now, "serialnumber": f"SIM{d}",
                            "siminfo": [{"Slot": "0", "IccId": "89014103211118510720", "Number": "", "Roaming": "0",
                                         "CountryIso": "de", "CarrierName": "Simulated"}],
                            "appversion": "12.1.21", "isappversionactual": True, "delaybetweeneachsms": None,
                            "delaybetweenrequest": 1, "subscription": True}
                   for d in self.devices}
        return json_response({"error": 0, "count": len(devices), "device": devices, "message": "OK"})

    async def getdevicestatus(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        if not self._token_ok(p.get("token")):
            return fail(self.expired_text)
        try:
            device = _int(p.get("device_id"), "device_id")
        except Invalid as e:
            return fail(str(e))
        if device not in self.devices:
            return fail(f"Device {device} not found on this account")
        return json_response({"error": 0, "message": "OK", "online": self.phone_rate > 0, "device_id": device,
                              "lastseen": _date(dt.datetime.now(dt.UTC)), "diffseconds": 0,
                              "title": f"Simulated phone {device}"})
