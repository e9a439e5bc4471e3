"""CSV and JSONL files, streamed: read line by line, never whole.

A row that cannot be read (bad UTF-8, wrong number of fields, broken JSON) becomes a
rejected result naming its line; the rest of the file goes on.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import orjson

from ..model import Record, Result, rejected
from .base import Source, SourceError


class FileSource(Source):
    def __init__(self, path: str | Path, *, fmt: str = "", recipient: str = "phone", id_column: str = "",
                 delimiter: str = ",", encoding: str = "utf-8", chunk_size: int = 2048) -> None:
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

    def _open(self) -> IO[bytes]:
        try:
            return open(self.path, "rb", buffering=1 << 20)
        except OSError as e:
            raise SourceError(f"{self.path}: cannot open source file ({e.strerror or e})") from None

    def _read_header(self) -> list[str]:
        with self._open() as f:
            first = f.readline()
        try:
            line = first.decode(self.encoding).lstrip("\ufeff")
        except UnicodeDecodeError:
            raise SourceError(f"{self.path}:1: header is not valid {self.encoding}") from None
        header = next(csv.reader([line], delimiter=self.delimiter), [])
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
        to 1 MiB is decoded in one block, so its count is exact at once)."""
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

    async def chunks(self, skip: Callable[[int], bool] | None = None) -> AsyncIterator[tuple[list[Record], list[Result]]]:
        self._file = self._open()
        self._scanned, self._yielded, self._count = (0, 0), 0, None
        counted = skip
        if skip is not None:
            def counted(seq: int) -> bool:
                if skip(seq):
                    self._yielded += 1
                    return True
                return False
        parts = self._csv_chunks(counted) if self.fmt == "csv" else self._jsonl_chunks(counted)
        try:
            for records, bad in parts:
                self._yielded += len(records) + len(bad)
                yield records, bad
                await asyncio.sleep(0)
            self._count = self._yielded
        finally:
            self._file.close()

    def _bad(self, seq: int, problem: str) -> Result:
        return rejected(seq, str(seq), "", "bad_row", f"{self.name}:{seq}: {problem}")

    def _lines(self, bad_lines: set[int]) -> Iterator[str]:
        """Decoded lines, decoded a block at a time; a line that is not valid text is replaced by an
        empty one and its number remembered."""
        assert self._file is not None
        enc = self.encoding
        read = self._file.read
        rest = b""
        n = 0  # lines yielded so far
        scanned = 0  # bytes of whole lines decoded so far
        while True:
            block = read(1 << 20)
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
                    continue
                block, rest = block[:cut], block[cut:]
            try:
                parts = block.decode(enc).split("\n")  # not splitlines(): \r, \u2028... are data
                lines = [p + "\n" for p in parts[:-1]]
                if parts[-1]:
                    lines.append(parts[-1])
            except UnicodeDecodeError:
                lines = []
                for raw in block.split(b"\n"):
                    if not raw:
                        continue
                    raw += b"\n"
                    try:
                        lines.append(raw.decode(enc))
                    except UnicodeDecodeError:
                        bad_lines.add(n + len(lines) + 1)
                        lines.append("\n")
            n += len(lines)
            scanned += len(block)
            self._scanned = (scanned, n)
            yield from lines

    def _csv_chunks(self, skip: Callable[[int], bool] | None) -> Iterator[tuple[list[Record], list[Result]]]:
        """Chunks straight from the csv reader: the common row costs one dict and one Record."""
        bad_lines: set[int] = set()
        lines = self._lines(bad_lines)
        next(lines, None)  # header, already read
        reader = csv.reader(lines, delimiter=self.delimiter)
        header = self._header or []
        width = len(header)
        recipient = header.index(self.recipient)
        size = self.chunk_size
        records: list[Record] = []
        bad: list[Result] = []
        while True:
            try:
                for row in reader:
                    n = reader.line_num + 1  # the header was read before the reader started
                    if len(row) == width and row[recipient] and not (bad_lines and n in bad_lines):
                        if skip is None or not skip(n):
                            records.append(Record(n, dict(zip(header, row, strict=True))))
                            if len(records) >= size:
                                yield records, bad
                                records, bad = [], []
                        continue
                    if skip is not None and skip(n):
                        continue  # finished earlier
                    if bad_lines and n in bad_lines:
                        bad.append(self._bad(n, f"not valid {self.encoding} text"))
                    elif not row:
                        continue  # a blank line
                    elif len(row) != width:
                        bad.append(self._bad(n, f"expected {width} fields, found {len(row)}"))
                    else:
                        bad.append(self._bad(n, f"empty '{self.recipient}'"))
                break
            except csv.Error as e:
                n = reader.line_num + 1
                if skip is None or not skip(n):
                    bad.append(self._bad(n, f"unreadable CSV row ({e})"))
        if records or bad:
            yield records, bad

    def _jsonl_chunks(self, skip: Callable[[int], bool] | None) -> Iterator[tuple[list[Record], list[Result]]]:
        size = self.chunk_size
        records: list[Record] = []
        bad: list[Result] = []
        for seq, fields, problem in self._jsonl_rows():
            if skip is not None and skip(seq):
                continue
            if problem is not None:
                bad.append(self._bad(seq, problem))
            else:
                records.append(Record(seq, fields))
                if len(records) >= size:
                    self._scanned = (self._file.tell(), seq) if self._file is not None else self._scanned
                    yield records, bad
                    records, bad = [], []
        if records or bad:
            yield records, bad

    def _jsonl_rows(self) -> Iterator[tuple[int, dict, str | None]]:
        assert self._file is not None
        recipient = self.recipient
        for n, raw in enumerate(self._file, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                yield n, {}, f"invalid JSON ({e.msg})"
                continue
            if not isinstance(obj, dict):
                yield n, {}, "a line must hold a JSON object"
                continue
            if not obj.get(recipient):
                yield n, obj, f"missing field '{recipient}'"
                continue
            yield n, obj, None
