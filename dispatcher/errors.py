"""The errors every layer may raise and every front end catches, in one leaf module (as aiohttp keeps
`client_exceptions.py`): each is said in one line a user can act on, and none ever carries a secret."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, said in one line naming the setting."""


class SourceError(Exception):
    """The source cannot be read at all (missing file, bad query): one clear line."""


class SinkError(Exception):
    """The sink cannot be opened or written: one clear line."""


class RunError(Exception):
    """A run cannot start as asked (a resume of something else, nothing to retry): one line, nothing sent."""
