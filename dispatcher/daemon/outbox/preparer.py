"""The engine's Preparer for outbox rows, which arrive rendered and routed already."""

from __future__ import annotations

from typing import Any

from ... import codecs
from ...engine import Encoder, Prepared
from ...model import Chunk, Message


class RowsPreparer:
    """Outbox rows into messages. Routing, address normalisation and rendering happened in `Rows.build`
    (per row, with the row's template and variables); this builds the messages and hands them to the
    engine's `Encoder` (one codec call for the SMS texts, each provider's `check`), as a campaign's
    preparer does. Rows for a provider that halted are deferred by the engine's lane, not here."""

    def __init__(self, encoder: Encoder, channels: dict[str, str]) -> None:
        self.encoder = encoder
        self.channels = channels

    def warm_up(self) -> None:
        if "sms" in self.channels.values():
            codecs.warm_up()

    def digest(self) -> str:
        """Nothing to compare: the daemon keeps no journal to resume (its leases do that job)."""
        return ""

    def describe(self, seq: int, fields: dict[str, Any]) -> tuple[str, str]:
        return str(seq), str(fields.get("_to") or "")

    def prepare(self, rows: Chunk) -> Prepared:
        channels = self.channels
        out: dict[str, list[Message]] = {}
        sms: list[Message] = []
        for i, (seq, alias, text, to, content, priority, group) in enumerate(zip(
                rows.seq, rows.column("_alias"), rows.column("body"), rows.column("_to"), rows.column("_content"),
                rows.column("_priority"), rows.column("_group"), strict=True)):
            m = Message(seq, str(seq), to, text, rows.fields(i), {"body": text}, alias, channels[alias],
                        content=content, priority=priority or 0, group=group or "")
            if m.channel == "sms":
                sms.append(m)
            g = out.get(alias)
            if g is None:
                g = out[alias] = []
            g.append(m)
        return self.encoder(out, sms, [])
