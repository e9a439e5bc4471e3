"""Sending windows: the days and hours, in a time zone, when a campaign may be sent.

```toml
[campaigns.promo_fr]
window = { days = "mon-sat", hours = "08:00-22:00", tz = "Europe/Paris" }
# several ranges, overnight ranges, several windows:
windows = [{ days = "mon-fri", hours = "09:00-13:00,15:00-20:00", tz = "Europe/Madrid" },
           { days = "sat", hours = "10:00-14:00", tz = "Europe/Madrid" }]
```

- `days`: `mon`..`sun`, ranges (`mon-fri`, `fri-mon` wraps), lists (`mon,wed,fri`), `*` or
  `all`; default every day.
- `hours`: `HH:MM-HH:MM` ranges, comma-separated, start included, end excluded; `24:00`
  is the end of the day; a range whose end is before its start runs overnight and belongs
  to the day it starts on (`fri 22:00-06:00` is Friday 22:00 to Saturday 06:00); default
  the whole day.
- `tz`: an IANA zone (zoneinfo), so summer time is followed; default UTC.

A campaign is open when any of its windows is open. A closed campaign's rows stay
`pending` (never claimed) until it opens again.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class WindowError(ValueError):
    pass


def parse_days(spec: str) -> frozenset[int]:
    s = spec.strip().lower()
    if s in ("", "*", "all", "every day", "daily"):
        return frozenset(range(7))
    out: set[int] = set()
    for item in s.split(","):
        item = item.strip()
        if not item:
            continue
        a, sep, b = item.partition("-")
        a, b = a.strip()[:3], b.strip()[:3]
        if a not in DAYS or (sep and b not in DAYS):
            raise WindowError(f"'{item}' is not a day or a range of days (mon, tue, ... sun; mon-fri)")
        i = DAYS.index(a)
        j = DAYS.index(b) if sep else i
        while True:
            out.add(i)
            if i == j:
                break
            i = (i + 1) % 7
    if not out:
        raise WindowError(f"'{spec}' names no day")
    return frozenset(out)


def parse_hours(spec: str) -> tuple[tuple[int, int], ...]:
    """Ranges as (start, end) minutes of the day; end may be below start (overnight)."""
    s = spec.strip()
    if s in ("", "*", "all"):
        return ((0, 1440),)
    out = []
    for item in s.split(","):
        m = _HOURS.match(item)
        if not m:
            raise WindowError(f"'{item.strip()}' is not a range of hours (HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise WindowError(f"'{item.strip()}' is not a range of hours (00:00 to 24:00)")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise WindowError(f"'{item.strip()}' is empty (start equals end)")
        out.append((start, end))
    return tuple(out)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"unknown time zone '{name}' (an IANA name such as Europe/Paris)") from None


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    hours: tuple[tuple[int, int], ...]
    tz: ZoneInfo

    @classmethod
    def parse(cls, days: str = "*", hours: str = "*", tz: str = "UTC") -> Window:
        return cls(parse_days(days), parse_hours(hours), zone(tz))

    def is_open(self, when: dt.datetime) -> bool:
        local = when.astimezone(self.tz)
        day = local.weekday()
        minute = local.hour * 60 + local.minute
        yesterday = (day - 1) % 7
        for start, end in self.hours:
            if start < end:
                if day in self.days and start <= minute < end:
                    return True
            elif (day in self.days and minute >= start) or (yesterday in self.days and minute < end):
                return True
        return False


@dataclass(frozen=True)
class Schedule:
    """A campaign's windows: open when any is (no window: always open)."""

    windows: tuple[Window, ...] = ()

    def is_open(self, when: dt.datetime | None = None) -> bool:
        if not self.windows:
            return True
        when = when or dt.datetime.now(dt.UTC)
        return any(w.is_open(when) for w in self.windows)

    def next_change(self, when: dt.datetime | None = None, horizon_minutes: int = 8 * 24 * 60) -> dt.datetime | None:
        """When this schedule next opens or closes (to the minute), within the horizon."""
        if not self.windows:
            return None
        when = (when or dt.datetime.now(dt.UTC)).replace(second=0, microsecond=0)
        now_open = self.is_open(when)
        for i in range(1, horizon_minutes + 1):
            t = when + dt.timedelta(minutes=i)
            if self.is_open(t) != now_open:
                return t
        return None
