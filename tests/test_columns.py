"""The columnar hot path gives exactly what the row-at-a-time code it replaced gave.

Each fast piece is checked against the plain definition it must equal: result lines against
`orjson.dumps` of a `Result`, a template's column fill against its row fill, the CSV source's
block splitting against what the csv module reads line by line (at every block boundary, with
quotes, CRLF, blank and malformed lines), and the collector settings a run changes are put back.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import random
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher import jsoncols
from dispatcher.codecs.tables import TRANSLATE_TABLE
from dispatcher.model import MISSING, RESULT_FIELDS, Batch, Chunk, Content, Result, ResultRow, Results, column
from dispatcher.render import compile_template
from dispatcher.sinks.files import json_lines
from dispatcher.sources import files

text = st.text(max_size=8)
maybe_text = st.none() | text
result = st.builds(
    Result, st.integers(0, 2 ** 40), text, text, text, st.sampled_from(["sent", "failed", "rejected"]),
    maybe_text, st.none() | st.integers(0, 20), maybe_text, maybe_text, maybe_text, st.integers(0, 9),
    st.none() | st.floats(allow_nan=False, allow_infinity=False), maybe_text, maybe_text, st.booleans(),
    st.none() | st.dictionaries(text, st.integers(-2 ** 60, 2 ** 60) | text, max_size=2))


@settings(max_examples=400, deadline=None)
@given(st.lists(result, max_size=6), st.integers(1, 4))
def test_result_lines_are_orjson_of_each_result(rs: list[Result], copies: int) -> None:
    rs = rs * copies  # repeated rows make columns of one value, which are encoded once
    want = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rs)
    assert json_lines(Results.of(rs)) == want
    assert json_lines(Results.of(rs), few=0) == want  # the column path, whatever the rows
    assert Results.of(rs).results() == rs
    k = len(rs) // 3
    blocks = Results.concat([Results.of(rs[:k]), Results.concat([Results.of(rs[k:2 * k]), Results.of(rs[2 * k:])])])
    assert json_lines(blocks) == want  # written block by block
    assert json_lines(blocks, few=0) == want
    assert blocks.results() == rs and len(blocks) == len(rs)  # joined on reading


def test_a_result_row_has_the_fields_of_a_result_in_its_order() -> None:
    assert ResultRow._fields == RESULT_FIELDS
    row = ResultRow(seq=3, id="c3", to="+34600000003", provider="sms", status="sent", parts=2, attempts=1)
    assert Results.of_rows([row]).results() == [Result(3, "c3", "+34600000003", "sms", "sent", parts=2, attempts=1)]
    columns = {f: [v] for f, v in zip(RESULT_FIELDS, row, strict=True)}
    assert Results.of_columns(**columns).results() == Results.of_rows([row]).results()
    with pytest.raises(TypeError):
        Results.of_columns(**{f: [v] for f, v in list(columns.items())[:-1]})


json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, -0.0, 1.0, 2.5]) | st.text(",\"ab\\", max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=2), inner, max_size=2),
    max_leaves=4)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5).flatmap(lambda n: st.lists(st.lists(json_value, min_size=n, max_size=n),
                                                   min_size=len(RESULT_FIELDS), max_size=len(RESULT_FIELDS))),
       st.integers(1, 3))
def test_result_lines_of_any_values_are_orjson_of_each_row(columns: list[list[object]], copies: int) -> None:
    """Columns mixing 1, 1.0 and True, 0.0 and -0.0, strings with commas and quotes, lists of strings:
    each line is still what orjson gives that row."""
    columns = [c * copies for c in columns]
    want = b"".join(orjson.dumps(dict(zip(RESULT_FIELDS, row, strict=True)), option=orjson.OPT_APPEND_NEWLINE)
                    for row in zip(*columns, strict=True))
    assert json_lines(Results(columns)) == want
    assert json_lines(Results(columns), few=0) == want  # the column path, whatever the rows



def test_a_string_ending_in_a_quote_and_a_comma_keeps_its_row() -> None:
    """`a",` encodes as "a\\"," whose escaped quote, comma and closing quote read as the '","' between two
    strings: a result whose id (or error text) is such a string is still its own row, byte for byte
    (found by the property above: the column path split it into two and shifted every later row)."""
    ids = ['a",', "b", 'x\\",', "c"]
    columns = [[None] * 4 for _ in RESULT_FIELDS]
    columns[RESULT_FIELDS.index("id")] = ids
    want = b"".join(orjson.dumps(dict(zip(RESULT_FIELDS, row, strict=True)), option=orjson.OPT_APPEND_NEWLINE)
                    for row in zip(*columns, strict=True))
    assert json_lines(Results(columns), few=0) == want
    assert [orjson.loads(line)["id"] for line in want.splitlines()] == ids

TEMPLATES = ["Hola {name}, {amount|formatDotComma} EUR {name|upper}", "fixed text 100%", "{a|default:x}{b}",
             "{UNSUB_URL} {a|capitalize} {{lit}}", "{a} {a|lower} {b|default:}"]
value = st.one_of(st.text(max_size=5), st.none(), st.integers(-5000, 5000), st.just(MISSING), st.just("1234.5"))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(TEMPLATES), st.sampled_from([True, (), ("a",)]),
       st.lists(st.fixed_dictionaries({"name": value, "amount": value, "a": value, "b": value}), max_size=6))
def test_a_column_fill_is_the_row_fill_of_each_row(source: str, allow: object, rows: list[dict]) -> None:
    t = compile_template(source, allow_empty=allow)  # type: ignore[arg-type]
    dicts = [{k: v for k, v in r.items() if v is not MISSING} for r in rows]
    chunk = Chunk.of_dicts(list(range(len(rows))), dicts)
    texts, slots, problems = t.fill_columns(chunk.column, len(rows))
    for i, d in enumerate(dicts):
        try:
            want = t.fill(d)
        except KeyError as e:
            assert type(problems[i]) is type(e) and problems[i].args == e.args
            continue
        assert i not in problems
        assert (texts[i], slots[i]) == want


def _audience(rng: random.Random, n: int, crlf: bool | str, quotes: bool
              ) -> tuple[bytes, dict[int, list[str]], dict[int, str]]:
    """A CSV of id,phone,name with blank, short, long and empty-recipient lines among good rows; what a
    reader must find: good rows by the line they end on, and the code of each bad line. `crlf` "mixed":
    each line ends with CRLF or LF at random."""
    end = "\r\n" if crlf else "\n"
    out = io.StringIO()
    out.write("id,phone,name" + end)
    good: dict[int, list[str]] = {}
    bad: dict[int, str] = {}
    line = 1
    for i in range(n):
        if crlf == "mixed":
            end = rng.choice(["\r\n", "\n"])
        kind = rng.random()
        name = rng.choice(["ana", "bo b", "c-d", "é", ""])
        if kind < 0.05:
            out.write(end)
            line += 1
        elif kind < 0.1:
            out.write(f"x{i},+3460000{i:04d}{end}")
            line += 1
            bad[line] = "bad_row"
        elif kind < 0.13:
            out.write(f"x{i},,{name}{end}")
            line += 1
            bad[line] = "empty_recipient"
        elif quotes and kind < 0.2:
            out.write(f'x{i},+3460000{i:04d},"two{end}lines, {name}"{end}')
            line += 2
            good[line] = [f"x{i}", f"+3460000{i:04d}", f"two{end}lines, {name}"]
        else:
            out.write(f"x{i},+3460000{i:04d},{name}{end}")
            line += 1
            good[line] = [f"x{i}", f"+3460000{i:04d}", name]
    return out.getvalue().encode(), good, bad


@pytest.mark.parametrize("crlf", [False, True, "mixed"])
@pytest.mark.parametrize("quotes", [False, True])
@pytest.mark.parametrize("block", [64, 333, 1 << 20])
def test_csv_blocks_read_what_the_csv_module_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   crlf: bool | str, quotes: bool, block: int) -> None:
    monkeypatch.setattr(files, "BLOCK", block)
    data, good, bad = _audience(random.Random(block * 4 + (crlf is True) * 2 + quotes), 600, crlf, quotes)
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    # the expectation holds what the csv module itself makes of the file
    with open(path, newline="") as f:
        assert sum(1 for row in csv.reader(f) if len(row) == 3 and row[1]) == len(good) + 1

    async def read() -> tuple[dict[int, list[str]], dict[int, str]]:
        src = files.FileSource(path, recipient="phone", id_column="id", chunk_size=50)
        rows: dict[int, list[str]] = {}
        refused: dict[int, str] = {}
        async for chunk, rejected in src.chunks():
            assert len(chunk) <= 50
            for i, seq in enumerate(chunk.seq):
                rows[seq] = [chunk.columns[k][i] for k in ("id", "phone", "name")]
            refused.update({r.seq: r.code for r in rejected})
        return rows, refused

    rows, refused = asyncio.run(read())
    assert rows == good
    assert refused == bad


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_control_characters_are_found_in_utf8_bytes_as_in_text(tmp_path: Path, encoding: str) -> None:
    """C0, DEL and C1 controls in a field reject its row, whichever way a block is scanned (UTF-8 bytes,
    or the decoded text for other encodings); other characters sharing their lead byte (\xc2) do not."""
    names = {2: "ana\x7f", 3: "b\x85x", 4: "c\x9bx", 5: "©ana", 6: "n\xa0o", 7: "d\x01"}
    text = "id,phone,name\n" + "".join(f"c{n},+3460000{n:04d},{v}\n" for n, v in names.items())
    path = tmp_path / "a.csv"
    path.write_bytes(text.encode(encoding))

    async def read() -> tuple[list[int], dict[int, str]]:
        src = files.FileSource(path, recipient="phone", id_column="id", encoding=encoding)
        seqs: list[int] = []
        refused: dict[int, str] = {}
        async for chunk, rejected in src.chunks():
            seqs += chunk.seq
            refused.update({r.seq: r.code for r in rejected})
        return seqs, refused

    seqs, refused = asyncio.run(read())
    assert seqs == [5, 6] and refused == dict.fromkeys([2, 3, 4, 7], "bad_characters")


def test_a_resume_skips_rows_in_plain_blocks(tmp_path: Path) -> None:
    lines = ["id,phone,name"] + [f"c{i},+3460000{i:04d},n{i}" for i in range(1, 201)]
    path = tmp_path / "a.csv"
    path.write_text("\n".join(lines) + "\n")

    async def seqs() -> list[int]:
        src = files.FileSource(path, recipient="phone", id_column="id", chunk_size=64)
        return [s async for chunk, _ in src.chunks(lambda seq: seq % 3 == 0) for s in chunk.seq]

    assert asyncio.run(seqs()) == [n for n in range(2, 202) if n % 3]


def test_a_run_puts_the_collector_settings_back(tmp_path: Path) -> None:
    from enginekit import FakeProvider, FakeTransport, ListSource, MemorySink, engine

    before = gc.get_threshold()
    sink = MemorySink()
    t = FakeTransport(lambda seqs, n: ["SENT"] * len(seqs))
    asyncio.run(engine({"a": FakeProvider()}, {"a": t}, ListSource(40), sink, tmp_path).run())
    assert len(sink.results) == 40
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _batch(n: int) -> Batch:
    return Batch(list(range(1, n + 1)), [f"r{i}" for i in range(n)], [f"+3460000{i:04d}" for i in range(n)],
                 [f"text {i}" for i in range(n)], [{}] * n, [{"a": str(i)} for i in range(n)],
                 ["GSM-7", "UCS-2"] * (n // 2) + ["GSM-7"] * (n % 2), [1 + i % 3 for i in range(n)],
                 [i % 5 == 0 for i in range(n)], "sms", "sms", None)


def test_a_batch_is_its_messages_made_once_and_columns_until_then() -> None:
    b = _batch(7)
    assert b.fresh and b.head().to == b.to[0] and b.fresh  # reading the head makes no message
    assert column(b, "parts") is b.parts
    picked, cut = b.take([5, 0, 3]), b.cut(2, 6)
    joined = b.cut(0, 3) + b.cut(3, 7)
    assert joined.joins(b) and joined.seq == b.seq and joined.slots == b.slots
    msgs = b.messages()
    assert not b.fresh and b.messages() is msgs and list(b) == msgs and b[2] is msgs[2]
    assert [(m.seq, m.rid, m.to, m.text, m.slots, m.encoding, m.parts, m.transliterated) for m in msgs] == list(
        zip(b.seq, b.rid, b.to, b.text, b.slots, b.encoding, b.parts, b.transliterated, strict=True))
    assert [m.seq for m in picked] == [6, 1, 4] and [m.seq for m in cut] == [3, 4, 5, 6]
    msgs[0].attempts = 3  # from here the messages hold the state
    assert column(b, "attempts")[0] == 3 and not b.joins(joined) and not joined.joins(b)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3).flatmap(lambda k: st.tuples(st.lists(st.text(',"{}\\é', max_size=3), min_size=k, max_size=k, unique=True),
                                                     st.integers(1, 4).flatmap(lambda n: st.lists(
                                                         st.lists(text, min_size=n, max_size=n), min_size=k, max_size=k)))))
def test_objects_from_columns_are_orjson_of_their_dicts(keys_columns) -> None:
    keys, columns = keys_columns
    want = orjson.dumps([dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)])
    assert jsoncols.objects(keys, columns) == want


def test_a_batch_of_slot_values_is_the_batch_of_its_texts() -> None:
    """A campaign's batch holds its template's slot values, not texts and dicts: taken, cut, joined and read
    as messages it is row for row the batch the texts would have made (transliterated where marked)."""
    t = compile_template("Olá {name}, {amount|formatDotComma} EUR {name|upper}")
    content = Content("sms", t)
    n = 9
    names, amounts = [f"jo\u00e3o{i}" for i in range(n)], [str(1000 + i) for i in range(n)]
    vals, problems = t.columns.slots({"name": names, "amount": amounts}.__getitem__, n)
    texts, dicts, _ = t.fill_columns({"name": names, "amount": amounts}.__getitem__, n)
    translit = [i % 4 == 0 for i in range(n)]
    cols = (list(range(1, n + 1)), [f"r{i}" for i in range(n)], [f"+3460000{i:04d}" for i in range(n)])
    lazy = Batch(*cols, None, [{}] * n, None, ["UCS-2"] * n, [2] * n, translit, "sms", "sms", content, vals=vals)
    sent = [x.translate(TRANSLATE_TABLE) if tr else x for x, tr in zip(texts, translit, strict=True)]
    eager = Batch(*cols, sent, [{}] * n, dicts, ["UCS-2"] * n, [2] * n, translit, "sms", "sms", content)
    assert not problems and lazy.head().text == sent[0] and lazy.head().slots == dicts[0]
    assert not lazy.cut(0, 2).joins(eager.cut(2, 4))  # one kind of columns a batch
    pairs = [(lazy.take([7, 1, 4]), eager.take([7, 1, 4])), (lazy.cut(2, 6), eager.cut(2, 6)),
             (lazy.cut(0, 3) + lazy.cut(3, 9), eager.cut(0, 3) + eager.cut(3, 9)), (lazy, eager)]
    for a, b in pairs:
        assert a.vals is not None and a.text == b.text and a.slots == b.slots and a.seq == b.seq
        assert [(m.seq, m.text, m.slots, m.transliterated) for m in a.messages()] == \
            [(m.seq, m.text, m.slots, m.transliterated) for m in b.messages()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.text("ab,;\t é", max_size=3), min_size=1, max_size=4), min_size=1, max_size=8),
       st.sampled_from([",", ";", "\t"]), st.integers(1, 4))
def test_a_plain_block_splits_into_columns_only_when_every_line_has_the_width(
        rows: list[list[str]], d: str, width: int) -> None:
    """One join and split for a block; lines with one delimiter too many and one too few (the same total)
    are not taken for a block of rows."""
    lines = [d.join(r) for r in rows]
    got = files._split_plain(lines, d, width)
    fields = [line.split(d) for line in lines]
    if all(len(f) == width for f in fields):
        assert got == [[f[j] for f in fields] for j in range(width)]
    else:
        assert got is None


def test_one_message_requests_settle_as_rows_in_order_with_blocks() -> None:
    """The ledger's rows (one-message requests accepted) are the results a block of one would have been,
    counted at once, and handed to the writer before any block that settled after them."""
    from dispatcher.engine.ledger import Events, Ledger, Stats
    from dispatcher.state import RunState

    async def go() -> tuple[Stats, list[Result], list[Result]]:
        ledger = Ledger(Stats(), RunState(None, "rows"), Events())
        ledger.enter(4)
        one = Result(1, "c1", "+34600000001", "a", "sent", "m1", 2, "GSM-7", attempts=1, latency_ms=1.5,
                     trace_id="t", channel="sms")
        two = Result(2, "c2", "+34600000002", "a", "sent", "m2", None, None, attempts=1, channel="sms",
                     meta={"in_doubt": True})
        ledger.finish_sent(ResultRow(*one.__dict__.values()))
        ledger.finish_sent(ResultRow(*two.__dict__.values()))
        failed = Result(3, "c3", "+34600000003", "a", "failed", code="x", error="no", attempts=3)
        ledger.finish(Results.of([failed]))
        first = (await ledger.results()).results()
        ledger.finish_sent(ResultRow(*one.__dict__.values()))
        ledger.close_source()
        return ledger.stats, first, (await ledger.results()).results()

    stats, first, then = asyncio.run(go())
    assert [r.seq for r in first] == [1, 2, 3]
    assert first[0] == Result(1, "c1", "+34600000001", "a", "sent", "m1", 2, "GSM-7", attempts=1, latency_ms=1.5,
                              trace_id="t", channel="sms")
    assert first[1].meta == {"in_doubt": True} and first[2].status == "failed"
    assert [r.seq for r in then] == [1]
    assert (stats.sent, stats.failed, stats.parts) == (3, 1, 4)


def test_a_one_message_lane_gives_one_result_per_record(tmp_path: Path) -> None:
    """Batch size 1: accepted requests settle as rows, failed ones as blocks; every record once, each sent
    one with its own id and attempt count."""
    from enginekit import FakeProvider, FakeTransport, ListSource, MemorySink, engine

    sink = MemorySink()
    t = FakeTransport(lambda seqs, n: ["FAILED" if seqs[0] % 7 == 0 else "SENT"])
    st_ = asyncio.run(engine({"a": FakeProvider(batch=1, concurrency=3)}, {"a": t}, ListSource(100), sink,
                             tmp_path).run())
    assert sorted(r.seq for r in sink.results) == list(range(1, 101))
    sent = [r for r in sink.results if r.status == "sent"]
    assert all(r.message_id == f"id{r.seq}" and r.attempts == 1 and r.provider == "a" for r in sent)
    assert len(sent) == st_.sent == 100 - 14 and st_.failed == 14
