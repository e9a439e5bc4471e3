"""How fast a lane sends to its provider: `window.py` keeps the exact pace (never `n + 1` requests in one of
the provider's windows), `throttle.py`'s `RateLimit` decides what a 429 changes (a pause, or a lower rate)."""

from .throttle import SHARED_MARGIN, RateLimit
from .window import MARGIN, Window

__all__ = ["MARGIN", "SHARED_MARGIN", "RateLimit", "Window"]
