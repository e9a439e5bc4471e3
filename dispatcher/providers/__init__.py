"""Provider modules, discovered by file: a new provider is one new module here."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from ..errors import ConfigError
from .base import HttpRequest, Outcome, Provider, Settings, Verdict

__all__ = ["ConfigError", "HttpRequest", "Outcome", "Provider", "Settings", "Verdict", "kinds"]


@cache
def kinds() -> dict[str, type[Provider]]:
    """Every provider class by its `kind`, from the modules of this package."""
    found: dict[str, type[Provider]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Provider) and obj is not Provider and "kind" in vars(obj):
                found[obj.kind] = obj
    return found
