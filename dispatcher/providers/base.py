"""The shape every provider module has, so the engine never names a provider.

A provider module is one class that:
- says which channels it serves and how many recipients one request may carry;
- groups messages that can share a request (`batch_key`);
- builds the HTTP request for a batch (`build`);
- parses the response into one `Outcome` per message, in batch order (`parse`),
  classifying each error as retryable, final, or fatal for the whole provider;
- optionally authenticates (token exchange) before the first request and on REAUTH.

It knows requests and responses, not where records come from or where results go.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar

import aiohttp

from ..errors import ConfigError
from ..model import Content, Message, column
from .dlr import Report, items, recipient, text, when


class Verdict(IntEnum):
    SENT = 0  # accepted by the provider
    RETRY = 1  # transient (429, 5xx, timeouts): try again after a backoff
    FAILED = 2  # final for this recipient
    REJECTED = 3  # the provider refused this recipient's input as invalid: final
    HALT = 4  # the provider cannot go on this run (no credit, bad credentials): fail the rest
    REAUTH = 5  # credentials expired: authenticate again, then resend without counting an attempt


@dataclass(slots=True)
class Outcome:
    """What became of one message in one request. Treated as immutable (one may be shared by a
    whole batch), but not frozen: a frozen dataclass costs three times as much to build."""

    verdict: Verdict
    message_id: str | None = None
    code: str | None = None
    error: str | None = None
    retry_after: float | None = None
    trace_id: str | None = None
    extra: Mapping[str, Any] | None = None


@dataclass(slots=True)
class Accepted:
    """What `parse` may return instead of one Outcome per message when the provider accepted every message
    of the batch: their ids in batch order. The lane turns it into one block of `sent` results built from
    the batch's columns, with no object per message (the common answer of a batched provider)."""

    message_ids: list[str | None]
    trace_id: str | None = None


@dataclass(slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None


class ProviderError(Exception):
    """Raised by adapters with a message that is safe to show (no credentials, no URLs with keys)."""


def secret(alias: str, key: str, var: str | None) -> str:
    """Read a credential from the environment variable a setting names; never echo its value."""
    if not var:
        raise ConfigError(f"providers.{alias}.{key}: name the environment variable that holds the credential")
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"providers.{alias}.{key}: environment variable {var} is not set")
    return value


def contract(alias: str, defaults: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, str]:
    """A provider's wire names (paths, fields) with the user's `[providers.<alias>.api]` replacements.

    For contracts that are inferred, not documented: a user who has the real one fixes it in the
    config file. Only names the module uses can be replaced, so a typo is an error, not a no-op.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"providers.{alias}.api: must be a table of names")
    out = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            raise ConfigError(f"providers.{alias}.api.{key}: unknown name; known: {', '.join(sorted(defaults))}")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"providers.{alias}.api.{key}: must be a non-empty string, not {value!r}")
        if key.endswith("_path") and not value.startswith("/"):
            raise ConfigError(f"providers.{alias}.api.{key}: a path must start with '/', not {value!r}")
        out[key] = value
    return out


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@dataclass(slots=True)
class Settings:
    """Settings every provider has; a provider extends it with its own fields."""

    url: str = ""
    rate: float = 0.0  # requests per second the provider allows; 0 = the module's default
    concurrency: int = 0  # requests in flight at once; 0 = the module's default
    batch_size: int = 0  # recipients per request; 0 = the module's default
    max_attempts: int = 5
    timeout: float = 30.0  # seconds for one request
    backoff_base: float = 0.2
    backoff_max: float = 30.0
    price: float = 0.0  # per SMS part or per message, for --dry-run cost estimates
    failover: str = ""  # alias of a provider to use while this one's circuit is open
    circuit_failures: int = 5  # consecutive unanswered or 5xx requests that open the circuit
    circuit_cooldown: float = 2.0  # seconds the circuit stays open at first (doubling, at most 60)
    give_up_after: float = 600.0  # seconds of open circuit after which the rest fails as unreachable

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


class Provider:
    """Base class: subclasses set the class attributes and implement build/parse."""

    kind: ClassVar[str]  # the `type` in the config: "nrs360", "sendix", ...
    channels: ClassVar[frozenset[str]]  # channels served: "sms", "whatsapp", "email", "voice", ...
    address: ClassVar[str] = "phone"  # what a recipient is: "phone" or "email"
    default_rate: ClassVar[float]  # documented requests/s (or the simulator's default where none is)
    max_batch: ClassVar[int] = 1  # most recipients one request may carry
    default_concurrency: ClassVar[int] = 32  # requests in flight at once unless configured
    max_parts: ClassVar[int] = 0  # most SMS parts a message may have (0: no limit checked)
    max_chars: ClassVar[int] = 0  # most characters a body may have (0: no limit checked)
    settings_class: ClassVar[type[Settings]] = Settings

    def __init__(self, alias: str, settings: Settings) -> None:
        self.alias = alias
        self.settings = settings
        self.rate = settings.rate or self.default_rate
        self.batch_size = min(settings.batch_size or self.max_batch, self.max_batch)

    def address_for(self, channel: str) -> str:
        """What a recipient of `channel` is: "phone" or "email"."""
        return self.address

    def validate(self, channel: str, content: Content) -> Content:
        """The campaign's content for `channel` as this provider will send it (senders normalised,
        ids cast), or a ConfigError naming the setting (`message.sender: ...`), so that what the
        provider would refuse for every recipient stops the run at load, before anything is sent.
        Called by the config loader for every provider and the channel it carries; it must not need
        credentials (a dry run validates too). The default accepts everything."""
        return content

    # -- lifecycle -------------------------------------------------------------------
    async def authenticate(self, session: aiohttp.ClientSession) -> None:
        """Fetch a token where the provider needs one. Called before the first request and on REAUTH."""

    # -- batching --------------------------------------------------------------------
    def batch_key(self, m: Message) -> Hashable:
        """Messages with equal keys may share one request (up to `batch_limit(key)`)."""
        return m.seq if self.batch_size == 1 else (m.channel, m.encoding)

    def batch_keys(self, msgs: Sequence[Message]) -> list[Hashable]:
        """`batch_key` of each message of a chunk (a provider may decide once for a chunk's messages)."""
        return [self.batch_key(m) for m in msgs]

    def batch_limit(self, key: Hashable) -> int:
        """How many messages of one key a request carries (a provider's rules may differ by key)."""
        return self.batch_size

    def reads_fields(self, channel: str, content: Content) -> bool:
        """Whether building this channel's requests reads record fields by name (`Message.vars`) beyond the
        template's slots; when not, messages carry no copy of their row's fields."""
        return False

    def check_all(self, msgs: Sequence[Message]) -> dict[int, tuple[str, str]]:
        """`check` over a chunk: (code, reason) by index of each message that can never be accepted. The
        limits every provider has are checked over the columns; a provider with rules of its own says
        whether a chunk needs `check` message by message."""
        if not msgs:
            return {}
        if not self.checks_each(msgs):
            over = ((self.max_parts and max(column(msgs, "parts")) > self.max_parts)
                    or (self.max_chars and max(map(len, column(msgs, "text"))) > self.max_chars))
            if not over:
                return {}
        check = self.check
        return {i: why for i, m in enumerate(msgs) if (why := check(m)) is not None}

    def checks_each(self, msgs: Sequence[Message]) -> bool:
        """Whether `check` has rules beyond the part and character limits for these messages."""
        return type(self).check is not Provider.check

    def check(self, m: Message) -> tuple[str, str] | None:
        """(code, reason) when this message can never be accepted: it becomes `rejected`."""
        if self.max_parts and m.parts > self.max_parts:
            return "too_many_parts", f"{m.parts} SMS parts, the provider allows at most {self.max_parts}"
        if self.max_chars and len(m.text) > self.max_chars:
            return "too_long", f"{len(m.text)} characters, the provider allows at most {self.max_chars}"
        return None

    # -- one request -----------------------------------------------------------------
    def build(self, batch: Sequence[Message]) -> HttpRequest:
        raise NotImplementedError

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str],
              body: bytes) -> list[Outcome] | Accepted:
        """One Outcome per message of `batch`, in order; or `Accepted` when every message was accepted."""
        raise NotImplementedError

    # -- delivery reports ---------------------------------------------------------------
    # What the daemon's report endpoint asks: whether send answers carry ids (else reports are paired
    # by recipient), how requests ask for reports, and what a callback says.
    ids_in_answers: ClassVar[bool] = True

    def callback(self, url: str) -> bool:
        """Have this provider's requests ask for delivery reports at `url`, unless set by hand. False when
        the provider is told its callback URL in its own console instead (the daemon logs the URL to give)."""
        return False

    def parse_report(self, method: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes,
                     now: dt.datetime | None = None) -> list[Report]:
        """Normalised reports from one callback (its secret already checked and taken out of `query`);
        what cannot be read is kept as status `unknown`, never dropped."""
        now = now or dt.datetime.now(dt.UTC)
        try:
            found = items(method, query, headers, body)
        except ValueError:
            return [Report(self.alias, None, None, "unknown", None, now,
                           {"raw": body[:10000].decode("utf-8", "replace")})]
        out = []
        for it in found:
            try:
                out.append(self.report_item(it, now))
            except (TypeError, ValueError, KeyError):
                out.append(Report(self.alias, None, None, "unknown", None, now, it))
        return out or [Report(self.alias, None, None, "unknown", None, now,
                              {"raw": body[:10000].decode("utf-8", "replace"), "query": dict(query)})]

    def report_item(self, it: dict[str, Any], now: dt.datetime) -> Report:
        """One callback item; here the common names (message_id or id, status, recipient or to, timestamp)."""
        raw = str(it.get("status", ""))
        return Report(self.alias, text(it.get("message_id") or it.get("messageId") or it.get("id")),
                      recipient(it.get("recipient") or it.get("to")), raw.lower() or "unknown", raw or None,
                      when(it.get("timestamp") or it.get("time"), now), it)


EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


def email_address(setting: str, value: object, what: str = "an email address") -> str:
    """`value` as an address (surrounding blanks dropped), or a ConfigError naming `setting`: for the
    email senders and reply-to addresses every email provider checks at load."""
    text = value.strip() if isinstance(value, str) else ""
    if not EMAIL.fullmatch(text):
        raise ConfigError(f"{setting}: {value!r} is not {what}" if text else f"{setting}: required: {what}")
    return text


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds form), if any."""
    v = headers.get("Retry-After")
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None


def http_default(status: int, text: str, trace_id: str | None = None, headers: Mapping[str, str] | None = None) -> Outcome:
    """The classification of an HTTP status alone, for answers a provider module does not recognise."""
    code = str(status)
    if status == 429 or status >= 500 or status == 408:
        return Outcome(Verdict.RETRY, code=code, error=text, trace_id=trace_id,
                       retry_after=retry_after(headers) if headers else None)
    if status == 401:
        return Outcome(Verdict.HALT, code=code, error=text or "unauthorized", trace_id=trace_id)
    return Outcome(Verdict.FAILED, code=code, error=text, trace_id=trace_id)

