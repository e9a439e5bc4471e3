"""What flows through the engine, source -> prepare -> lanes -> sinks.

Input comes as a `Chunk`: one list per field, so normalising, rendering and encoding run a
column at a time. The rows that can be sent leave prepare as a `Batch` (columns again), which
lanes group, slice and send; a `Message` per row (the per-record state: attempts, unanswered
attempts) is made only when a row needs state of its own: a retry, a failure, a flag, or a
provider that builds one message at a time. Outcomes leave as `Results`, one list per result
field: a request whose recipients were all accepted is one block built from its batch's columns,
and sinks write whole columns. A `Result` object exists only for the rare per-record outcome (a
failure, a rejected row) and for readers that want one.
"""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar

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
    text: ClassVar[bool] = False  # every value a str (a CSV's chunk, `TextChunk`): no column needs checking

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
        return Chunk(_pick(self.seq, keep), {k: _pick(c, keep) for k, c in self.columns.items()})

    @classmethod
    def of_dicts(cls, seqs: list[int], dicts: list[dict[str, Any]]) -> Chunk:
        """A chunk from one dict per row (JSON lines, outbox rows), their keys not always the same."""
        names: dict[str, None] = {}
        for d in dicts:
            if len(d) != len(names) or d.keys() != names.keys():
                names.update(dict.fromkeys(d))
        return cls(seqs, {k: [d.get(k, MISSING) for d in dicts] for k in names})


class TextChunk(Chunk):
    """A chunk whose every value is a str (a CSV file's: no MISSING, no None, no number), so the preparer
    and the template take its columns as text without a pass over each to check it."""

    text: ClassVar[bool] = True


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def all_str(col: list[Any]) -> bool:
    """Every value of a column a str: the join raises on anything else (a C loop, not a Python one)."""
    try:
        "".join(col)
    except TypeError:
        return False
    return True


def as_text(v: object) -> str:
    """A field's value as the text a template or an address reads: None and MISSING as ""."""
    return v if type(v) is str else "" if v is None or v is MISSING else str(v)


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
    reauths: int = 0  # answers asking to authenticate again (after two, the message fails)
    failover_from: str | None = None  # the alias it was first routed to, when failed over
    in_doubt: bool = False  # in flight when an earlier attempt of this run died
    priority: int = 0  # above 0: sent ahead of every message of lower priority not yet on the wire
    group: str = ""  # the daemon's fair-share key (the campaign name; "" for none)
    weight: int = 1  # the group's share of the lane, against the other groups waiting


_ROW_FIELDS = ("seq", "rid", "to", "text", "vars", "slots", "encoding", "parts", "transliterated")
_KEPT = ("seq", "rid", "to", "vars", "encoding", "parts", "transliterated")  # stored as columns either way


class Batch(Sequence[Message]):
    """Messages of one provider alias, channel and content as columns: what a preparer hands the lanes,
    and what a lane groups and sends as one request while all of them share one state (sent `attempts`
    times, every attempt answered, nothing of their own). Then a request costs no object a message: the
    provider builds from the columns and an accepted answer becomes one block of results.

    A campaign's batch keeps its template's slot values (`vals`, one column a slot, `Template.slots`
    order) instead of each row's text and slot dict: those are made from them the first time something
    reads `text` or `slots` (a provider that sends texts, a check of lengths, a `Message`), so a provider
    that substitutes the values itself never has a text or a dict a row made.

    It is a sequence of `Message`s for everything else: reading a message (a retry, a failure, a flag,
    a provider that builds a message at a time) makes one `Message` a row, once (`messages`), and from
    then on those are the truth for the per-message state (attempts, ambiguous, reauths, in_doubt, failover_from). The columns
    keep what never changes once prepared (seq, rid, to, text, vars, slots, encoding, parts, transliterated).
    """

    __slots__ = (*_KEPT, "_text", "_slots", "vals", "route", "channel", "content", "attempts", "_msgs")

    def __init__(self, seq: list[int], rid: list[str], to: list[str], text: list[str] | None,
                 vars: list[dict[str, Any]], slots: list[dict[str, str] | None] | None, encoding: list[str],
                 parts: list[int], transliterated: list[bool], route: str, channel: str, content: Content | None,
                 attempts: int = 0, vals: list[list[str]] | None = None) -> None:
        """Either `text` and `slots`, or `vals` (with a `content` whose template made them)."""
        self.seq, self.rid, self.to, self._text, self.vars, self._slots = seq, rid, to, text, vars, slots
        self.encoding, self.parts, self.transliterated, self.vals = encoding, parts, transliterated, vals
        self.route, self.channel, self.content, self.attempts = route, channel, content, attempts
        self._msgs: list[Message] | None = None

    @property
    def text(self) -> list[str]:
        """Each row's text as sent (transliterated where the codec chose to)."""
        if self._text is None:
            assert self.content is not None and self.vals is not None
            self._text = self.content.template.texts(self.vals, len(self.seq), self.transliterated)
        return self._text

    @property
    def slots(self) -> list[dict[str, str] | None]:
        """Each row's slot values by slot key."""
        if self._slots is None:
            assert self.content is not None and self.vals is not None
            self._slots = self.content.template.columns.dicts(self.vals, len(self.seq))  # type: ignore[assignment]
        return self._slots  # type: ignore[return-value]

    @property
    def fresh(self) -> bool:
        """No `Message` made yet: the columns and `attempts` are the whole state."""
        return self._msgs is None

    def messages(self) -> list[Message]:
        """One `Message` a row (made on the first call; the same objects after)."""
        if self._msgs is None:
            r, ch, c, a = self.route, self.channel, self.content, self.attempts
            self._msgs = [Message(s, i, to, t, v, sl, r, ch, e, p, tr, a, 0, c) for s, i, to, t, v, sl, e, p, tr
                          in zip(*(getattr(self, f) for f in _ROW_FIELDS), strict=True)]
        return self._msgs

    def head(self) -> Message:
        """Row 0 as a `Message`, to read what a batch's messages share (channel, content, encoding of a
        batch key) without making the others; not to be changed."""
        if self._msgs is not None:
            return self._msgs[0]
        one = self if self.vals is None or self._text is not None else self.cut(0, 1)
        return Message(route=self.route, channel=self.channel, attempts=self.attempts, content=self.content,
                       **{f: getattr(one, f)[0] for f in _ROW_FIELDS})

    def __len__(self) -> int:
        return len(self.seq)

    def __getitem__(self, i):  # type: ignore[no-untyped-def,override]
        return self.messages()[i]

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages())

    def _stored(self) -> list[list[Any]]:
        """The row columns this batch holds: _KEPT's, then its slot values or its texts and slot dicts."""
        kept = [self.seq, self.rid, self.to, self.vars, self.encoding, self.parts, self.transliterated]
        return kept + (self.vals if self.vals is not None else [self._text, self._slots])  # type: ignore[list-item]

    def take(self, keep: Sequence[int]) -> Batch:
        """A fresh batch of the rows at `keep` (only of a fresh batch: its columns are its state). A column of
        one value (the fields of a provider that reads none, `transliterated` without transliteration) is
        repeated, not looked up a row: a batch's columns each hold one type, so equal values are alike."""
        assert self._msgs is None
        k = len(keep)
        if k < 2:
            return self._like(_pick(col, keep) for col in self._stored())
        pick = itemgetter(*keep)  # one getter for every column
        return self._like([col[0]] * k if col[0] is col[-1] and col.count(col[0]) == len(col) else list(pick(col))
                          for col in self._stored())

    def cut(self, start: int, stop: int) -> Batch:
        """Rows start..stop of a fresh batch, as a fresh batch."""
        assert self._msgs is None
        return self._like(col[start:stop] for col in self._stored())

    def joins(self, other: Batch) -> bool:
        """Whether `other` can be appended as one batch (both fresh, one route, channel, content, state)."""
        return (self._msgs is None and other._msgs is None and other.content is self.content
                and other.channel == self.channel and other.route == self.route and other.attempts == self.attempts
                and (self.vals is None) == (other.vals is None))

    def __add__(self, other: Batch) -> Batch:
        assert self.joins(other)
        return self._like(a + b for a, b in zip(self._stored(), other._stored(), strict=True))

    def _like(self, columns: Iterable[list[Any]]) -> Batch:
        """A batch of this one's route, channel, content and state, with these row columns (`_stored`'s)."""
        seq, rid, to, vars, enc, parts, tr, *rest = columns
        text, slots, vals = (None, None, rest) if self.vals is not None else (rest[0], rest[1], None)
        return Batch(seq, rid, to, text, vars, slots, enc, parts, tr, self.route, self.channel, self.content,
                     self.attempts, vals)


def _pick(col: list[Any], keep: Sequence[int]) -> list[Any]:
    """col[i] for each i of keep, in one C call (an itemgetter) for more than one."""
    if len(keep) > 1:
        return list(itemgetter(*keep)(col))
    return [col[i] for i in keep]


def column(msgs: Sequence[Message], name: str) -> list[Any]:
    """One unchanging field (seq, to, parts...) of every message: a batch's own column, else each message's."""
    return getattr(msgs, name) if type(msgs) is Batch and msgs.fresh else [getattr(m, name) for m in msgs]


def head(msgs: Sequence[Message]) -> Message:
    """The first message, to read what messages batched together share (without making a fresh batch's)."""
    return msgs.head() if type(msgs) is Batch else msgs[0]


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


# One result as a row in RESULT_FIELDS order, built by keyword: what a one-message request's accepted answer
# becomes (a tuple the ledger gathers with the turn's others, no `Result` object). Made from `Result`'s own
# fields and defaults, so the two cannot drift apart.
ResultRow = namedtuple("ResultRow", RESULT_FIELDS,
                       defaults=[f.default for f in dataclasses.fields(Result) if f.default is not dataclasses.MISSING])


class Results:
    """Terminal results as columns, one list per field of `Result`, in its order: what the ledger counts
    and the sinks write in bulk. A request whose recipients were all accepted becomes one `Results` built
    from its batch's columns (no `Result` per record); the rare per-record outcomes (failures, rejects)
    come as `Result`s and are turned into columns once (`of`)."""

    __slots__ = ("_blocks", "_columns", "_n", "_rows")

    def __init__(self, columns: list[list[Any]]) -> None:
        self._columns: list[list[Any]] | None = columns  # in RESULT_FIELDS order, all of one length
        self._blocks: list[Results] | None = None
        self._rows: list[tuple] | None = None
        self._n = len(columns[0])

    @property
    def columns(self) -> list[list[Any]]:
        """The columns (of a concatenation: joined on the first read; of rows: turned on the first read)."""
        if self._columns is None:
            if self._rows is not None:
                self._columns = [list(c) for c in zip(*self._rows, strict=True)]
            else:
                assert self._blocks is not None
                self._columns = [list(chain.from_iterable(cols))
                                 for cols in zip(*[b.columns for b in self._blocks], strict=True)]
        return self._columns

    def rows(self) -> Iterable[tuple]:
        """One tuple a result in RESULT_FIELDS order (a block made of rows gives them as they are)."""
        return self._rows if self._rows is not None else zip(*self.columns, strict=True)

    def blocks(self) -> list[Results]:
        """The results as the blocks they were made in (a sink that writes block by block needs no join)."""
        return self._blocks if self._blocks is not None else [self]

    @classmethod
    def of(cls, results: list[Result]) -> Results:
        return cls.of_rows([tuple(r.__dict__.values()) for r in results])

    @classmethod
    def of_columns(cls, **columns: list[Any]) -> Results:
        """Columns by field name, every field of RESULT_FIELDS (a request's block, built by keyword)."""
        if columns.keys() != _FIELD.keys():
            raise TypeError(f"results need the columns {', '.join(RESULT_FIELDS)}, got {', '.join(columns)}")
        return cls([columns[f] for f in RESULT_FIELDS])

    @classmethod
    def of_rows(cls, rows: list[tuple]) -> Results:
        """Rows in RESULT_FIELDS order (the ledger's single results), kept as rows: turned into columns only
        when a reader asks for them (a sink of a few one-message results writes them row by row)."""
        if not rows:
            return EMPTY
        r = cls.__new__(cls)
        r._columns, r._blocks, r._rows, r._n = None, None, rows, len(rows)
        return r

    @classmethod
    def concat(cls, parts: list[Results]) -> Results:
        """The parts as one, kept as blocks: their columns are joined only if a reader asks for them."""
        blocks = [b for p in parts if len(p) for b in p.blocks()]
        if len(blocks) <= 1:
            return blocks[0] if blocks else EMPTY
        r = cls.__new__(cls)
        r._columns, r._blocks, r._rows, r._n = None, blocks, None, sum(map(len, blocks))
        return r

    def __len__(self) -> int:
        return self._n

    def column(self, name: str) -> list[Any]:
        return self.columns[_FIELD[name]]

    def results(self) -> list[Result]:
        """One `Result` per row: for tests and the rare reader that wants objects."""
        return [Result(*row) for row in self.rows()]


_FIELD = {name: i for i, name in enumerate(RESULT_FIELDS)}
EMPTY = Results([[] for _ in RESULT_FIELDS])


def rejected(seq: int, rid: str, to: str, code: str, error: str, provider: str = "", channel: str | None = None) -> Result:
    return Result(seq, rid, to, provider, REJECTED, code=code, error=error, channel=channel)
