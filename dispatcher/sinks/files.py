"""JSONL and CSV result files.

Each chunk is one `os.write` on an O_APPEND descriptor: once it returns, the lines are the
kernel's, so a SIGKILL loses nothing that was written. A resumed run reads the `seq` of
every line back (cheaply: `seq` is the first field) and cuts a torn last line.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..model import RESULT_FIELDS, Result
from .base import Sink, SinkError

_OPTS = orjson.OPT_APPEND_NEWLINE


class _FileSink(Sink):
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

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

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
    async def write(self, results: list[Result]) -> None:
        dumps = orjson.dumps
        self._write(b"".join([dumps(r, option=_OPTS) for r in results]))

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


class CsvSink(_FileSink):
    """Flat CSV: `meta` as a JSON string."""

    def header(self) -> bytes:
        return (",".join(RESULT_FIELDS) + "\r\n").encode()

    async def write(self, results: list[Result]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerows([
            (r.seq, r.id, r.to, r.provider, r.status, r.message_id, r.parts, r.encoding, r.code, r.error,
             r.attempts, r.latency_ms, r.trace_id, r.channel, int(r.transliterated),
             orjson.dumps(r.meta).decode() if r.meta else "")
            for r in results
        ])
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
