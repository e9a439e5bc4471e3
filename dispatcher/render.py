"""Message templates: `{var}` and `{var|filter|filter}` with the 360nrs filters.

A template is compiled once into a list of literal and variable pieces; rendering a
message is one join. Placeholders the provider fills itself (`{UNSUB_URL}`, `{OTP_CODE}`)
are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SERVER_PLACEHOLDERS = frozenset({"UNSUB_URL", "OTP_CODE"})
_TOKEN = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)((?:\|[A-Za-z]+)*)\}")


def _capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]


def _capitalize_all(s: str) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), s)


_NUMERIC = re.compile(r"-?\d+(?:[.,]\d+)?")


def _number(s: str, thousands: str, decimal: str) -> str:
    """Group thousands, keeping the decimals the value came with (`1234.5` -> `1.234,5`)."""
    t = s.strip()
    if not _NUMERIC.fullmatch(t):
        return s
    sign = "-" if t.startswith("-") else ""
    whole, _, frac = t.lstrip("-").replace(",", ".").partition(".")
    grouped = f"{int(whole):,}".replace(",", thousands)
    return sign + grouped + (decimal + frac if frac else "")


FILTERS: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "capitalize": _capitalize,
    "capitalizeAll": _capitalize_all,
    "formatDotComma": lambda s: _number(s, ".", ","),
    "formatCommaDot": lambda s: _number(s, ",", "."),
}
SERVER_FILTERS = frozenset({"shorten"})  # the provider shortens links itself


class TemplateError(ValueError):
    pass


Piece = tuple[str, str, tuple[Callable[[str], str], ...]]  # (slot key, variable, filters)


def _text(v: object) -> str:
    return v if type(v) is str else ("" if v is None else str(v))


@dataclass(slots=True)
class Template:
    source: str
    pieces: list[str | Piece]
    variables: tuple[str, ...]  # every variable the template reads, in order of first use
    server_source: str  # the template with filtered placeholders renamed to slots, for providers that substitute
    slots: tuple[Piece, ...]  # distinct (slot, variable, filters), for `substitutions`

    def render(self, values: Mapping[str, object]) -> str:
        """Render with `values`; raises KeyError naming the first missing variable."""
        return self.fill(values)[0]

    def fill(self, values: Mapping[str, object]) -> tuple[str, dict[str, str]]:
        """The rendered text and the per-slot values (filters applied), computed once:
        `server_source` substituted with the slots equals the text."""
        slots = {}
        for key, name, filters in self.slots:
            s = _text(values[name])
            for f in filters:
                s = f(s)
            slots[key] = s
        return "".join([p if type(p) is str else slots[p[0]] for p in self.pieces]), slots


def compile_template(source: str) -> Template:
    pieces: list[str | Piece] = []
    names: list[str] = []
    slots: dict[str, Piece] = {}
    server: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(source):
        name, chain = m.group(1), m.group(2)
        if name in SERVER_PLACEHOLDERS:
            continue
        local = []
        for f in filter(None, chain.split("|")):
            if f in SERVER_FILTERS:
                continue
            if f not in FILTERS:
                raise TemplateError(f"unknown filter '{f}' in '{m.group(0)}' (known: {', '.join(FILTERS)})")
            local.append(f)
        key = "_".join([name, *local])
        piece = (key, name, tuple(FILTERS[f] for f in local))
        slots.setdefault(key, piece)
        if m.start() > pos:
            pieces.append(source[pos:m.start()])
            server.append(source[pos:m.start()])
        pieces.append(piece)
        server.append("{" + key + "}")
        if name not in names:
            names.append(name)
        pos = m.end()
    if pos < len(source):
        pieces.append(source[pos:])
        server.append(source[pos:])
    return Template(source, pieces, tuple(names), "".join(server), tuple(slots.values()))
