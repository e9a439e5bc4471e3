"""360nrs (SMS; email, WhatsApp and voice grow in the providers issue).

Many recipients per request. Texts that differ only by template variables share one
request: the template goes as `message` and each recipient's values as `sub` (one object
per recipient, same order as `to`), so a personalised campaign costs one request per
`batch_size` recipients instead of one per recipient. Filters are applied here, not by
the server, so the text the server builds is exactly the text the codec counted.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from ..model import Message
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

PATHS = {"sms": "/api/rest/sms"}
ENCODING = {"GSM-7": "gsm", "GSM-PT": "gsm-pt", "UCS-2": "utf-16"}

RETRYABLE = frozenset({101, 122, 123, 429})
HALTING = frozenset({103, 111, 112})  # bad credentials, no credit, IP not allowed: nothing else will pass
PER_RECIPIENT = frozenset({102})  # "no valid recipients": this number is bad input


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

    def _substituted(self, m: Message) -> bool:
        return self.s.substitute and not m.transliterated and bool(m.content.template.slots)

    def batch_key(self, m: Message) -> Hashable:
        text_key = id(m.content) if self._substituted(m) else m.text
        return (m.channel, m.encoding, text_key)

    def build(self, batch: Sequence[Message]) -> HttpRequest:
        first = batch[0]
        c = first.content
        body: dict = {
            "to": [m.to.lstrip("+") for m in batch],
            "from": c.sender,
            "encoding": ENCODING.get(first.encoding, "gsm"),
            "parts": max(m.parts for m in batch) or 1,
        }
        if self._substituted(first):
            tpl = c.template
            body["message"] = tpl.server_source
            body["sub"] = [m.slots for m in batch]
        else:
            body["message"] = first.text
        if self.s.notification_url:
            body["notificationUrl"] = self.s.notification_url
        if self.s.campaign_name:
            body["campaignName"] = self.s.campaign_name
        return HttpRequest("POST", self._base + PATHS[first.channel], self._headers, orjson.dumps(body))

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
