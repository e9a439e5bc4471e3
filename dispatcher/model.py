"""What flows through the engine, source -> prepare -> lanes -> sinks.

Input comes as a `Chunk`: one list per field, so normalising, rendering and encoding run a
column at a time. Each row that can be sent becomes one `Message`, the unit a lane batches,
paces and retries (it carries the per-record state: attempts, unanswered attempts). Outcomes
leave as `Results`, one list per result field: a request whose recipients were all accepted is
one block built from its batch, and sinks write whole columns. A `Result` object exists only
for the rare per-record outcome (a failure, a rejected row) and for readers that want one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any

SENT = "sent"
FAILED = "failed"
REJECTED = "rejected"
TERMINAL = (SENT, FAILED, REJECTED)


@dataclass(slots=True)
class Chunk:
    """One chunk of input rows as columns: `seq` (the resume key of each row) and one list of values per
    field, all of one length. A field a row does not have (a JSON line without that key) holds MISSING,
    which a template reads as a missing variable, unlike None (an empty value)."""

    seq: list[int]
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.seq)

    def column(self, name: str) -> list[Any]:
        """The values of `name`, MISSING where a row lacks it."""
        col = self.columns.get(name)
        return [MISSING] * len(self.seq) if col is None else col

    def fields(self, i: int) -> dict[str, Any]:
        """Row `i` as a dict (its missing fields left out): for the slow paths that need one."""
        return {k: c[i] for k, c in self.columns.items() if c[i] is not MISSING}

    def take(self, keep: list[int]) -> Chunk:
        """The rows at the indexes `keep`, in that order."""
        return Chunk([self.seq[i] for i in keep], {k: [c[i] for i in keep] for k, c in self.columns.items()})

    @classmethod
    def of_dicts(cls, seqs: list[int], dicts: list[dict[str, Any]]) -> Chunk:
        """A chunk from one dict per row (JSON lines, outbox rows), their keys not always the same."""
        names: dict[str, None] = {}
        for d in dicts:
            if len(d) != len(names) or d.keys() != names.keys():
                names.update(dict.fromkeys(d))
        return cls(seqs, {k: [d.get(k, MISSING) for d in dicts] for k in names})


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def as_text(v: object) -> str:
    """A field's value as the text a template or an address reads: None and MISSING as ""."""
    return v if type(v) is str else "" if v is None or v is MISSING else str(v)


@dataclass(slots=True)
class Record:
    """One input row: where it came from and its raw fields."""

    seq: int  # resume key: line number in a file, id in a database
    fields: dict[str, Any]


@dataclass(slots=True)
class Message:
    """A record rendered for one provider: what the provider module builds requests from."""

    seq: int
    rid: str
    to: str  # E.164 with "+" for phones, the address for email
    text: str
    vars: dict[str, Any]  # the record's fields
    slots: dict[str, str] | None = None  # the template's filtered values, for providers that substitute
    route: str = ""
    channel: str = "sms"
    encoding: str = ""
    parts: int = 0
    transliterated: bool = False
    attempts: int = 0
    ambiguous: int = 0  # attempts that may have reached the provider without an answer
    content: Any = None  # the campaign's Content (template, sender, subject...), shared by its messages
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class Content:
    """What a campaign says to every recipient of one channel; shared, never copied per message."""

    channel: str
    template: Any  # render.Template
    sender: str = ""
    subject: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # provider-specific (template ids, route type...)
    recipient: str = ""  # the column holding this channel's recipient, when not the source's
    mobile_only: bool = False  # phone recipients must be mobile numbers (SMS, WhatsApp unless allow_landlines)


@dataclass
class Result:
    """The one terminal outcome of one record. `seq` comes first so resume can scan it cheaply.

    Not slotted on purpose: orjson serialises a dataclass through its `__dict__` several
    times faster than through slots (1.3 us against 4 us a result, measured).
    """

    seq: int
    id: str
    to: str
    provider: str
    status: str
    message_id: str | None = None
    parts: int | None = None
    encoding: str | None = None
    code: str | None = None
    error: str | None = None
    attempts: int = 0
    latency_ms: float | None = None
    trace_id: str | None = None
    channel: str | None = None
    transliterated: bool = False
    meta: dict[str, Any] | None = field(default=None)


RESULT_FIELDS = tuple(Result.__dataclass_fields__)


class Results:
    """Terminal results as columns, one list per field of `Result`, in its order: what the ledger counts
    and the sinks write in bulk. A request whose recipients were all accepted becomes one `Results` built
    from its batch's columns (no `Result` per record); the rare per-record outcomes (failures, rejects)
    come as `Result`s and are turned into columns once (`of`)."""

    __slots__ = ("columns",)

    def __init__(self, columns: list[list[Any]]) -> None:
        self.columns = columns  # in RESULT_FIELDS order, all of one length

    @classmethod
    def of(cls, results: list[Result]) -> Results:
        if not results:
            return EMPTY
        return cls([list(c) for c in zip(*[list(r.__dict__.values()) for r in results], strict=True)])

    @classmethod
    def of_rows(cls, rows: list[tuple]) -> Results:
        """Rows in RESULT_FIELDS order (the ledger's single results) as columns."""
        return cls([list(c) for c in zip(*rows, strict=True)]) if rows else EMPTY

    @classmethod
    def concat(cls, parts: list[Results]) -> Results:
        parts = [p for p in parts if len(p)]
        if len(parts) <= 1:
            return parts[0] if parts else EMPTY
        return cls([list(chain.from_iterable(cols)) for cols in zip(*[p.columns for p in parts], strict=True)])

    def __len__(self) -> int:
        return len(self.columns[0])

    def column(self, name: str) -> list[Any]:
        return self.columns[_FIELD[name]]

    def results(self) -> list[Result]:
        """One `Result` per row: for tests and the rare reader that wants objects."""
        return [Result(*row) for row in zip(*self.columns, strict=True)]


_FIELD = {name: i for i, name in enumerate(RESULT_FIELDS)}
EMPTY = Results([[] for _ in RESULT_FIELDS])


def rejected(seq: int, rid: str, to: str, code: str, error: str, provider: str = "", channel: str | None = None) -> Result:
    return Result(seq, rid, to, provider, REJECTED, code=code, error=error, channel=channel)
