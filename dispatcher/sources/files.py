"""CSV and JSONL files, streamed: read line by line, never whole.

A row that cannot be read (bad UTF-8, wrong number of fields, broken JSON) becomes a
rejected result naming its line, and its id when the id column can be read; the rest of
the file goes on. Hostile files too: a control character (NUL, ESC...) in a field rejects
the record (`bad_characters`: it would be sent, and a NUL turns an SMS into UCS-2), a field
longer than FIELD_LIMIT rejects it (`field_too_large`), and a line longer than LINE_LIMIT
is skipped in constant memory and rejected; tabs and newlines inside quoted fields are data.
The checks cost nothing on clean input: a block of the file is searched once, and only rows
on the lines it flags are looked at field by field.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import SourceError
from ..model import Chunk, Result, TextChunk, rejected
from .base import CHUNK_SIZE, Part, Source

FIELD_LIMIT = 1 << 20  # characters in one field (a MiB of text is already no message)
LINE_LIMIT = 16 << 20  # bytes in one line: a longer one is skipped, not held in memory
BLOCK = 1 << 16  # bytes decoded at once: 64 KiB keeps a run's peak 4 MB below 256 KiB (and 26 MB below 1 MiB), at the same speed
csv.field_size_limit(max(csv.field_size_limit(), LINE_LIMIT))  # fields are judged here, by FIELD_LIMIT
# C0 controls but tab, line feed and carriage return; DEL; C1 controls
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# the same characters in UTF-8 bytes: C0 and DEL are single bytes (never inside a multi-byte sequence),
# C1 is \xc2 followed by \x80-\x9f
_C0_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")
_ESCAPED_CONTROL = re.compile(rb"\\u00(?:[01][0-9a-fA-F]|7[fF]|[89][0-9a-fA-F])")  # in JSON text


def field_problem(fields: dict, limit: int = FIELD_LIMIT) -> tuple[str, str] | None:
    """(code, reason) when a field holds a control character or is too long, naming the field."""
    for name, value in fields.items():
        if type(value) is not str:
            continue
        if len(value) > limit:
            return "field_too_large", f"field '{name}' holds {len(value)} characters, more than {limit}"
        m = CONTROL.search(value)
        if m is not None:
            return "bad_characters", (f"field '{name}' holds the control character U+{ord(m.group()):04X} "
                                      f"at position {m.start() + 1}")
    return None


def _split_plain(lines: list[str], d: str, width: int) -> list[list[str]] | None:
    """The columns of lines that each hold `width` fields, or None when one does not: one join and one
    split for the block. Lines are joined with a NUL field between them (a clean block holds no control
    character, so the only NULs are those): every line has `width` fields exactly when the NULs fall
    every `width + 1` fields."""
    flat = (d + "\x00" + d).join(lines).split(d)
    n = len(lines)
    if len(flat) != (width + 1) * n - 1 or flat[width::width + 1].count("\x00") != n - 1:
        return None
    return [flat[j::width + 1] for j in range(width)]


def _has_control(block: bytes) -> bool:
    """Whether UTF-8 `block` holds a CONTROL character: a byte deletion and a byte search, several times
    faster than the regex over the decoded text."""
    if len(block.translate(None, _C0_BYTES)) != len(block):
        return True
    return b"\xc2" in block and _C1_UTF8.search(block) is not None


class FileSource(Source):
    splits = True  # a file each worker opens for itself
    def __init__(self, path: str | Path, *, fmt: str = "", recipient: str = "phone", id_column: str = "",
                 delimiter: str = ",", encoding: str = "utf-8", chunk_size: int = CHUNK_SIZE) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.fmt = fmt or ("jsonl" if self.path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv")
        if self.fmt not in ("csv", "jsonl"):
            raise SourceError(f"{path}: unknown format '{self.fmt}' (csv or jsonl)")
        self.recipient = recipient
        self.id_column = id_column
        self.delimiter = delimiter
        self.encoding = encoding
        self.chunk_size = chunk_size
        self._size = 0
        self._file: IO[bytes] | None = None
        self._header: list[str] | None = None
        self._scanned = (0, 0)  # (bytes, lines) decoded so far: the estimate's sample
        self._yielded = 0  # records given out or skipped so far
        self._count: int | None = None  # every record, once read through
        try:
            self._size = os.path.getsize(self.path)
        except OSError as e:
            raise SourceError(f"{path}: cannot read source file ({e.strerror or e})") from None
        if self.fmt == "csv":
            self._header = self._read_header()

    def identity(self) -> dict[str, object]:
        """Path, size, modification time and a digest of the first MiB: another file, or this one
        rewritten, is not the audience a run of it was started on."""
        st = self.path.stat()
        with open(self.path, "rb") as f:
            head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:16]
        return {"path": str(self.path.resolve()), "size": st.st_size,
                "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)), "head": head}

    def _open(self) -> IO[bytes]:
        try:
            return open(self.path, "rb", buffering=1 << 20)
        except OSError as e:
            raise SourceError(f"{self.path}: cannot open source file ({e.strerror or e})") from None

    def _read_header(self) -> list[str]:
        with self._open() as f:
            first = f.readline(LINE_LIMIT + 1)
        if len(first) > LINE_LIMIT:
            raise SourceError(f"{self.path}:1: the header line is longer than {LINE_LIMIT} bytes "
                              "(not a CSV file, or one without line breaks)")
        try:
            line = first.decode(self.encoding).lstrip("\ufeff")
        except UnicodeDecodeError:
            raise SourceError(f"{self.path}:1: header is not valid {self.encoding}") from None
        if CONTROL.search(line):
            raise SourceError(f"{self.path}:1: the header holds control characters (not a CSV text file?)")
        try:
            header = next(csv.reader([line], delimiter=self.delimiter), [])
        except csv.Error as e:
            raise SourceError(f"{self.path}:1: unreadable header ({e})") from None
        header = [h.strip() for h in header]
        if not header or not any(header):
            raise SourceError(f"{self.path}:1: empty header line (a CSV source needs column names)")
        for needed, what in ((self.recipient, "recipient"), (self.id_column, "id")):
            if needed and needed not in header:
                raise SourceError(f"{self.path}:1: no column '{needed}' for the {what} "
                                  f"(columns: {', '.join(header)})")
        return header

    def columns(self) -> list[str] | None:
        return self._header

    def estimate_total(self) -> int | None:
        """Exact once read; before, the lines decoded so far scaled by the file's size (a file of up
        to 256 KiB is decoded in one block, so its count is exact at once)."""
        if self._count is not None:
            return self._count
        nbytes, lines = self._scanned
        if not nbytes:
            return None
        data = lines - (1 if self.fmt == "csv" else 0)  # the header
        estimate = data if nbytes >= self._size else round(data * self._size / nbytes)
        return max(estimate, self._yielded)

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()

    async def chunks(self, skip: Callable[[int], bool] | None = None,
                     part: Part | None = None) -> AsyncIterator[tuple[Chunk, list[Result]]]:
        self._file = self._open()
        self._scanned, self._yielded, self._count = (0, 0), 0, None
        counted = skip
        if skip is not None:
            def counted(seq: int) -> bool:
                if skip(seq):
                    self._yielded += 1
                    return True
                return False
        parts = self._csv_chunks(counted, part) if self.fmt == "csv" else self._jsonl_chunks(counted, part)
        try:
            for records, bad in parts:
                self._yielded += len(records) + len(bad)
                yield records, bad
                await asyncio.sleep(0)
            if part is None:  # a part's count is not the file's: its estimate, exact once scanned, stands
                self._count = self._yielded
        finally:
            self._file.close()

    def _bad(self, seq: int, problem: str, rid: str = "", to: str = "", code: str = "bad_row") -> Result:
        return rejected(seq, rid or str(seq), to, code, f"{self.name}:{seq}: {problem}")

    def _blocks(self, broken: dict[int, str], suspect: set[int]) -> Iterator[tuple[int, list[str], bool]]:
        """Decoded lines, without their line ends, a block at a time: (lines before the block, its lines,
        whether it is plain: no quote and no carriage return but in line ends, so one row a line).
        A line that is not valid text, or is longer than LINE_LIMIT, is replaced by an empty one and its
        number and problem put in `broken`; the numbers of lines holding a control character or more than
        FIELD_LIMIT characters go in `suspect`."""
        assert self._file is not None
        enc = self.encoding
        utf8 = codecs.lookup(enc).name == "utf-8"
        read = self._file.read
        rest = b""
        skipping = False  # inside a line longer than LINE_LIMIT: drop bytes up to its end
        n = 0  # lines yielded so far
        scanned = 0  # bytes of whole lines decoded so far
        while True:
            block = read(BLOCK)
            if skipping:
                if not block:
                    yield n, [""], False
                    return
                end = block.find(b"\n")
                if end < 0:
                    continue
                skipping = False
                n += 1
                yield n - 1, [""], False
                block = block[end + 1:]
                if not block:
                    continue
            if not block:
                if rest:
                    block, rest = rest, b""
                else:
                    return
            else:
                block = rest + block
                cut = block.rfind(b"\n") + 1
                if not cut:
                    rest = block
                    if len(rest) > LINE_LIMIT:
                        broken[n + 1] = f"line longer than {LINE_LIMIT} bytes (skipped)"
                        rest, skipping = b"", True
                    continue
                block, rest = block[:cut], block[cut:]
            try:
                text = block.decode(enc)
                quoted = '"' in text
                lines = []
                if "\r" in text and not quoted:  # quoted fields keep their CRLFs: only line ends go
                    lines = text.split("\r\n")
                    ends = len(lines) - 1
                    if text.count("\r") != ends or text.count("\n") != ends:  # a \r or \n of its own
                        text = text.replace("\r\n", "\n")
                        lines = []
                plain = not quoted and (bool(lines) or "\r" not in text)  # one row a line, no quoting to undo
                odd = _has_control(block) if utf8 else CONTROL.search(text) is not None
                if not lines:
                    lines = text.split("\n")  # not splitlines(): \r, \u2028... are data
                if not lines[-1]:
                    lines.pop()
            except UnicodeDecodeError:
                odd, plain = True, False
                lines = []
                for raw in block.split(b"\n"):
                    if not raw:
                        continue
                    try:
                        lines.append(raw.decode(enc))
                    except UnicodeDecodeError:
                        broken[n + len(lines) + 1] = f"not valid {enc} text"
                        lines.append("")
            if lines and (odd or (len(text) > FIELD_LIMIT and max(map(len, lines)) > FIELD_LIMIT)):
                suspect.update(n + i + 1 for i, line in enumerate(lines)
                               if len(line) > FIELD_LIMIT or CONTROL.search(line))
            scanned += len(block)
            self._scanned = (scanned, n + len(lines))
            yield n, lines, plain
            n += len(lines)

    def _csv_chunks(self, skip: Callable[[int], bool] | None,
                    part: Part | None = None) -> Iterator[tuple[Chunk, list[Result]]]:
        """Chunks of columns, a block of lines at a time. A plain block (no quote, no broken or suspect
        line) whose every line has the header's number of delimiters is split into columns by two string
        calls for the whole block: no Python work a row. Other blocks go line by line through the csv
        module; from the first block holding a quote on, a row may span lines, and one reader takes the
        rest, counting physical lines. With `part`, every block is still scanned (the line numbers are
        the seqs), but only the part's lines of a plain block are split, and only its rows are taken."""
        broken: dict[int, str] = {}
        suspect: set[int] = set()
        out = _Collected(self, skip, part, broken, suspect)
        blocks = self._blocks(broken, suspect)
        quoted_from: tuple[int, list[str]] | None = None
        for first, block_lines, plain in blocks:
            if first == 0:
                block_lines, first = block_lines[1:], 1  # the header, already read
            if not plain and any(['"' in line for line in block_lines]):
                quoted_from = (first, block_lines)
                break
            pieces = [(first, block_lines)] if part is None else \
                [(a - 1, block_lines[a - first - 1:b - first - 1]) for a, b in part.runs(first + 1, first + len(block_lines))]
            for start, lines in pieces:
                self._csv_piece(out, start, lines, plain)
            yield from out.ready()
        if quoted_from is not None:
            yield from self._csv_quoted(out, quoted_from, blocks)
        yield from out.ready(final=True)

    def _csv_piece(self, out: _Collected, start: int, lines: list[str], plain: bool) -> None:
        """Lines start+1.. of a block: split as columns at once when clean, else one row at a time."""
        broken, suspect, d = out.broken, out.suspect, self.delimiter
        lines_of_block = range(start + 1, start + len(lines) + 1)
        # this block's lines looked up, not every broken or suspect line (a hostile file has millions)
        clean = plain and not (broken and not broken.keys().isdisjoint(lines_of_block)) \
            and not (suspect and not suspect.isdisjoint(lines_of_block))
        block = _split_plain(lines, d, out.width) if clean and lines else None
        if block is not None and all(block[out.recipient]):
            out.add_columns(block, lines_of_block)
            return
        skip = out.skip
        for n, line in enumerate(lines, start + 1):
            try:
                row = next(csv.reader([line], delimiter=d), [])
            except csv.Error as e:
                if skip is None or not skip(n):
                    out.bad.append(self._bad(n, f"unreadable CSV row ({e})"))
                continue
            out.take(row, n, n - 1)

    def _csv_quoted(self, out: _Collected, quoted_from: tuple[int, list[str]],
                    blocks: Iterator[tuple[int, list[str], bool]]) -> Iterator[tuple[Chunk, list[Result]]]:
        """From the first block holding a quote to the end: one csv reader, rows may span lines."""
        base, first = quoted_from
        lines_on = chain(first, chain.from_iterable(lines for _, lines, _ in blocks))
        reader = csv.reader((line + "\n" for line in lines_on), delimiter=self.delimiter)
        n = base  # the last physical line read
        part, skip = out.part, out.skip
        while True:
            try:
                for row in reader:
                    prev, n = n, base + reader.line_num
                    out.take(row, n, prev)
                    if len(out.rows) >= out.size:
                        yield from out.ready()
                break
            except csv.Error as e:
                n = base + reader.line_num
                if (part is None or part.owns(n)) and (skip is None or not skip(n)):
                    out.bad.append(self._bad(n, f"unreadable CSV row ({e})"))

    def _jsonl_chunks(self, skip: Callable[[int], bool] | None,
                      part: Part | None = None) -> Iterator[tuple[Chunk, list[Result]]]:
        size = self.chunk_size
        seqs: list[int] = []
        dicts: list[dict[str, Any]] = []
        bad: list[Result] = []
        ident = self.id_column
        for seq, fields, code, problem in self._jsonl_rows(part):
            if skip is not None and skip(seq):
                continue
            if problem is not None:
                rid = fields.get(ident) if ident else None
                to = fields.get(self.recipient)
                bad.append(self._bad(seq, problem, "" if rid is None else str(rid), to if type(to) is str else "", code))
            else:
                seqs.append(seq)
                dicts.append(fields)
                if len(dicts) >= size:
                    self._scanned = (self._file.tell(), seq) if self._file is not None else self._scanned
                    yield Chunk.of_dicts(seqs, dicts), bad
                    seqs, dicts, bad = [], [], []
        if dicts or bad:
            yield Chunk.of_dicts(seqs, dicts), bad

    def _jsonl_rows(self, part: Part | None = None) -> Iterator[tuple[int, dict, str, str | None]]:
        """(line, object, code, problem) per non-blank line (of `part`'s lines only); lines are read with
        a length limit, so a huge one costs its length in time, not in memory."""
        assert self._file is not None
        recipient = self.recipient
        readline = self._file.readline
        n = 0
        while True:
            raw = readline(LINE_LIMIT + 1)
            if not raw:
                return
            n += 1
            if len(raw) > LINE_LIMIT and not raw.endswith(b"\n"):
                while (more := readline(BLOCK)) and not more.endswith(b"\n"):
                    pass
                if part is None or part.owns(n):
                    yield n, {}, "bad_row", f"line longer than {LINE_LIMIT} bytes (skipped)"
                continue
            if (part is not None and not part.owns(n)) or not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                yield n, {}, "bad_row", f"invalid JSON ({e.msg})"
                continue
            if not isinstance(obj, dict):
                yield n, {}, "bad_row", "a line must hold a JSON object"
                continue
            if len(raw) > FIELD_LIMIT or (b"\\u00" in raw and _ESCAPED_CONTROL.search(raw)) or b"\xc2" in raw:
                why = field_problem(obj)
                if why is not None:
                    yield n, obj, why[0], why[1]
                    continue
            value = obj.get(recipient)
            if not value:
                yield n, obj, *(("missing_recipient", f"no field '{recipient}'") if value is None else
                                ("empty_recipient", f"field '{recipient}' is empty"))
                continue
            yield n, obj, "", None


class _Collected:
    """A CSV file's rows on their way into chunks: whole plain blocks as columns, other rows one at a time
    (checked, or turned into rejected results), cut into chunks of `chunk_size` in line order."""

    def __init__(self, src: FileSource, skip: Callable[[int], bool] | None, part: Part | None,
                 broken: dict[int, str], suspect: set[int]) -> None:
        self.src = src
        self.header = header = src._header or []
        self.width = len(header)
        self.recipient = header.index(src.recipient)
        self.ident = header.index(src.id_column) if src.id_column else -1
        self.size = src.chunk_size
        self.skip, self.part, self.broken, self.suspect = skip, part, broken, suspect
        self.cols: list[list[str]] = [[] for _ in header]  # rows read, as columns, not yet yielded
        self.seqs: list[int] = []
        self.rows: list[list[str]] = []  # rows read one by one, not yet in `cols`
        self.bad: list[Result] = []

    def take(self, row: list[str], n: int, prev: int) -> None:
        """One row whose last physical line is `n` (its first is after `prev`)."""
        part, skip, broken, suspect, recipient, ident = \
            self.part, self.skip, self.broken, self.suspect, self.recipient, self.ident
        if part is not None and not part.owns(n):
            return
        if len(row) == self.width and row[recipient] and not (broken and n in broken):
            if skip is None or not skip(n):
                if suspect and not suspect.isdisjoint(range(prev + 1, n + 1)) \
                        and (why := field_problem(dict(zip(self.header, row, strict=True)))) is not None:
                    self.bad.append(self.src._bad(n, why[1], row[ident] if ident >= 0 else "", row[recipient], why[0]))
                    return
                self.rows.append(row)
                self.seqs.append(n)
            return
        if skip is not None and skip(n):
            return  # finished earlier
        rid = row[ident] if 0 <= ident < len(row) else ""
        if broken and n in broken:
            self.bad.append(self.src._bad(n, broken[n]))
        elif not row:
            return  # a blank line
        elif len(row) != self.width:
            self.bad.append(self.src._bad(n, f"expected {self.width} fields, found {len(row)}", rid))
        else:
            self.bad.append(self.src._bad(n, f"field '{self.src.recipient}' is empty", rid, code="empty_recipient"))

    def add_columns(self, block: list[list[str]], lines: range) -> None:
        """A plain block split into columns, its lines' rows (those `skip` does not drop) taken at once."""
        if self.rows:  # an earlier piece of this block went line by line
            self._settle()
        if self.skip is None:
            for col, values in zip(self.cols, block, strict=True):
                col.extend(values)
            self.seqs.extend(lines)
            return
        keep = [i for i, n in enumerate(lines) if not self.skip(n)]
        for col, values in zip(self.cols, block, strict=True):
            col.extend([values[i] for i in keep])
        self.seqs.extend([lines.start + i for i in keep])

    def _settle(self) -> None:
        """The rows taken one by one into `cols`, before a block's columns are (seqs are in order)."""
        for col, values in zip(self.cols, zip(*self.rows, strict=True), strict=True):
            col.extend(values)
        self.rows.clear()

    def ready(self, final: bool = False) -> Iterator[tuple[Chunk, list[Result]]]:
        """The full chunks read so far (with `final`, the rest too, and the last rejected results)."""
        if self.rows:
            self._settle()
        header, cols, seqs = self.header, self.cols, self.seqs
        n = len(seqs)
        cut = 0
        while n - cut >= self.size or (final and n > cut):
            end = min(cut + self.size, n)
            yield TextChunk(seqs[cut:end], {name: col[cut:end] for name, col in zip(header, cols, strict=True)}), self.bad
            self.bad = []
            cut = end
        if final and self.bad:
            yield Chunk([], {name: [] for name in header}), self.bad
            self.bad = []
        if cut:
            self.cols = [col[cut:] for col in cols]
            self.seqs = seqs[cut:]
