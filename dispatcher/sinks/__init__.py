"""Where results go: each sink takes chunks of Results; the first one also tells a resumed
run which records already have a terminal result."""

from ..errors import SinkError
from .base import Sink

__all__ = ["Sink", "SinkError"]
