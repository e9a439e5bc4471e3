"""Delivery reports as providers send them, read into one shape: `Report`.

Each provider module says how its callbacks look (`Provider.parse_report`, usually by
overriding `Provider.report_item`, which reads one callback item); these helpers read the
fields every provider has in some form (a recipient, an event time, a part number) and
split a callback into items (a JSON object or list, a form, or the query string).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..address import normalize_email

# 1 accepted < 2 sent < 3 final < 4 engagement; a status not here has no bearing on delivery
RANK = {"accepted": 1, "sent": 2, "soft_bounced": 2,
        "delivered": 3, "undelivered": 3, "failed": 3, "expired": 3, "rejected": 3, "bounced": 3, "dropped": 3,
        "deleted": 3, "read": 4, "opened": 4, "clicked": 4}
_PHONE = re.compile(r"\+?[0-9]{6,16}")
_TO_THE_MINUTE = re.compile(r"[T ]\d{2}:\d{2}(?:Z|[+-]\d{2}:?\d{2})?$")  # hours and minutes, no seconds


@dataclass(slots=True)
class Report:
    provider: str  # the alias the callback came for
    message_id: str | None
    recipient: str | None  # normalised: +E.164 digits, lower-case email
    status: str  # accepted, sent, delivered, undelivered, failed, read, opened, bounced, unsubscribed, ...
    provider_status: str | None  # as the provider said it (DELIVRD, 7, ...)
    event_at: dt.datetime
    payload: dict[str, Any]
    part: int | None = None

    @property
    def rank(self) -> int | None:
        return RANK.get(self.status)


def recipient(v: Any) -> str | None:
    if v is None or v == "":
        return None
    s = str(v).replace("\x00", "").strip()[:320]
    if "@" in s:
        return normalize_email(s) or s
    digits = s.replace(" ", "")
    if _PHONE.fullmatch(digits):
        return "+" + digits.lstrip("+")
    return s


def when(v: Any, now: dt.datetime) -> dt.datetime:
    """A provider's event time as UTC (naive times are taken as UTC); `now` when absent or unreadable."""
    if v is None or v == "":
        return now
    if isinstance(v, int | float) or (isinstance(v, str) and v.isdigit()):
        n = float(v)
        if n > 1e12:
            n /= 1000
        if 1e9 < n < 1e11:
            return dt.datetime.fromtimestamp(n, dt.UTC)
        return now
    s = str(v).strip()
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return now
    t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    if _TO_THE_MINUTE.search(s) and t <= now < t + dt.timedelta(minutes=1):
        return now  # a time to the minute only (NRS's "%t"): the receive time, within it, is the closer one
    return t


def text(v: Any) -> str | None:
    return None if v is None or v == "" else str(v).replace("\x00", "")[:500]


def part(v: Any) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def items(method: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> list[dict[str, Any]]:
    """A callback's items: the JSON object or list, or the form, of a POST; else the query string.
    Raises ValueError (orjson's decode error is one) on a body that says it is JSON and is not."""
    params = dict(query)
    found: list[dict[str, Any]] = []
    if method != "GET" and body:
        content_type = headers.get("Content-Type", "").lower()
        if "json" in content_type or body.lstrip()[:1] in (b"{", b"["):
            data = orjson.loads(body)
            found = [i for i in (data if isinstance(data, list) else [data]) if isinstance(i, dict)]
        elif "form" in content_type:
            found = [dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))]
        else:
            found = [{"raw": body[:10000].decode("utf-8", "replace")}]
    return found or ([params] if params else [])
