"""JSONL and CSV result files.

Each chunk is one write (`os.writev` of its blocks' lines) on an O_APPEND descriptor: once it
returns, the lines are the kernel's, so a SIGKILL loses nothing that was written. A resumed run
reads the `seq` of every line back (cheaply: `seq` is the first field) and cuts a torn last line.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..errors import SinkError
from ..model import RESULT_FIELDS, Results
from .base import Sink

# Rows in a block below which a row's JSON is one orjson call of its dict: the column path costs an orjson
# call a varying column and a kernel call whatever the rows (one-message requests: a writer's turn holds 1-60)
FEW_ROWS = 8
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))  # buffers one writev takes (-1, "no limit known": POSIX's least)


def _constant(col: list[object]) -> tuple[bytes | None, bytes]:
    """(the JSON every value of the column has, or None; the column's JSON array, b"" when constant). A
    column whose every value has the same JSON is written once; compared as JSON, so 1, 1.0 and True, or 0.0
    and -0.0, are never confused."""
    first = col[0]
    n = len(col)
    # such a value equals only values with its own JSON (a float with a fraction equals no int or bool, and
    # no other float but one of its own digits: a request's latency, repeated, is checked without a dumps)
    if first is None or type(first) is str or (type(first) is float and not first.is_integer()):
        last = col[-1]
        if (last is first or last == first) and col.count(first) == n:  # identity first: cheap for constants
            return orjson.dumps(first), b""
    body = orjson.dumps(col)
    one = orjson.dumps(first)
    if len(body) == n * (len(one) + 1) + 1 and body == b"[" + (one + b",") * (n - 1) + one + b"]":
        return one, b""
    return None, body


def json_lines(results: Results, few: int = FEW_ROWS) -> bytes:
    """Every result as one compact JSON object a line, keys in RESULT_FIELDS order: byte for byte what
    `orjson.dumps(Result, option=OPT_APPEND_NEWLINE)` gives, at a fraction of the cost (one orjson call a
    column, the lines put together by `jsoncols.rows`, instead of an object and an orjson call a row). A
    block of fewer than `few` rows is one orjson call a row's dict (the same bytes)."""
    return b"".join(json_blocks(results, few))


def json_blocks(results: Results, few: int = FEW_ROWS) -> list[bytes | memoryview]:
    """`json_lines` a block of results at a time (no join of columns, and a block's constant columns stay
    constant): the pieces a file takes in one gathering write, without a copy of them all into one."""
    return [_block_lines(b, few) for b in results.blocks() if len(b)]


def _block_lines(results: Results, few: int) -> bytes | memoryview:
    if len(results) < few:  # a few one-message requests' results: an orjson call a row costs less
        dumps, fields, newline = orjson.dumps, RESULT_FIELDS, orjson.OPT_APPEND_NEWLINE
        return b"".join([dumps(dict(zip(fields, row, strict=True)), option=newline) for row in results.rows()])
    pieces: list[bytes] = []
    varying: list[bytes] = []
    piece = b"{"
    for name, col in zip(RESULT_FIELDS, results.columns, strict=True):
        piece += (b'"' if piece == b"{" else b',"') + name.encode() + b'":'
        once, body = _constant(col)
        if once is not None:
            piece += once
        else:
            pieces.append(piece)
            varying.append(body)
            piece = b""
    pieces.append(piece + b"}\n")
    if not varying:
        return pieces[0] * len(results)
    from .. import jsoncols  # numba: only once a block is large enough to need it

    return jsoncols.rows(pieces, varying, len(results))


class _FileSink(Sink):
    shared = True  # each chunk one write on an O_APPEND descriptor: writers' chunks never interleave

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = str(path)
        self._fd = -1

    async def open(self, resume: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume:
                self._cut_torn_tail()
            elif self.path.exists() and self.path.stat().st_size:
                raise SinkError(f"{self.path}: already holds results of another run; "
                                f"resume that run with its --run-id, or choose another path")
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise SinkError(f"{self.path}: cannot open results file ({e.strerror or e})") from None
        if os.fstat(self._fd).st_size == 0:
            self._write(self.header())

    def header(self) -> bytes:
        return b""

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if not size:
                return
            back = min(size, 1 << 16)
            f.seek(size - back)
            tail = f.read(back)
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            f.truncate(size - back + cut + 1 if cut >= 0 else 0)

    def _write(self, *pieces: bytes | memoryview) -> None:
        """The pieces, in order, by one gathering write (a short write's rest by more)."""
        views = [memoryview(p) for p in pieces if p]
        while views:
            n = os.writev(self._fd, views[:_IOV_MAX])
            while views and n >= len(views[0]):
                n -= len(views.pop(0))
            if n:
                views[0] = views[0][n:]

    async def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _lines(self) -> Iterator[bytes]:
        if not self.path.exists():
            return
        with open(self.path, "rb", buffering=1 << 20) as f:
            yield from f


class JsonlSink(_FileSink):
    async def write(self, results: Results) -> None:
        self._write(*json_blocks(results))

    async def done(self) -> Iterator[int]:
        return self._done()

    async def failed(self) -> Iterator[int]:
        # `status` is a key, so it cannot appear unescaped inside a string value: a byte search is exact
        return (seq for seq, line in self._seqs() if b'"status":"failed"' in line)

    def _done(self) -> Iterator[int]:
        return (seq for seq, _ in self._seqs())

    def _seqs(self) -> Iterator[tuple[int, bytes]]:
        for line in self._lines():
            if line.startswith(b'{"seq":') and line.endswith(b"\n"):
                yield int(line[7:line.index(b",", 7)]), line


_TRANSLITERATED, _META = RESULT_FIELDS.index("transliterated"), RESULT_FIELDS.index("meta")


class CsvSink(_FileSink):
    """Flat CSV: `meta` as a JSON string."""

    def header(self) -> bytes:
        return (",".join(RESULT_FIELDS) + "\r\n").encode()

    async def write(self, results: Results) -> None:
        buf = io.StringIO()
        cols = list(results.columns)
        cols[_TRANSLITERATED] = [int(t) for t in cols[_TRANSLITERATED]]
        cols[_META] = [orjson.dumps(m).decode() if m else "" for m in cols[_META]]
        csv.writer(buf).writerows(zip(*cols, strict=True))
        self._write(buf.getvalue().encode())

    async def done(self) -> Iterator[int]:
        return self._done()

    async def failed(self) -> Iterator[int]:
        status = RESULT_FIELDS.index("status")
        return (int(row[0]) for row in csv.reader(line.decode("utf-8", "replace") for line in self._complete())
                if len(row) > status and row[0].isdigit() and row[status] == "failed")

    def _complete(self) -> Iterator[bytes]:
        lines = self._lines()
        next(lines, None)
        return (line for line in lines if line.endswith(b"\n"))

    def _done(self) -> Iterator[int]:
        for line in self._complete():
            head = line.split(b",", 1)[0]
            if head.isdigit():
                yield int(head)
