"""The one validator of outbox rows, for the claim path and the HTTP API alike: a row into the address,
provider alias and fields the engine sends, or the Problem that rejects it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg

from ...address import normalize_email
from ...errors import ConfigError
from ...model import REJECTED, Chunk, Content, Result
from ...phone import to_e164
from ...providers.base import Provider
from ...render import Template, TemplateError, compile_template
from ..config import CampaignSpec, DaemonConfig

log = logging.getLogger("dispatcher.daemon")
BODY = compile_template("{body}")  # the engine's template: each row brings its own text
PROVIDER_TEMPLATES = frozenset({"template", "template_id", "template_name"})  # options naming a stored template
OPTED_OUT = "the recipient opted out (suppression list); not sent"


class ClaimedRow(NamedTuple):
    """One row as the daemon sends it: what `RowValidator.check` made of it beside the row's own variables.
    `fields` are the record fields the engine's Chunk and the message carry, and nothing else: no key of
    the daemon's is written into them, so a variable named `body` (or `_to`) is the user's."""

    id: int  # the outbox id: the record's seq (0 for a message the HTTP API has not stored yet)
    to: str  # the normalised address
    alias: str  # the provider that sends it
    content: Content  # the campaign's content as that provider sends it
    text: str  # the rendered body
    priority: int
    group: str  # the campaign a pause or cancel takes back ('' for the [defaults]; Message.group)
    fields: dict[str, Any]  # the row's variables


class ClaimedRows(NamedTuple):
    """Claimed rows as two columns, one entry a row: their outbox ids (the records' seqs) and their ClaimedRow."""

    ids: list[int]
    rows: list[ClaimedRow]

    def extend(self, other: ClaimedRows) -> None:
        self.ids.extend(other.ids)
        self.rows.extend(other.rows)


@dataclass(slots=True)
class ClaimedChunk(Chunk):
    """A chunk of claimed rows: their variables as the engine's columns (the record fields, as any
    source's), and beside them the ClaimedRows the daemon's preparer builds messages from."""

    claimed: list[ClaimedRow]

    @classmethod
    def of(cls, rows: ClaimedRows) -> ClaimedChunk:
        ids, claimed = rows.ids, rows.rows
        records = Chunk.of_dicts(ids, [r.fields for r in claimed])
        return cls(records.seq, records.columns, claimed)

    def take(self, keep: list[int]) -> ClaimedChunk:
        records = Chunk.take(self, keep)
        claimed = self.claimed
        return ClaimedChunk(records.seq, records.columns, [claimed[i] for i in keep])


class RowValidator:
    """Claimed rows into engine records: campaign, route, address, text, content; or a rejected result."""

    def __init__(self, cfg: DaemonConfig, providers: Mapping[str, Provider] | None = None) -> None:
        self.cfg = cfg
        self._templates: dict[str, Template | TemplateError] = {}
        self._contents: dict[tuple[str, str], Content | ConfigError] = {}
        self._engine_providers = providers if providers is not None else {}  # the engine's, once built
        self._providers: dict[str, Provider] = {}  # built here only where the engine's are not at hand

    def content(self, c: CampaignSpec, channel: str, alias: str) -> Content:
        """The campaign's content as `alias` will send it, checked by that provider once (sender rules,
        template ids...): a campaign the provider would refuse for every row raises ConfigError, so its
        rows are rejected before anything is sent."""
        key = (c.name, alias)
        content = self._contents.get(key)
        if content is None:
            provider = self._engine_providers.get(alias) or self._providers.get(alias)
            if provider is None:
                provider = self._providers[alias] = self.cfg.providers[alias].build()
            try:
                content = provider.validate(channel, Content(channel, BODY, c.sender, c.subject, dict(c.options)))
            except ConfigError as e:
                content = e
            self._contents[key] = content
        if isinstance(content, ConfigError):
            raise content
        return content

    def template(self, source: str) -> Template:
        t = self._templates.get(source)
        if t is None:
            if len(self._templates) >= 1024:
                self._templates.clear()
            try:
                t = compile_template(source)
            except TemplateError as e:
                t = e
            self._templates[source] = t
        if isinstance(t, TemplateError):
            raise t
        return t

    def check(self, raw: str, channel: str, alias: str | None, route: str | None, campaign: str | None,
              body: str | None, template: str | None, variables: Any, oid: int = 0, priority: int = 0
              ) -> ClaimedRow | Problem:
        """The row as it will be sent (address, provider alias, content, rendered body), or the Problem that
        rejects it.

        The one validator of outbox rows: the claim path (`build`) rejects with it what applications wrote
        in SQL, and the HTTP API refuses with it before storing, so both routes accept exactly the same rows.
        """
        cfg = self.cfg
        c = cfg.campaigns.get(campaign) if campaign else cfg.defaults
        if c is None:
            return Problem("unknown_campaign", "campaign", f"no campaign '{campaign}' in the daemon's configuration",
                           raw)
        region = cfg.region
        to = normalize_email(raw) if channel == "email" else to_e164(raw, region)
        if to is None:
            return Problem("invalid_address" if channel == "email" else "invalid_number", "to",
                           f"'{raw}' is not {'an email address' if channel == 'email' else 'a valid phone number'}"
                           + (f" (default region {region})" if region and channel != "email" else ""), raw)
        alias = alias or c.provider
        if alias is None:
            name = route or c.route or channel
            r = cfg.routes.get(name)
            alias = r.pick(to) if r is not None else None
            if alias is None:
                return Problem("no_route", "route" if route else "channel", f"no provider for route '{name}'", to)
        spec = cfg.providers.get(alias)
        if spec is None:
            return Problem("no_route", "provider", f"no provider named '{alias}'", to)
        if spec.channel != channel:
            return Problem("channel_mismatch", "channel", f"provider '{alias}' carries {spec.channel}, not {channel}",
                           to, alias)
        fields = dict(variables) if type(variables) is dict else {}
        if body is None:
            try:
                t = self.template(template) if template is not None else c.template
            except TemplateError as e:
                return Problem("bad_template", "template", str(e), to, alias)
            if t is not None:
                try:
                    body = t.render(fields)
                except KeyError as e:
                    return Problem("missing_variable", "variables",
                                   f"template variable '{e.args[0]}' has no value in this row", to, alias)
            elif channel == "whatsapp" or not PROVIDER_TEMPLATES.isdisjoint(c.options):
                body = ""  # the provider's stored template, filled from the row's variables
            else:
                return Problem("no_body", "body", "the row has no body or template, and its campaign no template",
                               to, alias)
        try:
            content = self.content(c, channel, alias)
        except ConfigError as e:
            where = f"campaign '{c.name}'" if c.name else "the [defaults]"
            return Problem("bad_campaign", "campaign", f"{where} cannot go through {alias}: {e}", to, alias)
        return ClaimedRow(oid, to, alias, content, body, priority, campaign or "", fields)

    def build(self, rows: list[asyncpg.Record]) -> tuple[ClaimedRows, list[Result], ClaimedRows]:
        """Rows to send (their outbox ids and ClaimedRows), rejected results, and the rows whose suppression
        is still to be looked up (stored in another form than their normalised address)."""
        send = ClaimedRows([], [])
        bad: list[Result] = []
        unsure = ClaimedRows([], [])
        check = self.check
        for row in rows:  # the claim's RETURNING columns, read by name (queries.sql `claim`)
            oid, raw, channel = row["id"], row["recipient"] or "", row["channel"]
            got = check(raw, channel, row["provider"], row["route"], row["campaign"], row["body"], row["template"],
                        row["variables"], oid, row["priority"] or 0)
            if isinstance(got, Problem):
                bad.append(rejected_row(oid, got.to, channel, got.code, got.message, got.alias))
            elif got.to != raw:
                unsure.ids.append(oid)
                unsure.rows.append(got)
            elif row["opted_out"]:
                bad.append(rejected_row(oid, got.to, channel, "suppressed", OPTED_OUT, got.alias))
            else:
                send.ids.append(oid)
                send.rows.append(got)
        return send, bad, unsure


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a row cannot be sent: its result code, the field at fault (the API's name for it), and the text."""

    code: str
    field: str
    message: str
    to: str = ""  # the address as far as it was understood (the rejected result's recipient)
    alias: str = ""


def rejected_row(oid: int, to: str, channel: str, code: str, error: str, provider: str = "") -> Result:
    return Result(oid, str(oid), to, provider, REJECTED, code=code, error=error, channel=channel)
