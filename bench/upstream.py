"""A fast upstream: answers every provider's success body as cheaply as a server can, so that neither
side of a benchmark ratio is bound by the server (the simulators validate everything and answer only a
few thousand requests a second, which made them the ceiling of both sides).

`python -m bench.upstream KIND [KIND ...] [--latency-ms MS] [--port PORT]` prints `KIND http://127.0.0.1:PORT`
for each KIND (one of `SHAPES`), each on a port of its own (PORT, then the next ones; 0: free ports), then
`ready`, and serves until terminated. Several kinds in one process: a scenario whose jobs run one after
another starts one upstream, not one a kind (an interpreter start each).

A raw uvloop `asyncio.Protocol` speaking just enough HTTP/1.1: keep-alive, one request line, headers
scanned only for Content-Length, the body read to its length (no chunked bodies: aiohttp and wrk send
Content-Length). No auth, no validation, no ledger. Single-message shapes answer a prebuilt response;
batched shapes read the recipients (orjson for 360nrs, the form's `to` for Kaleyra) only to answer one
accepted result per recipient, which is what the adapters pair their outcomes with. With `--latency-ms`
each answer is written that long after its request arrived (a provider's round trip), via `call_later`,
so latency costs the server no task.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import urllib.parse
from collections.abc import Callable

import orjson
import uvloop

Handler = Callable[[bytes, bytes], tuple[bytes, bytes]]  # (path, body) -> (status line, JSON body)
_ids = itertools.count(1)


def _static(status: bytes, body: object, headers: bytes = b"") -> Handler:
    data = orjson.dumps(body)

    def answer(_path: bytes, _body: bytes) -> tuple[bytes, bytes]:
        return status + headers, data
    return answer


def _nrs360(_path: bytes, body: bytes) -> tuple[bytes, bytes]:
    """202 with one accepted result per `to` (or per WhatsApp `messages` entry), as nrs360.parse reads it."""
    doc = orjson.loads(body)
    to = doc.get("to") or [m.get("to") for m in doc.get("messages") or ()]
    sending = next(_ids)
    return b"202 Accepted", orjson.dumps({"campaignId": 0, "sendingId": sending, "result": [
        {"accepted": True, "to": t, "id": f"{sending}-{i}", "parts": 1} for i, t in enumerate(to)]})


def _kaleyra(_path: bytes, body: bytes) -> tuple[bytes, bytes]:
    """202 with a `data` entry (message_id, recipient) per number of the comma-separated `to`."""
    form = urllib.parse.parse_qs(body.decode())
    rid = next(_ids)
    numbers = [n for v in form.get("to", ()) for n in v.split(",") if n]
    return b"202 Accepted", orjson.dumps({"id": str(rid), "totalCount": len(numbers), "error": {}, "data": [
        {"message_id": f"{rid}-{i}", "recipient": n} for i, n in enumerate(numbers)]})


def _routes(table: dict[bytes, Handler]) -> Handler:
    """The handler of the longest path prefix that matches (the auth call and the send differ)."""
    ordered = sorted(table.items(), key=lambda kv: -len(kv[0]))

    def route(path: bytes, body: bytes) -> tuple[bytes, bytes]:
        for prefix, handler in ordered:
            if path.startswith(prefix):
                return handler(path, body)
        return b"404 Not Found", b'{"error":"no such path"}'
    return route


SAVED = "Saved"
SHAPES: dict[str, Handler] = {
    "nrs360": _nrs360,
    "kaleyra": _kaleyra,
    "smsgateway24": _routes({
        b"/getdata/gettoken": _static(b"200 OK", {"error": 0, "message": "OK", "token": "bench-token"}),
        b"/getdata/addalotofsms": _static(b"200 OK", {"error": 0, "message": SAVED}),
        b"/getdata/addsms": _static(b"200 OK", {"error": 0, "sms_id": 1, "message": SAVED}),
    }),
    "sendix": _routes({
        b"/api/v1/auth/token": _static(b"200 OK", {"token": "bench-token"}),
        b"/api/v1/messages": _static(b"200 OK", {"messageId": "bench-1", "status": "Queued"},
                                     b"\r\nTraceId: bench-trace"),
    }),
    "sendx": _static(b"202 Accepted", {"status": "success", "message": "Email queued for delivery"}),
}


class Upstream(asyncio.Protocol):
    """One connection: requests parsed from a byte buffer, answered in order."""

    __slots__ = ("buf", "delay", "handler", "loop", "transport")

    def __init__(self, handler: Handler, delay: float) -> None:
        self.handler = handler
        self.delay = delay
        self.buf = b""
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            i = head.find(b"\r\nContent-Length:")  # how aiohttp and wrk spell it; any other case costs a lower()
            if i < 0:
                i = head.lower().find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17:j if j >= 0 else end])
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4:end + 4 + length]
            buf = buf[end + 4 + length:]
            start = head.find(b" ") + 1
            path = head[start:head.find(b" ", start)]
            status, payload = self.handler(path, body)
            out.append(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                       % (status, len(payload), payload))
        self.buf = buf
        if out and self.transport is not None:
            answer = b"".join(out) if len(out) > 1 else out[0]
            if self.delay:
                self.loop.call_later(self.delay, self._write, answer)
            else:
                self.transport.write(answer)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(kinds: list[str], latency_ms: float, port: int) -> None:
    loop = asyncio.get_running_loop()
    for i, kind in enumerate(kinds):
        server = await loop.create_server(lambda h=SHAPES[kind]: Upstream(h, latency_ms / 1000), "127.0.0.1",
                                          port and port + i, backlog=1024)
        print(f"{kind} http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    print("ready", flush=True)
    await asyncio.Event().wait()  # the servers serve from the loop until the process is terminated


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n\n")[0])
    p.add_argument("kind", nargs="+", choices=sorted(SHAPES))
    p.add_argument("--latency-ms", type=float, default=0.0, help="answer this long after each request arrives")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(a.kind, a.latency_ms, a.port))


if __name__ == "__main__":
    main(sys.argv[1:])
