"""Records into messages: what a preparer does, and the encode-and-check step every preparer shares.

The engine takes a *preparer*: a blast's renders the campaign's templates and normalises
addresses (blast/preparer.py); the daemon's starts from outbox rows already rendered. Both
end in the `Encoder`: one codec call for the chunk's SMS texts (encoding, parts, transliteration)
and each provider's `check`, so a message that can never be accepted is rejected before it
is sent, whoever prepared it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .. import codecs
from ..model import REJECTED, Batch, Chunk, Message, Result
from ..providers.base import Provider

Prepared = tuple[dict[str, Sequence[Message]], list[Result]]  # messages by provider alias (a Batch from a
# campaign, a list from the daemon), rejected results


class Preparer(Protocol):
    def prepare(self, rows: Chunk) -> Prepared:
        """Messages by provider alias for one chunk; bad rows as rejected results."""
        ...

    def warm_up(self) -> None:
        """Load what the first chunk would otherwise pay for (compiled kernels, tables) before the clock starts."""
        ...

    def digest(self) -> str:
        """What the run's messages are, as a short digest: a resume whose digest differs is refused (it would
        pair old results with new records)."""
        ...

    def describe(self, seq: int, fields: dict[str, Any]) -> tuple[str, str]:
        """(id, recipient) of a record, for a result the engine makes without sending it (held in doubt)."""
        ...


class Encoder:
    """A chunk's SMS texts encoded in one codec call (encoding, parts, transliteration), then each message
    screened by its provider (`check`): what a message needs after rendering, before it is batched."""

    def __init__(self, providers: Mapping[str, Provider], *, gsm_pt: bool = False, transliterate: bool = False) -> None:
        self.providers = providers
        self.gsm_pt = gsm_pt
        self.transliterate = transliterate

    def __call__(self, out: dict[str, Sequence[Message]], sms: list[Message], bad: list[Result]) -> Prepared:
        """Messages built already (the daemon's rows): set their encodings, then `screen` them."""
        if sms:
            enc, parts, translit, texts = self.encode([m.text for m in sms])
            for m, e, p, t, text in zip(sms, enc, parts, translit, texts, strict=True):
                m.encoding, m.parts, m.transliterated, m.text = e, p, t, text
        for alias, msgs in out.items():
            out[alias] = self.screen(alias, msgs, bad)
        return out, bad

    def encode(self, texts: list[str]) -> tuple[list[str], list[int], list[bool], list[str]]:
        """(encoding, parts, transliterated, text as sent) of each text, in one codec call."""
        if not texts:
            return [], [], [], texts
        a = codecs.analyze(texts, gsm_pt=self.gsm_pt, transliterate=self.transliterate)
        enc = codecs.encoding_names(a.encoding)
        parts = a.parts.tolist()
        if self.transliterate:
            return enc, parts, a.transliterated.tolist(), a.texts
        return enc, parts, [False] * len(texts), texts

    def encode_slots(self, template: Any, vals: list[list[str]], n: int) -> tuple[list[str], list[int], list[bool]]:
        """(encoding, parts, transliterated) of each of n texts of `template` from its slot values
        (`Columns.slots`), in one codec call that renders no text it can count from the pieces
        (`codecs.analyze_slots`); a text as sent is then the template's (`Template.texts`)."""
        if not n:
            return [], [], []
        cols = template.columns

        def render(rows: list[int]) -> list[str]:
            return cols.texts([[v[i] for i in rows] for v in vals], len(rows))

        enc, parts, translit = codecs.analyze_slots(cols.literal, vals, list(cols.uses), n, render,
                                                    gsm_pt=self.gsm_pt, transliterate=self.transliterate)
        return codecs.encoding_names(enc), parts.tolist(), \
            (translit.tolist() if self.transliterate else [False] * n)

    def screen(self, alias: str, msgs: Sequence[Message], bad: list[Result]) -> Sequence[Message]:
        """The messages `alias` can take; the others become rejected results in `bad`. A batch checked a
        message at a time goes on as its messages (a check may have recounted their parts)."""
        refused = self.providers[alias].check_all(msgs)
        if type(msgs) is Batch and not msgs.fresh:
            msgs = msgs.messages()
        if not refused:
            return msgs
        for i, (code, why) in refused.items():
            m = msgs[i]
            bad.append(Result(seq=m.seq, id=m.rid, to=m.to, provider=alias, status=REJECTED, parts=m.parts or None,
                              encoding=m.encoding or None, code=code, error=why, channel=m.channel,
                              transliterated=m.transliterated))
        return [m for i, m in enumerate(msgs) if i not in refused]
