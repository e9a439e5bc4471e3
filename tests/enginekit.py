"""A fake provider, transport, source and sink that drive the real engine without HTTP.

The transport answers each request from a script (latency, a dropped connection, or one
verdict per recipient); the provider parses those answers like any adapter parses its
provider's. So retries, re-authentication, halts and deferral, the circuit, failover, stops
and resumes run in milliseconds against exactly the engine the CLI and the daemon use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson

from dispatcher.blast.campaign import Campaign
from dispatcher.blast.preparer import CampaignPreparer
from dispatcher.engine import Engine, Events
from dispatcher.model import Chunk, Content, Message, Result, Results, column
from dispatcher.providers.base import Accepted, HttpRequest, Outcome, Provider, Settings, Verdict
from dispatcher.render import compile_template
from dispatcher.sinks.base import Sink
from dispatcher.sources.base import Source

DROP = "drop"  # the connection dropped after the request left: the provider may hold it
REFUSED = "refused"  # the connection was refused: nothing left
# Script: (seqs of the request, how many requests this transport has answered before) -> DROP, REFUSED,
# or one verdict name per recipient (SENT, RETRY, FAILED, REJECTED, HALT, REAUTH)
Script = Callable[[list[int], int], str | list[str]]


PORT_9 = SimpleNamespace(host="127.0.0.1", port=9, ssl=False)  # the connection a refusal names (aiohttp's key)


class FakeTransport:
    session = None

    def __init__(self, script: Script, latency: float = 0.0) -> None:
        self.script = script
        self.latency = latency
        self.answered = 0
        self.requests: list[list[int]] = []
        self.accepted: list[int] = []  # what the "provider" holds: SENT answers, and drops after acceptance

    async def send(self, req: HttpRequest) -> tuple[int, Mapping[str, str], bytes, float]:
        seqs = orjson.loads(req.body or b"[]")
        self.requests.append(seqs)
        n = self.answered
        self.answered += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        answer = self.script(seqs, n)
        if answer == REFUSED:
            raise aiohttp.ClientConnectorError(PORT_9, OSError(111, "Connection refused"))  # type: ignore[arg-type]
        if answer == DROP:
            self.accepted.extend(seqs)
            raise aiohttp.ServerDisconnectedError()
        self.accepted.extend(s for s, v in zip(seqs, answer, strict=True) if v == "SENT")
        return 200, {}, orjson.dumps(answer), 0.0

    async def close(self) -> None:
        pass


class FakeProvider(Provider):
    kind = "fake"
    channels = frozenset({"email"})
    address = "email"
    default_rate = 0.0
    max_batch = 5
    default_concurrency = 4

    def __init__(self, alias: str = "a", batch: int = 5, concurrency: int = 4, split: bool = False,
                 **settings: Any) -> None:
        s = Settings(url="fake://", batch_size=batch, concurrency=concurrency, backoff_base=0.0005,
                     backoff_max=0.002, **settings)
        super().__init__(alias, s)
        self.batch_size = batch
        self.split = split  # odd and even seqs never share a request (a chunk's Batch is split by key)
        self.logins = 0
        self.login_fails = False

    async def authenticate(self, session: aiohttp.ClientSession) -> None:
        self.logins += 1
        if self.login_fails:
            raise aiohttp.ClientResponseError(None, (), status=401)  # type: ignore[arg-type]

    def batch_key(self, m: Message) -> Any:
        return m.seq % 2 if self.split else 0

    def batch_keys(self, msgs: Sequence[Message]) -> list[Any]:
        # without reading a message: a fresh Batch stays columns, as with 360nrs
        return [s % 2 for s in column(msgs, "seq")] if self.split else [0] * len(msgs)

    def build(self, batch: Sequence[Message]) -> HttpRequest:
        return HttpRequest("POST", "fake://send", {}, orjson.dumps(column(batch, "seq")))

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str],
              body: bytes) -> list[Outcome] | Accepted:
        verdicts = orjson.loads(body)
        if verdicts.count("SENT") == len(batch):  # the lane's block path, as a batched provider answers
            return Accepted([f"id{s}" for s in column(batch, "seq")])
        out = []
        for m, v in zip(batch, verdicts, strict=True):
            verdict = Verdict[v]
            out.append(Outcome(verdict, message_id=f"id{m.seq}" if verdict == Verdict.SENT else None,
                               code=None if verdict == Verdict.SENT else v.lower(), error=v.lower()))
        return out


class ListSource(Source):
    name = "list"

    def __init__(self, n: int, chunk: int = 16, start: int = 1) -> None:
        self.seqs = list(range(start, start + n))
        self.chunk = chunk

    def identity(self) -> dict[str, Any]:
        return {"name": "list", "seqs": [self.seqs[0], self.seqs[-1]] if self.seqs else []}

    async def chunks(self, skip: Callable[[int], bool] | None = None
                     ) -> AsyncIterator[tuple[Chunk, list[Result]]]:
        batch: list[int] = []
        for s in self.seqs:
            if skip is not None and skip(s):
                continue
            batch.append(s)
            if len(batch) >= self.chunk:
                yield rows(batch), []
                batch = []
                await asyncio.sleep(0)
        if batch:
            yield rows(batch), []


def rows(seqs: list[int]) -> Chunk:
    return Chunk(seqs, {"email": [f"u{s}@example.com" for s in seqs], "name": [f"n{s}" for s in seqs]})


class MemorySink(Sink):
    name = "memory"

    def __init__(self) -> None:
        self.results: list[Result] = []

    async def done(self) -> Iterable[int]:
        return [r.seq for r in self.results]

    async def failed(self) -> Iterable[int]:
        return [r.seq for r in self.results if r.status == "failed"]

    async def write(self, results: Results) -> None:
        self.results.extend(results.results())


@dataclass
class Recorder(Events):
    halts: list[tuple[str, str | None]] = field(default_factory=list)
    revivals: list[str] = field(default_factory=list)
    deferred_seqs: list[int] = field(default_factory=list)

    def halted(self, alias: str, why: Outcome) -> None:
        self.halts.append((alias, why.code))

    def revived(self, alias: str) -> None:
        self.revivals.append(alias)

    def deferred(self, alias: str, seqs: list[int], why: Outcome) -> None:
        self.deferred_seqs.extend(seqs)


def campaign(providers: dict[str, Provider], source: Source, sink: Sink, state_dir: Path | None,
             route: Callable[[dict[str, Any]], str] | None = None, **kw: Any) -> Campaign:
    first = next(iter(providers))
    return Campaign(run_id="t", source=source, sinks=[sink], providers=providers,
                    contents={"email": Content("email", compile_template("Hi {name}"), "a@example.com", "s")},
                    channels=dict.fromkeys(providers, "email"), route=route or (lambda f: first),
                    recipient="email", state_dir=state_dir, chunk_size=16, **kw)


def engine(providers: dict[str, Provider], transports: dict[str, FakeTransport], source: Source, sink: Sink,
           state_dir: Path | None, events: Events | None = None, **kw: Any) -> Engine:
    c = campaign(providers, source, sink, state_dir, **kw)
    return Engine(c, preparer=CampaignPreparer(c), events=events,
                  transports=lambda alias, concurrency, timeout: transports[alias])
