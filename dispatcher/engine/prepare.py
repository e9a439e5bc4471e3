"""Records into messages: what a preparer does, and the encode-and-check step every preparer shares.

The engine takes a *preparer*: a blast's renders the campaign's templates and normalises
addresses (`CampaignPreparer`); the daemon's starts from outbox rows already rendered. Both
end in the `Encoder`: one codec call for the chunk's SMS texts (encoding, parts, transliteration)
and each provider's `check`, so a message that can never be accepted is rejected before it
is sent, whoever prepared it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .. import codecs
from ..address import normalize_email
from ..model import REJECTED, Batch, Chunk, Content, Message, Result, all_str, as_text, rejected
from ..phone import number_problem, to_e164_column
from ..phone import warm_up as warm_phones
from ..providers.base import Provider
from ..render import problem
from ..routing import Fixed

if TYPE_CHECKING:
    from .campaign import Campaign

Prepared = tuple[dict[str, Sequence[Message]], list[Result]]  # messages by provider alias (a Batch from a
# campaign, a list from the daemon), rejected results


class Preparer(Protocol):
    def prepare(self, rows: Chunk) -> Prepared:
        """Messages by provider alias for one chunk; bad rows as rejected results."""
        ...

    def warm_up(self) -> None:
        """Load what the first chunk would otherwise pay for (compiled kernels, tables) before the clock starts."""
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
        names = codecs.ENCODINGS
        enc = list(map(names.__getitem__, a.encoding.tolist()))
        parts = a.parts.tolist()
        if self.transliterate:
            return enc, parts, a.transliterated.tolist(), a.texts
        return enc, parts, [False] * len(texts), texts

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


class CampaignPreparer:
    """A campaign's rows, a column at a time: route, normalise the recipients, render the template,
    encode, check; the rows that can be sent as one `Batch` a provider (what lanes group and send)."""

    def __init__(self, c: Campaign) -> None:
        self.c = c
        self.encoder = Encoder(c.providers, gsm_pt=c.gsm_pt, transliterate=c.transliterate)
        # per provider alias, what preparing a record needs: (channel, content, recipient column, is a phone)
        self._routes: dict[str, tuple[str, Content, str, bool]] = {
            alias: (ch, c.contents[ch], c.contents[ch].recipient or c.recipient, p.address_for(ch) == "phone")
            for alias, p in c.providers.items() for ch in (c.channels[alias],)
        }
        self._fixed = c.route.alias if type(c.route) is Fixed else None

    def warm_up(self) -> None:
        c = self.c
        if any(ch == "sms" for ch in c.channels.values()):
            codecs.warm_up()
        if any(phone for _, _, _, phone in self._routes.values()):
            warm_phones(c.region)

    def prepare(self, rows: Chunk) -> Prepared:
        c = self.c
        bad: list[Result] = []
        seqs = rows.seq
        if c.id_column:
            rids = rows.column(c.id_column)
            if not _all_text(rids):  # an empty or missing id is the row's seq; other values as text
                rids = [v if v.__class__ is str and v else str(v or s) for v, s in zip(rids, seqs, strict=True)]
        else:
            rids = list(map(str, seqs))
        out: dict[str, Sequence[Message]] = {}
        if self._fixed is not None:
            out[self._fixed] = self._messages(self._fixed, rows, rids, bad)
            return out, bad
        by_alias: dict[str, list[int]] = {}
        route = c.route
        for i in range(len(rows)):
            f = rows.fields(i)
            try:
                by_alias.setdefault(route(f), []).append(i)
            except KeyError as e:
                raw = f.get(c.recipient)
                bad.append(rejected(seqs[i], rids[i], "" if raw is None else str(raw), "no_route",
                                    str(e.args[0]) if e.args else "no route"))
        for alias, idx in by_alias.items():
            out[alias] = self._messages(alias, rows.take(idx), [rids[i] for i in idx], bad)
        return out, bad

    def _messages(self, alias: str, rows: Chunk, rids: list[str], bad: list[Result]) -> Sequence[Message]:
        c = self.c
        channel, content, column, phone = self._routes[alias]
        n = len(rows)
        seqs = rows.seq
        raws = rows.column(column)
        if not all_str(raws):
            raws = list(map(as_text, raws))
        mobile = content.mobile_only
        tos = to_e164_column(raws, c.region, mobile) if phone else [normalize_email(raw) for raw in raws]
        texts, slots, problems = content.template.fill_columns(rows.column, n)
        if problems or not all_str(tos):  # a None: a recipient refused
            keep = []
            for i, to in enumerate(tos):
                if to is None:
                    raw = raws[i]
                    why = number_problem(raw, c.region, mobile) if phone else (
                        "invalid_address", f"'{raw}' is not an email address")
                    bad.append(rejected(seqs[i], rids[i], raw, *why, alias, channel))
                elif i in problems:
                    bad.append(rejected(seqs[i], rids[i], to, *problem(problems[i]), alias, channel))
                else:
                    keep.append(i)
            seqs, rids, tos, texts, slots = ([col[i] for i in keep] for col in (seqs, rids, tos, texts, slots))
        else:
            keep = None
        provider = c.providers[alias]
        if provider.reads_fields(channel, content):
            fields = [rows.fields(i) for i in (range(n) if keep is None else keep)]
        else:
            fields = [_NO_FIELDS] * len(seqs)
        if channel == "sms":
            enc, parts, translit, texts = self.encoder.encode(texts)
        else:
            enc, parts, translit = [""] * len(seqs), [0] * len(seqs), [False] * len(seqs)
        batch = Batch(seqs, rids, tos, texts, fields, slots, enc, parts, translit, alias, channel, content)
        return self.encoder.screen(alias, batch, bad)


_NO_FIELDS: dict[str, Any] = {}  # shared by the messages of providers that read no field of their own


def _all_text(col: list[Any]) -> bool:
    """Every value a non-empty str."""
    return all_str(col) and "" not in col


