"""Where results go: each sink takes chunks of Results; the first one also tells a resumed
run which records already have a terminal result."""

from .base import Sink, SinkError

__all__ = ["Sink", "SinkError"]
