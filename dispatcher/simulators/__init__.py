"""Simulators of every provider's API, discovered by file like the providers."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from .base import Faults, Simulator

__all__ = ["Faults", "Simulator", "kinds"]


@cache
def kinds() -> dict[str, type[Simulator]]:
    found: dict[str, type[Simulator]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in ("base", "serve"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Simulator) and "kind" in vars(obj):
                found[obj.kind] = obj
    return found
