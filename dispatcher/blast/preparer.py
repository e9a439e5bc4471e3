"""A blast's records into messages: `CampaignPreparer` routes each row, normalises its recipient, renders
the template and hands the texts to the engine's `Encoder` (one codec call, each provider's check). What
the engine asks of every preparer (engine/prepare.py `Preparer`) besides: the digest a resume compares,
and a record's id and recipient for a result made without sending."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from .. import codecs
from ..address import normalize_email
from ..engine import Encoder, Prepared
from ..model import Batch, Chunk, Content, Message, Result, all_str, as_text, rejected
from ..phone import number_problem, to_e164_column
from ..phone import warm_up as warm_phones
from ..render import problem
from ..routing import Fixed
from .campaign import Campaign


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

    def digest(self) -> str:
        """What the campaign's messages are (templates, senders, options, recipients; providers and their
        channels): a resume with another message would pair old results with new records."""
        c = self.c
        message = orjson.dumps({
            "contents": {ch: [ct.template.source, ct.sender, ct.subject, ct.options, ct.recipient]
                         for ch, ct in sorted(c.contents.items())},
            "providers": {alias: [p.kind, c.channels[alias]] for alias, p in sorted(c.providers.items())},
        }, option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(message).hexdigest()[:16]

    def describe(self, seq: int, fields: dict[str, Any]) -> tuple[str, str]:
        """(id, recipient as written) of a record, for a result made without sending it."""
        c = self.c
        rid = str(fields.get(c.id_column) or seq) if c.id_column else str(seq)
        return rid, str(fields.get(c.recipient) or "")

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
            text = rows.text and c.id_column in rows.columns
            if not ("" not in rids if text else _all_text(rids)):  # an empty or missing id is the row's seq
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
        if not (rows.text and column in rows.columns) and not all_str(raws):
            raws = list(map(as_text, raws))
        mobile = content.mobile_only
        tos = to_e164_column(raws, c.region, mobile) if phone else [normalize_email(raw) for raw in raws]
        template = content.template
        text = rows.text and all(v in rows.columns for v in template.variables)  # a missing field is MISSING
        vals, problems = template.columns.slots(rows.column, n, text)
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
            seqs, rids, tos, *vals = ([col[i] for i in keep] for col in (seqs, rids, tos, *vals))
        else:
            keep = None
        m = len(seqs)
        provider = c.providers[alias]
        if provider.reads_fields(channel, content):
            fields = [rows.fields(i) for i in (range(n) if keep is None else keep)]
        else:
            fields = [_NO_FIELDS] * m
        if channel == "sms":
            enc, parts, translit = self.encoder.encode_slots(template, vals, m)
        else:
            enc, parts, translit = [""] * m, [0] * m, [False] * m
        batch = Batch(seqs, rids, tos, None, fields, None, enc, parts, translit, alias, channel, content, vals=vals)
        return self.encoder.screen(alias, batch, bad)


_NO_FIELDS: dict[str, Any] = {}  # shared by the messages of providers that read no field of their own


def _all_text(col: list[Any]) -> bool:
    """Every value a non-empty str."""
    return all_str(col) and "" not in col


