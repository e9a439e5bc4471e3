"""A blast's run: `Campaign`, the engine's `RunSpec` with what its records become (the messages by channel,
the routing, the recipient and id columns, the region and the codec's options), built and validated by
config/ from a campaign file, and read by the blast's preparer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine import RunSpec
from ..model import Content

Router = Callable[[dict[str, Any]], str]  # record fields -> provider alias


@dataclass(kw_only=True)
class Campaign(RunSpec):
    contents: dict[str, Content]  # by channel
    route: Router
    recipient: str = "phone"
    id_column: str = ""
    region: str | None = None
    transliterate: bool = False
    gsm_pt: bool = False
    dry_run: bool = False
