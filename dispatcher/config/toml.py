"""What every TOML file of this project shares: reading it, finding the line of a setting for an error,
unknown keys refused with a "did you mean", tables and typed provider settings checked. The campaign
loader (config/__init__.py) and the daemon's (daemon/config.py) both build on these."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..providers.base import Settings

log = logging.getLogger("dispatcher")

HEADER = re.compile(r"^\s*\[\[?[\w\s.\"'-]+\]\]?\s*(#.*)?$")  # a table's header: the previous table's keys end


class Located:
    """Finds the line of a setting in the file's text, for error messages."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, section: str, key: str | None = None) -> int | None:
        """The line of `key` in `section` (or of the section's header), None when the file does not show it.
        A key written as a table of its own (`[section.key]`) is found at that header."""
        start = self._header(section) if section else 0
        if key is None:
            return start + 1 if start is not None else None
        if start is not None:
            pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
            for i in range(start + (1 if section else 0), len(self.lines)):
                if section and HEADER.match(self.lines[i]):
                    break  # the section ended without the key
                if pat.match(self.lines[i]):
                    return i + 1
        own = self._header(f"{section}.{key}" if section else key)
        if own is not None:
            return own + 1
        return start + 1 if start is not None else None

    def _header(self, section: str) -> int | None:
        head = re.compile(r"^\s*\[\[?\s*" + re.escape(section).replace(r"\.", r"\s*\.\s*") + r"\s*\]\]?\s*$")
        return next((i for i, line in enumerate(self.lines) if head.match(line)), None)

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        n = self.line(section, key)
        where = f"{self.path}:{n}" if n else str(self.path)
        name = ".".join(p for p in (section, key) if p)
        return ConfigError(f"{where}: {name}: {message}" if name else f"{where}: {message}")


def check_keys(loc: Located, section: str, table: dict[str, Any], allowed: set[str] | tuple[str, ...]) -> None:
    for k in table:
        if k not in allowed:
            hint = closest(k, allowed)
            raise loc.error(section, k, "unknown setting" + (f" (did you mean '{hint}'?)" if hint else "")
                            + f"; known: {', '.join(sorted(allowed))}")


def closest(word: str, choices: set[str] | tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1)
    return found[0] if found else None


def subtable(loc: Located, data: dict[str, Any], key: str, section: str = "") -> dict[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise loc.error(section, key, "must be a table")
    return v


def provider_settings(loc: Located, alias: str, cls: type[Settings], table: dict[str, Any],
             extra: set[str] | frozenset[str] = frozenset()) -> Settings:
    """A provider table's settings, each of its declared type; `type`, `channel` and the `extra` keys
    (the daemon's own, read by its loader) are allowed and left out."""
    section = f"providers.{alias}"
    if "burst" in table:  # a setting of the old token bucket: said once, then ignored
        where = loc.line(section, "burst")
        log.warning("%s:%s: %s.burst is ignored: the limiter keeps an exact one-second window at `rate` "
                    "(remove the setting; a later version will refuse it)", loc.path, where, section)
        table = {k: v for k, v in table.items() if k != "burst"}
    skip = {"type", "channel"} | set(extra)
    check_keys(loc, section, table, set(cls.keys()) | skip)
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for k, v in table.items():
        if k in skip:
            continue
        want = types[k]
        want = want if isinstance(want, str) else getattr(want, "__name__", str(want))
        if want == "float" and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        ok = {"str": isinstance(v, str), "int": isinstance(v, int) and not isinstance(v, bool),
              "float": isinstance(v, float), "bool": isinstance(v, bool)}.get(want, True)
        if not ok:
            raise loc.error(section, k, f"must be a {want}, not {type(v).__name__} {v!r}")
        if want in ("int", "float") and v < 0:
            raise loc.error(section, k, "must not be negative")
        values[k] = v
    return cls(**values)


def read_toml(path: Path, what: str) -> tuple[dict[str, Any], Located]:
    """A TOML file's data and its locator, or one line saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    return data, Located(path, text)


def check_url(url: str) -> None:
    """A base URL that can be used; never echoed, since a wrong one may hold a password."""
    if not url:
        raise ConfigError("required: the provider's base URL")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError("is not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError("must not hold credentials (user:password@): name the environment variables that "
                          "hold them in this provider's *_env settings")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("must be an http:// or https:// URL with a host")
