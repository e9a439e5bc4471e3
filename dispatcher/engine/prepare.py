"""Records into messages: what a preparer does, and the encode-and-check step every preparer shares.

The engine takes a *preparer*: a blast's renders the campaign's templates and normalises
addresses (`CampaignPreparer`); the daemon's starts from outbox rows already rendered. Both
end in `finish`: one codec call for the chunk's SMS texts (encoding, parts, transliteration)
and each provider's `check`, so a message that can never be accepted is rejected before it
is sent, whoever prepared it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from .. import codecs
from ..model import REJECTED, Content, Message, Record, Result, rejected
from ..phone import number_problem, to_e164
from ..providers.base import Provider
from ..render import problem

if TYPE_CHECKING:
    from .core import Campaign

Prepared = tuple[dict[str, list[Message]], list[Result]]  # messages by provider alias, rejected results


class Preparer(Protocol):
    def prepare(self, records: list[Record]) -> Prepared:
        """Messages by provider alias for one chunk; bad records as rejected results."""
        ...


class Finisher:
    """Encode the chunk's SMS texts in one codec call, then ask each provider whether it can take each message."""

    def __init__(self, providers: Mapping[str, Provider], *, gsm_pt: bool = False, transliterate: bool = False) -> None:
        self.providers = providers
        self.gsm_pt = gsm_pt
        self.transliterate = transliterate

    def __call__(self, out: dict[str, list[Message]], sms: list[Message], bad: list[Result]) -> Prepared:
        if sms:
            self._encode(sms)
        for alias, msgs in out.items():
            check = self.providers[alias].check
            keep = []
            for m in msgs:
                why = check(m)
                if why is None:
                    keep.append(m)
                else:
                    bad.append(Result(m.seq, m.rid, m.to, alias, REJECTED, None, m.parts or None,
                                      m.encoding or None, why[0], why[1], channel=m.channel,
                                      transliterated=m.transliterated))
            out[alias] = keep
        return out, bad

    def _encode(self, msgs: list[Message]) -> None:
        a = codecs.analyze([m.text for m in msgs], gsm_pt=self.gsm_pt, transliterate=self.transliterate)
        names = codecs.ENCODINGS
        enc = a.encoding.tolist()
        parts = a.parts.tolist()
        if self.transliterate:
            tr = a.transliterated.tolist()
            texts = a.texts
            for i, m in enumerate(msgs):
                m.encoding = names[enc[i]]
                m.parts = parts[i]
                if tr[i]:
                    m.transliterated = True
                    m.text = texts[i]
        else:
            for i, m in enumerate(msgs):
                m.encoding = names[enc[i]]
                m.parts = parts[i]


class CampaignPreparer:
    """A campaign's records: route, normalise the recipient, render the template, then `Finisher`."""

    def __init__(self, c: Campaign) -> None:
        self.c = c
        self.finish = Finisher(c.providers, gsm_pt=c.gsm_pt, transliterate=c.transliterate)
        # per provider alias, what preparing a record needs: (channel, content, recipient column, is a phone)
        self._routes: dict[str, tuple[str, Content, str, bool]] = {
            alias: (ch, c.contents[ch], c.contents[ch].recipient or c.recipient, p.address_for(ch) == "phone")
            for alias, p in c.providers.items() for ch in (c.channels[alias],)
        }

    def prepare(self, records: list[Record]) -> Prepared:
        c = self.c
        out: dict[str, list[Message]] = {}
        bad: list[Result] = []
        sms: list[Message] = []
        recipient, id_col, region = c.recipient, c.id_column, c.region
        route, routes = c.route, self._routes
        for rec in records:
            f = rec.fields
            rid = str(f.get(id_col) or rec.seq) if id_col else str(rec.seq)
            try:
                alias = route(f)
            except KeyError as e:
                raw = f.get(recipient)
                bad.append(rejected(rec.seq, rid, "" if raw is None else str(raw), "no_route",
                                    str(e.args[0]) if e.args else "no route"))
                continue
            channel, content, column, phone = routes[alias]
            raw = f.get(column)
            raw = raw if type(raw) is str else ("" if raw is None else str(raw))
            if phone:
                to = to_e164(raw, region, content.mobile_only)
                if to is None:
                    bad.append(rejected(rec.seq, rid, raw, *number_problem(raw, region, content.mobile_only),
                                        alias, channel))
                    continue
            else:
                to = raw.strip()
                if "@" not in to or " " in to or to.startswith("@") or to.endswith("@"):
                    bad.append(rejected(rec.seq, rid, raw, "invalid_address", f"'{raw}' is not an email address",
                                        alias, channel))
                    continue
            try:
                text, slots = content.template.fill(f)
            except KeyError as e:  # a missing variable, or an empty one (EmptyVariable)
                bad.append(rejected(rec.seq, rid, to, *problem(e), alias, channel))
                continue
            m = Message(rec.seq, rid, to, text, f, slots, alias, channel, content=content)
            if channel == "sms":
                sms.append(m)
            g = out.get(alias)
            if g is None:
                g = out[alias] = []
            g.append(m)
        return self.finish(out, sms, bad)
