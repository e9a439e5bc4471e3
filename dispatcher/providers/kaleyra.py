"""Kaleyra Hexa (kaleyra.io) SMS: `POST /v1/<SID>/messages` with an `api-key` header.

One request carries one body, one sender and one route type to a comma-separated `to` list,
so only identical texts share a request, and how many depends on the route type
(`[message] options = {type = "TXN"}`; kaleyra.md, "Per-type recipient rules"):
OTP exactly one number (E404), TXN up to `txn_batch` (below), bulk must be MKT (E400; no
documented maximum, the simulator's cap 1000 is the default), DEFAULT (some pods) one.

TXN batching is the one setting where the seed contradicts itself: "E400 For bulk SMS type
should be MKT" says a TXN request carries one number, "E405 If Type is TXN then mobile
numbers should not be more than 100" says up to 100. E405 is the specific rule, so TXN
goes up to 100 numbers a request (`txn_batch = 100`, the default); an account that answers
E400 to TXN bulk sets `txn_batch = 1` in `[providers.X]`.

What the adapter relies on, and where it comes from ([doc] the seed, [inf] inferred; the
full list with the tests that check each is in CONFORMANCE.md):

| what | source |
| --- | --- |
| parameters `to`, `body`, `sender`, `type`, `ref`, `time`, `dlrurl`; the E-codes | [doc] seed |
| OTP one number (E404), TXN at most 100 (E405), bulk MKT (E400) | [doc] seed |
| path `/v1/<SID>/messages`, header `api-key`, form body, `unicode`, `callback` | [inf] kaleyra.md, public clients |
| success `202 {"id", "totalCount", "data": [{"message_id", "recipient"}], "error": {}}` | [inf] a public typed client |
| error `4xx {"code": "E6xx", "message", "data": [], "error": {"<field>": "<text>"}}` | [inf] a public typed client |
| HTTP statuses (401 bad key, 402 no credit, 429 rate, 5xx) | [inf] |

The seed has no request or response bodies at all: every name read or written is in `API`
below, and a user who knows better replaces any of them in the config file, without a code
change (`[providers.X.api]`, as for Sendix: `items = "messages"`, `item_id = "id"`, ...).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, cast

import orjson

from ..errors import ConfigError
from ..model import Content, Message
from . import dlr
from .base import (
    HttpRequest,
    Outcome,
    Provider,
    Settings,
    Verdict,
    contract,
    http_default,
    retry_after,
    secret,
)

# -- every path and field name, in one place ----------------------------------------------------
API: dict[str, str] = {
    # request
    "path": "/{version}/{sid}/{endpoint}",  # endpoint: "messages" (original) or "sms" (newer, NA pod)
    "auth_header": "api-key",
    "to": "to",  # comma-separated numbers
    "body": "body",
    "sender": "sender",
    "type": "type",  # MKT | TXN | OTP | DEFAULT
    "unicode": "unicode",  # 0 | 1 | AUTO
    "callback": "callback",  # JSON string {url, method, retry: {count, interval}}
    "callback_profile_id": "callback_profile_id",
    "dlrurl": "dlrurl",  # the seed's delivery URL
    # success answer [inferred]: {"id", ..., "totalCount", "data": [{"message_id", "recipient"}], "error": {}}
    "request_id": "id",
    "items": "data",
    "item_id": "message_id",
    "item_to": "recipient",
    # error answer [inferred]: {"code": "E601", "message": "...", "data": [], "error": {"body": "..."}}
    "code": "code",
    "message": "message",
    "detail": "error",
}
# Options passed through unchanged from `[message] options` when present.
PASSTHROUGH = ("template_id", "source", "ref", "ref1", "ref2", "flash", "duplicate", "time", "port")

ROUTE_LIMITS = {"OTP": 1, "TXN": 100, "MKT": 1000, "DEFAULT": 1}  # numbers per request (TXN: `txn_batch`)
UNICODE = {"GSM-7": "0", "GSM-PT": "1", "UCS-2": "1"}  # Kaleyra knows no national shift tables

SUCCESS_CODES = frozenset({"E100", "E101"})  # submitted / campaign accepted
RETRYABLE = frozenset({"E403", "E429"})  # "something went wrong at our end", too many requests
HALTING = frozenset({"E102", "NO-CREDITS"})  # no medium configured for the account, out of credit
PER_RECIPIENT = frozenset({"E401", "E406"})  # body too long, no valid number: bad input
HALTING_STATUS = frozenset({401, 402, 403})  # bad key / SID, no credit, account blocked

_NOT_DIGIT = re.compile(r"\D")
# E619/E621 "Invalid Sender ID Pattern": the seed gives no pattern; an alphanumeric originator is at most 11
# characters and a numeric one an MSISDN of at most 15 digits (GSM 03.40), as the simulator checks [inf]
SENDER = re.compile(r"[A-Za-z0-9]{3,11}|\+?[0-9]{3,15}")


def classify(code: str | None, status: int) -> Verdict:
    if (code in RETRYABLE) or status == 429 or status >= 500:
        return Verdict.RETRY
    if code in HALTING or status in HALTING_STATUS:
        return Verdict.HALT
    if code in PER_RECIPIENT:
        return Verdict.REJECTED
    return Verdict.FAILED


@dataclass(slots=True)
class KaleyraSettings(Settings):
    sid_env: str = ""
    api_key_env: str = ""
    endpoint: str = "messages"  # or "sms"
    version: str = "v1"
    route: str = "TXN"  # route type when `[message] options` has no `type`
    callback_url: str = ""  # delivery reports: the `callback` JSON
    callback_method: str = "POST"  # or "GET"
    callback_retries: int = 3
    callback_interval: int = 10  # seconds between callback retries
    callback_profile_id: str = ""  # a callback profile from the console, instead of callback_url
    dlr_url: str = ""  # the seed's `dlrurl`
    txn_batch: int = 100  # numbers per TXN request: E405 allows 100; 1 where the account enforces E400
    api: dict[str, str] = field(default_factory=dict)  # replacements for names in `API` ([providers.X.api])


class Kaleyra(Provider):
    kind = "kaleyra"
    channels = frozenset({"sms"})
    default_rate = 20.0  # none published (throughput is provisioned per account); the simulator's default
    max_batch = ROUTE_LIMITS["MKT"]
    default_concurrency = 8
    max_chars = 4000  # E401
    settings_class = KaleyraSettings

    _configured = max_batch
    _cap = max_batch  # the smallest route limit seen so far (see `batch_size`)

    def __init__(self, alias: str, settings: KaleyraSettings) -> None:
        super().__init__(alias, settings)
        if not 1 <= settings.txn_batch <= ROUTE_LIMITS["TXN"]:
            raise ConfigError(f"providers.{alias}.txn_batch: {settings.txn_batch} must be between 1 and "
                              f"{ROUTE_LIMITS['TXN']} (E405: at most 100 numbers in a TXN request)")
        api = self.api  # checked now: a wrong name is a config error before anything is sent
        sid = secret(alias, "sid_env", settings.sid_env)
        key = secret(alias, "api_key_env", settings.api_key_env)
        path = api["path"].format(version=settings.version.strip("/"), sid=urllib.parse.quote(sid, safe=""),
                                  endpoint=settings.endpoint.strip("/"))
        self._url = settings.url.rstrip("/") + path
        self._headers = {api["auth_header"]: key, "Content-Type": "application/x-www-form-urlencoded",
                         "Accept": "application/json"}
        self._callback = self._callback_json(settings)

    def _callback_json(self, s: KaleyraSettings) -> str:
        """The `callback` field: the report URL, its method and retries (empty without a URL)."""
        if not s.callback_url:
            return ""
        method = s.callback_method.upper()
        if method not in ("GET", "POST"):
            raise ConfigError(f"providers.{self.alias}.callback_method: '{s.callback_method}' must be GET or POST")
        n = max(0, s.callback_retries)
        return orjson.dumps({"url": s.callback_url, "method": method,
                             "retry": {"count": str(n), "interval": [str(s.callback_interval)] * n}}).decode()

    @cached_property
    def api(self) -> dict[str, str]:
        """The wire names: `API` with this provider's `[providers.X.api]` replacements."""
        return contract(self.alias, API, cast(KaleyraSettings, self.settings).api)

    @cached_property
    def route_limits(self) -> dict[str, int]:
        """Numbers per request by route type, with this provider's `txn_batch`."""
        return {**ROUTE_LIMITS, "TXN": cast(KaleyraSettings, self.settings).txn_batch}

    def validate(self, channel: str, content: Content) -> Content:
        """The approved sender id goes in every request: missing (E602) or malformed (E619) fails them all."""
        sender = (content.sender or str(content.options.get("sender", ""))).strip()
        if not sender:
            raise ConfigError("message.sender: required: the approved Kaleyra sender id (E602)")
        if not SENDER.fullmatch(sender):
            raise ConfigError(f"message.sender: {sender!r} is not a Kaleyra sender id: 3 to 11 letters and digits, "
                              "or 3 to 15 digits (E619)")
        return replace(content, sender=sender)

    # -- batch size by route type ----------------------------------------------------------------
    # Kaleyra's limit depends on the message's route type (options.type), while the engine sizes its
    # buffers and the daemon its claims by one `batch_size` per provider (recipients a request carries).
    # `check` runs on every message before it is batched and records each route type seen, so
    # `batch_size` is the smallest limit seen: never more numbers than any route takes, and the sizing
    # is right for the route in use (one blast has one route type per provider).
    @property  # type: ignore[override]
    def batch_size(self) -> int:
        return min(self._configured, self._cap)

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._configured = value

    def route(self, m: Message) -> str:
        opts = m.content.options if m.content is not None else {}
        return str(opts.get("type") or cast(KaleyraSettings, self.settings).route).upper()

    def check(self, m: Message) -> tuple[str, str] | None:
        route = self.route(m)
        limit = self.route_limits.get(route)
        if limit is None:
            return "bad_type", f"route type '{route}' must be one of {', '.join(ROUTE_LIMITS)} (options.type)"
        if limit < self._cap:
            self._cap = limit
        if not m.text:
            return "empty_body", "the message text is empty"
        return Provider.check(self, m)

    def batch_key(self, m: Message) -> Hashable:
        if self.route_limits.get(self.route(m), 1) == 1:
            return m.seq  # one number per request
        return (id(m.content), m.text)  # one body, sender and type per request

    # -- one request ---------------------------------------------------------------------------
    def build(self, batch: Sequence[Message]) -> HttpRequest:
        first = batch[0]
        c = first.content
        opts: Mapping[str, Any] = c.options if c is not None else {}
        route = self.route(first)
        limit = self.route_limits.get(route, 1)
        if len(batch) > limit:  # never send what the provider must refuse
            raise ValueError(f"{len(batch)} numbers in one {route} request (at most {limit})")
        s = cast(KaleyraSettings, self.settings)
        api = self.api
        form: dict[str, str] = {
            api["to"]: ",".join([m.to for m in batch]),
            api["body"]: first.text,
            api["sender"]: (c.sender if c is not None else "") or str(opts.get("sender", "")),
            api["type"]: route,
            api["unicode"]: UNICODE.get(first.encoding, "AUTO"),
        }
        for k in PASSTHROUGH:
            v = opts.get(k)
            if v is not None and v != "":
                form[k] = str(int(v)) if isinstance(v, bool) else str(v)
        profile = opts.get("callback_profile_id") or s.callback_profile_id
        if profile:
            form[api["callback_profile_id"]] = str(profile)
        elif self._callback:
            form[api["callback"]] = self._callback
        if s.dlr_url:
            form[api["dlrurl"]] = s.dlr_url
        return HttpRequest("POST", self._url, self._headers, urllib.parse.urlencode(form).encode())

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str], body: bytes) -> list[Outcome]:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return [http_default(status, body[:200].decode("utf-8", "replace") if body else "", headers=headers)] * len(batch)
        api = self.api
        rid = data.get(api["request_id"])
        trace = str(rid) if rid is not None else None
        code = data.get(api["code"])
        code = str(code) if code is not None else None
        if 200 <= status < 300:
            items = data.get(api["items"])
            if isinstance(items, list) and items:
                return self._per_recipient(batch, items, trace)
            if not data.get(api["detail"]) and (code is None or code in SUCCESS_CODES):
                # accepted without per-number ids (a scheduled or list campaign): nothing to pair
                return [Outcome(Verdict.SENT, trace_id=trace, extra={"code": code} if code else None)] * len(batch)
        text = _error_text(data, api) or (body[:200].decode("utf-8", "replace") if body else "")
        if code is None:
            o = http_default(status, text, trace, headers)
        else:
            o = Outcome(classify(code, status), code=code, error=text, trace_id=trace, retry_after=retry_after(headers))
        return [o] * len(batch)

    def _per_recipient(self, batch: Sequence[Message], items: list, trace: str | None) -> list[Outcome]:
        id_key, to_key = self.api["item_id"], self.api["item_to"]
        numbered = all(isinstance(it, dict) and it.get(to_key) for it in items)
        if not numbered:
            if len(items) != len(batch):
                return [Outcome(Verdict.FAILED, code="unpaired",
                                error="the answer lists fewer ids than numbers, without saying which", trace_id=trace)
                        ] * len(batch)
            return [_sent(it, id_key, trace) for it in items]
        by_number: dict[str, list[dict]] = {}
        for it in items:
            by_number.setdefault(_NOT_DIGIT.sub("", str(it[to_key])), []).append(it)
        out = []
        for m in batch:
            found = by_number.get(_NOT_DIGIT.sub("", m.to))
            if found:
                out.append(_sent(found.pop(0), id_key, trace))
            else:
                out.append(Outcome(Verdict.REJECTED, code="E406", trace_id=trace,
                                   error="the provider dropped this number as invalid (not in the answer's data)"))
        return out

    # -- delivery reports ---------------------------------------------------------------------------
    # The `callback` JSON (POST) or query string (GET): message_id, recipient, status, sent_at, delivered_at.
    def callback(self, url: str) -> bool:
        s = cast(KaleyraSettings, self.settings)
        if not s.callback_url and not s.callback_profile_id:
            s.callback_url = url
            self._callback = self._callback_json(s)  # this instance's requests carry it from now on
        return True

    def report_item(self, it: dict[str, Any], now: dt.datetime) -> dlr.Report:
        raw = str(it.get("status", ""))
        return dlr.Report(self.alias, dlr.text(it.get("message_id") or it.get("id")), dlr.recipient(it.get("recipient")),
                          raw.lower() or "unknown", raw or None,
                          dlr.when(it.get("delivered_at") or it.get("sent_at"), now), it)


def _sent(item: Any, id_key: str, trace: str | None) -> Outcome:
    mid = item.get(id_key) if isinstance(item, dict) else None
    if not mid:
        return Outcome(Verdict.FAILED, code="missing_id", error="accepted entry without a message id", trace_id=trace)
    return Outcome(Verdict.SENT, message_id=str(mid), trace_id=trace)


def _error_text(data: dict, api: Mapping[str, str]) -> str:
    msg = data.get(api["message"])
    if msg:
        return str(msg)
    err = data.get(api["detail"])
    if isinstance(err, dict) and err:
        return "; ".join(f"{k}: {v}" for k, v in err.items())
    return str(err) if err else ""
