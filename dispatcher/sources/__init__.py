"""Where recipients come from: each source yields chunks of Records and, for rows it could
not read, rejected Results carrying the line and the reason."""

from ..errors import SourceError
from .base import Source

__all__ = ["Source", "SourceError"]
