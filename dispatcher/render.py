"""Message templates: `{var}` and `{var|filter|filter}` with the 360nrs filters.

A template is compiled once into a list of literal and variable pieces; rendering a
message is one join. Placeholders the provider fills itself (`{UNSUB_URL}`, `{OTP_CODE}`)
are left as they are.

`shorten` is the one filter only the server can apply (360nrs replaces the link with its own
`https://sms.tl/xxxxxx`). The rendered text and `server_source` keep the real link (what any
other provider, or a channel without the filter, must send); `short_source` is the server
template with the `|shorten` kept for the server, and `shortened(slots)` the text as 360nrs
will send it, with `SHORT_LINK` in place of each shortened link: that is the text whose parts
360nrs charges, so its adapter counts that one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .codecs.tables import SHORT_LINK

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
    slots: tuple[Piece, ...]  # distinct (slot, variable, filters)
    fill: Callable[[Mapping[str, object]], tuple[str, dict[str, str]]]
    """`fill(values) -> (text, slots)`: the rendered text and the per-slot values (filters applied),
    computed once, so `server_source` substituted with the slots equals the text (links left long).
    Raises KeyError naming a missing variable. Generated per template: it runs once per message."""
    short_source: str = ""  # server_source with the `|shorten` kept for the server; "" if none
    short_format: str = ""  # %-format of the text with every `|shorten` link as SHORT_LINK; "" if none
    short_keys: tuple[str, ...] = ()  # the slots that fill short_format, in order

    def render(self, values: Mapping[str, object]) -> str:
        return self.fill(values)[0]

    @property
    def shortens(self) -> bool:
        """Whether the server shortens a link of this template (`{url|shorten}`)."""
        return bool(self.short_format)

    def shortened(self, slots: Mapping[str, str]) -> str:
        """The text as a shortening server sends it: each `|shorten` link is SHORT_LINK."""
        return self.short_format % tuple(slots[k] for k in self.short_keys)


def _compile_fill(pieces: list[str | Piece], slots: tuple[Piece, ...]) -> Callable[..., tuple[str, dict[str, str]]]:
    """Straight-line Python for one template: no loop over pieces, no per-piece type test."""
    env: dict[str, object] = {"_text": _text, "FMT": "".join(p.replace("%", "%%") if type(p) is str else "%s"
                                                             for p in pieces)}
    lines = ["def fill(v):"]
    var_of: dict[str, str] = {}
    slot_of: dict[str, str] = {}
    for key, name, filters in slots:
        if name not in var_of:
            x = var_of[name] = f"x{len(var_of)}"
            lines.append(f"    {x} = v[{name!r}]")
            lines.append(f"    if {x}.__class__ is not str: {x} = _text({x})")
        expr = var_of[name]
        for f in filters:
            fn = f"f{len(env)}"
            env[fn] = f
            expr = f"{fn}({expr})"
        s = slot_of[key] = f"s{len(slot_of)}"
        lines.append(f"    {s} = {expr}")
    args = "".join(slot_of[p[0]] + ", " for p in pieces if type(p) is not str)
    mapping = ", ".join(f"{k!r}: {v}" for k, v in slot_of.items())
    lines.append(f"    return FMT % ({args}), {{{mapping}}}")
    exec("\n".join(lines), env)
    return env["fill"]  # type: ignore[return-value]


def compile_template(source: str) -> Template:
    pieces: list[str | Piece] = []
    names: list[str] = []
    slots: dict[str, Piece] = {}
    server: list[str] = []
    shorting: list[str] = []  # server, with the server's own filters kept
    short: list[str] = []  # the %-format of the shortened text
    short_keys: list[str] = []
    shortens = False
    pos = 0
    for m in _TOKEN.finditer(source):
        name, chain = m.group(1), m.group(2)
        if name in SERVER_PLACEHOLDERS:
            continue
        local = []
        remote = []
        for f in filter(None, chain.split("|")):
            if f in SERVER_FILTERS:
                remote.append(f)
                continue
            if f not in FILTERS:
                known = ", ".join([*FILTERS, *SERVER_FILTERS])
                raise TemplateError(f"unknown filter '{f}' in '{m.group(0)}' (known: {known})")
            local.append(f)
        key = "_".join([name, *local])
        piece = (key, name, tuple(FILTERS[f] for f in local))
        slots.setdefault(key, piece)
        if m.start() > pos:
            literal = source[pos:m.start()]
            pieces.append(literal)
            server.append(literal)
            shorting.append(literal)
            short.append(literal.replace("%", "%%"))
        pieces.append(piece)
        server.append("{" + key + "}")
        shorting.append("{" + "|".join([key, *remote]) + "}")  # the server applies its own filters
        if remote:
            shortens = True
            short.append(SHORT_LINK.replace("%", "%%"))
        else:
            short.append("%s")
            short_keys.append(key)
        if name not in names:
            names.append(name)
        pos = m.end()
    if pos < len(source):
        pieces.append(source[pos:])
        server.append(source[pos:])
        shorting.append(source[pos:])
        short.append(source[pos:].replace("%", "%%"))
    slot_tuple = tuple(slots.values())
    return Template(source, pieces, tuple(names), "".join(server), slot_tuple, _compile_fill(pieces, slot_tuple),
                    "".join(shorting) if shortens else "", "".join(short) if shortens else "",
                    tuple(short_keys) if shortens else ())
