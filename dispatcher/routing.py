"""Which provider a record goes to: by channel, by a column, or by the number's country prefix.

[routing]
by = "channel"            # a column names the channel; the provider carrying it sends
column = "channel"
map = { sms = "nrs", whatsapp = "wa" }   # optional: value -> provider alias
default = "nrs"           # where records with no match go (else they are rejected: no_route)

by = "column" routes on a column whose values are provider aliases (or keys of `map`);
by = "prefix" on the E.164 number: `prefixes = { "+34" = "nrs", "+91" = "kaleyra" }`,
longest prefix first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError
from .phone import to_e164
from .providers.base import Provider

KEYS = {"by", "column", "map", "prefixes", "default", "recipient", "region"}


class Fixed:
    """The router of a campaign with one provider: every record goes to `alias`. A class, not a lambda,
    so the preparer can see that routing is constant and skip it for whole chunks."""

    __slots__ = ("alias",)

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def __call__(self, fields: dict[str, Any]) -> str:
        return self.alias


def build_router(cfg: Mapping[str, Any], providers: Mapping[str, Provider], channels: Mapping[str, str],
                 recipient: str = "phone", region: str | None = None) -> Callable[[dict[str, Any]], str]:
    unknown = set(cfg) - KEYS
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KEYS))}")
    by = cfg.get("by")
    default = cfg.get("default")
    if default is not None and default not in providers:
        raise ConfigError(f"default: no provider named '{default}'")
    mapping = dict(cfg.get("map", {}))
    for k, v in mapping.items():
        if v not in providers:
            raise ConfigError(f"map: '{k}' goes to '{v}', which is not a provider ({', '.join(providers)})")

    def miss(what: str) -> str:
        if default is not None:
            return default
        raise KeyError(what)

    if by == "channel":
        column = cfg.get("column", "channel")
        by_channel: dict[str, str] = {}
        for alias, ch in channels.items():
            by_channel.setdefault(ch, alias)
        by_channel.update(mapping)

        def route(fields: dict[str, Any]) -> str:
            ch = fields.get(column)
            alias = by_channel.get(ch) if ch is not None else None
            return alias if alias is not None else miss(f"no provider for channel {ch!r}")
        return route
    if by == "column":
        column = cfg.get("column")
        if not column:
            raise ConfigError("column: required with by = \"column\"")
        table = {**{a: a for a in providers}, **mapping}

        def route(fields: dict[str, Any]) -> str:
            v = fields.get(column)
            alias = table.get(v) if v is not None else None
            return alias if alias is not None else miss(f"no provider for {column} = {v!r}")
        return route
    if by == "prefix":
        prefixes = dict(cfg.get("prefixes", {}))
        if not prefixes:
            raise ConfigError("prefixes: required with by = \"prefix\", e.g. { \"+34\" = \"nrs\" }")
        for p, alias in prefixes.items():
            if alias not in providers:
                raise ConfigError(f"prefixes: '{p}' goes to '{alias}', which is not a provider")
            if not p.startswith("+") or not p[1:].isdigit():
                raise ConfigError(f"prefixes: '{p}' must be '+' and digits")
        ordered = sorted(prefixes.items(), key=lambda kv: -len(kv[0]))
        col = cfg.get("recipient", recipient)
        reg = cfg.get("region", region)

        def route(fields: dict[str, Any]) -> str:
            raw = fields.get(col)
            number = to_e164(str(raw), reg) if raw else None
            if number:
                for p, alias in ordered:
                    if number.startswith(p):
                        return alias
            return miss(f"no provider for the prefix of {raw!r}")
        return route
    raise ConfigError(f"by: {by!r} must be \"channel\", \"column\" or \"prefix\"")
