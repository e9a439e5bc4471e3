"""A `[providers.NAME]` table, read the same way by a campaign file and a daemon file: its type looked
up among the adapters, its settings typed, its URL checked (never echoed: it may hold a password), its
channel defaulted and checked; and the failover rule between providers. Each loader adds only what is
its own (a campaign's command-line overrides, the daemon's delivery-report secrets)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..providers import kinds
from ..providers.base import Provider, Settings
from .toml import Located, check_url, provider_settings


def provider_kind(loc: Located, alias: str, table: object) -> type[Provider]:
    """The adapter class a provider table names in `type`."""
    if not isinstance(table, dict):
        raise loc.error("providers", alias, "must be a table")
    kind = table.get("type")
    if kind not in kinds():
        raise loc.error(f"providers.{alias}", "type",
                        f"unknown provider type {kind!r}; known: {', '.join(sorted(kinds()))}")
    return kinds()[kind]


def no_providers(loc: Located) -> ConfigError:
    return loc.error("", None, "no provider: add a [providers.NAME] table with a `type` "
                     f"({', '.join(sorted(kinds()))})")


def provider_entry(loc: Located, alias: str, table: dict[str, Any], default_channel: str, *,
                   extra: frozenset[str] | set[str] = frozenset(),
                   adjust: Callable[[Settings], None] | None = None,
                   url_error: Callable[[ConfigError], ConfigError] | None = None) -> tuple[type[Provider], Settings, str]:
    """(adapter class, settings, channel) of one provider table. `adjust` changes the settings before
    they are checked (a campaign's --rate, --url); `url_error` words a bad URL that came from elsewhere."""
    section = f"providers.{alias}"
    cls = provider_kind(loc, alias, table)
    settings = provider_settings(loc, alias, cls.settings_class, table, extra)
    if adjust is not None:
        adjust(settings)
    try:
        check_url(settings.url)
    except ConfigError as e:
        raise (url_error(e) if url_error is not None else loc.error(section, "url", str(e))) from None
    channel = table.get("channel", default_channel if default_channel in cls.channels else sorted(cls.channels)[0])
    if channel not in cls.channels:
        raise loc.error(section, "channel",
                        f"{cls.kind} does not carry '{channel}' (it carries {', '.join(sorted(cls.channels))})")
    return cls, settings, channel


def check_failover(loc: Located, failovers: Mapping[str, str | None], channels: Mapping[str, str]) -> None:
    """A provider's `failover` names another provider that carries the same channel."""
    for alias, other in failovers.items():
        if other and (other not in channels or channels[other] != channels[alias]):
            raise loc.error(f"providers.{alias}", "failover", f"'{other}' must be another provider carrying "
                            f"the same channel ({channels[alias]})")


def built(loc: Located, alias: str, factory: Callable[[str, Settings], Provider], settings: Settings) -> Provider:
    """`factory(alias, settings)` now: credentials and adapter-specific settings checked before the first
    send, an error placed at the table's line."""
    try:
        return factory(alias, settings)
    except ConfigError as e:
        raise ConfigError(f"{loc.path}:{loc.line(f'providers.{alias}') or ''}: {e}") from None
