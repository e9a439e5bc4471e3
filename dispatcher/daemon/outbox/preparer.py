"""The engine's Preparer for outbox rows, which arrive rendered and routed already."""

from __future__ import annotations

from typing import Any

from ... import codecs
from ...engine import Encoder, Prepared
from ...model import Chunk, Message
from .rows import ClaimedChunk


class RowsPreparer:
    """Outbox rows into messages. Routing, address normalisation and rendering happened in `RowValidator.build`
    (per row, with the row's template and variables), which made each a ClaimedRow; the ClaimedChunk
    carries those beside the record fields. This builds the messages from them and hands them to the
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
        """The engine asks this only of a record held in doubt on a resume, and the daemon never resumes
        (no journal: its leases do that job). The record fields are the row's variables, which hold no
        address."""
        return str(seq), ""

    def prepare(self, rows: Chunk) -> Prepared:
        if not isinstance(rows, ClaimedChunk):
            raise TypeError("RowsPreparer prepares the outbox's ClaimedChunks only")
        channels = self.channels
        out: dict[str, list[Message]] = {}
        sms: list[Message] = []
        for r in rows.claimed:
            alias, text = r.alias, r.text
            m = Message(r.id, str(r.id), r.to, text, r.fields, {"body": text}, alias, channels[alias],
                        content=r.content, priority=r.priority, group=r.group)
            if m.channel == "sms":
                sms.append(m)
            g = out.get(alias)
            if g is None:
                g = out[alias] = []
            g.append(m)
        return self.encoder(out, sms, [])
