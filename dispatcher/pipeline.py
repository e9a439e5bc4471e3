"""The streaming engine: source -> render + encode -> batch -> send -> sink.

Work moves in chunks. A bounded number of records is in flight (read but without a
result); when the bound is reached the reader waits, so a slow provider slows the source
and memory stays flat. Every record that enters leaves as exactly one Result.

Each provider alias gets a Lane: its own pooled session, rate limit and workers. The
engine never names a provider: it asks the provider module to key, build and parse.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import codecs
from .limits import RateLimit
from .model import FAILED, REJECTED, SENT, Content, Message, Record, Result, rejected
from .phone import to_e164
from .providers.base import Outcome, Provider, ProviderError, Verdict
from .retry import ambiguous, backoff
from .sinks.base import Sink
from .sources.base import Source
from .state import RunState, SeqSet

Router = Callable[[dict[str, Any]], str]


@dataclass
class Campaign:
    """Everything a run needs, built and validated by config.py."""

    run_id: str
    source: Source
    sinks: list[Sink]
    providers: dict[str, Provider]
    contents: dict[str, Content]  # by channel
    channels: dict[str, str]  # provider alias -> the channel it carries in this campaign
    route: Router  # record fields -> provider alias
    recipient: str = "phone"
    id_column: str = ""
    region: str | None = None
    transliterate: bool = False
    gsm_pt: bool = False
    chunk_size: int = 2048
    max_in_flight: int = 0  # 0: derived from the lanes' concurrency and batch sizes
    on_doubt: str = "resend"  # or "hold"
    state_dir: Path | None = Path(".dispatcher")  # None: no journal (the daemon's leases do that job)
    dry_run: bool = False


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    read: int = 0
    skipped: int = 0  # finished by an earlier attempt of this run
    sent: int = 0
    failed: int = 0
    rejected: int = 0
    parts: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429s
    ambiguous: int = 0  # retries after an answer that never came: possible duplicates
    in_doubt: int = 0  # in flight when an earlier attempt died
    unsent: int = 0  # left for a resume by a stop
    codes: Counter[str] = field(default_factory=Counter)
    texts: dict[str, str] = field(default_factory=dict)  # per key of `codes`, the first error text seen
    by_encoding: Counter[str] = field(default_factory=Counter)
    cost: float = 0.0
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, done, requests)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.rejected


def describe(exc: BaseException) -> str:
    """An exception as text without URLs or headers (which may carry credentials)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, ProviderError):
        return str(exc)
    return type(exc).__name__


class Circuit:
    """Opens after consecutive unanswered or 5xx requests: the lane pauses (or fails over)
    instead of burning every message's attempts against a provider that is down."""

    def __init__(self, failures: int, cooldown: float, give_up_after: float) -> None:
        self.threshold = max(1, failures)
        self.base = cooldown
        self.cooldown = cooldown
        self.give_up_after = give_up_after
        self.failures = 0
        self.open_until = 0.0
        self.open_total = 0.0
        self.opened = 0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self.open_until

    def record(self, ok: bool) -> None:
        if ok:
            self.failures = 0
            self.cooldown = self.base
            return
        self.failures += 1
        if self.failures >= self.threshold and not self.is_open:
            self.open_until = time.monotonic() + self.cooldown
            self.open_total += self.cooldown
            self.opened += 1
            self.cooldown = min(self.cooldown * 2, 60.0)
            self.failures = self.threshold - 1  # half-open: one more failure opens it again

    @property
    def exhausted(self) -> bool:
        return self.open_total >= self.give_up_after


@dataclass(slots=True)
class LaneStatus:
    """What one provider lane is doing, for progress displays, health checks and metrics.

    A snapshot, not a view: readers never hold a Lane. `state` is one of SENDING, THROTTLED
    (waiting on a 429's Retry-After or a lowered pace), CIRCUIT_OPEN (paused: the provider stopped
    answering), HALTED (it cannot take anything now: records routed to it are deferred). `since` is
    the wall-clock time (epoch seconds) the lane entered that state; `code` / `reason` say why for
    the last two.
    """

    alias: str
    kind: str
    channel: str
    state: str
    since: float
    code: str | None
    reason: str | None
    rate: float  # configured requests/s (0: unlimited)
    pace: float  # requests/s the limiter admits now
    requests: int  # requests sent so far
    throttled: int  # 429 answers so far
    in_flight: int  # requests on the wire now


SENDING, THROTTLED, CIRCUIT_OPEN, HALTED = "sending", "throttled", "circuit_open", "halted"


class Lane:
    """One provider alias: batching, pace, pooled connections, workers, retries."""

    def __init__(self, engine: Engine, alias: str, provider: Provider) -> None:
        self.engine = engine
        self.alias = alias
        self.provider = provider
        s = provider.settings
        self.concurrency = s.concurrency or provider.default_concurrency
        self.limit = RateLimit(provider.rate, s.burst)
        self.groups: dict[Hashable, list[Message]] = {}
        self._sizes: dict[Hashable, int] = {}  # batch limit of each open group
        self.queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()
        self.waiting: dict[asyncio.TimerHandle, list[Message]] = {}
        self.halted: Outcome | None = None
        self.circuit = Circuit(s.circuit_failures, s.circuit_cooldown, s.give_up_after)
        self.session: aiohttp.ClientSession | None = None
        self.workers: list[asyncio.Task[None]] = []
        self._auth_lock = asyncio.Lock()
        self._auth_generation = 0
        self.requests = 0
        self.on_wire = 0
        self._state = (SENDING, None, None)
        self._since = time.time()

    def status(self, channel: str) -> LaneStatus:
        if self.halted is not None:
            now = (HALTED, self.halted.code, self.halted.error)
        elif self.circuit.is_open:
            now = (CIRCUIT_OPEN, None, "no answer from the provider: paused")
        elif self.limit.current < self.limit.ceiling:
            now = (THROTTLED, "429", "the provider answered 429: pace lowered")
        else:
            now = (SENDING, None, None)
        if now != self._state:
            self._state, self._since = now, time.time()
        return LaneStatus(self.alias, self.provider.kind, channel, now[0], self._since, now[1], now[2],
                          self.provider.rate, self.limit.current, self.requests, self.limit.throttled, self.on_wire)

    async def start(self) -> None:
        s = self.provider.settings
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=s.timeout),
            skip_auto_headers=("User-Agent",), raise_for_status=False,
        )
        await self.limit.prime()
        try:
            await self.limit.acquire()  # a token exchange is a request the provider counts
            await self.provider.authenticate(self.session)
        except Exception as e:  # the provider is unusable this run: every message will say why
            self.halted = Outcome(Verdict.HALT, code="auth", error=f"authentication failed: {describe(e)}")
        self.workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        for _ in self.workers:
            self.queue.put_nowait(None)
        await asyncio.gather(*self.workers, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    # -- batching -------------------------------------------------------------------------
    def add(self, msgs: Sequence[Message]) -> None:
        limit = self.provider.batch_limit
        key = self.provider.batch_key
        groups = self.groups
        sizes = self._sizes
        put = self.queue.put_nowait
        for m in msgs:
            k = key(m)
            g = groups.get(k)
            if g is None:
                g = groups[k] = []
                sizes[k] = limit(k)
            g.append(m)
            if len(g) >= sizes[k]:
                put(g)
                del groups[k]
                del sizes[k]

    def flush(self) -> None:
        for g in self.groups.values():
            self.queue.put_nowait(g)
        self.groups.clear()
        self._sizes.clear()

    def _requeue(self, handle_msgs: list[Message], handle: asyncio.TimerHandle | None = None) -> None:
        if handle is not None:
            self.waiting.pop(handle, None)
        self.add(handle_msgs)
        self.flush()

    # -- sending --------------------------------------------------------------------------
    async def _work(self) -> None:
        engine = self.engine
        provider = self.provider
        while True:
            batch = await self.queue.get()
            if batch is None:
                return
            if engine.stopping:
                engine.forget(batch)
                continue
            if self.halted is not None:
                self._settle(batch, [self.halted] * len(batch), 0, 0.0, False)
                continue
            if self.circuit.is_open:
                batch = self._fail_over(batch)
                if not batch:
                    continue
                await asyncio.sleep(max(0.0, self.circuit.open_until - time.monotonic()))
                if self.circuit.exhausted:
                    self._unreachable()
                    self.queue.put_nowait(batch)
                    continue
            await self.limit.acquire()
            if engine.stopping:
                engine.forget(batch)
                continue
            await self._send(provider, batch)

    async def _send(self, provider: Provider, batch: list[Message]) -> None:
        engine = self.engine
        now = time.monotonic()
        for m in batch:
            m.attempts += 1
            if not m.started:
                m.started = now
        try:
            req = provider.build(batch)
        except Exception as e:  # a bug or bad data in one batch must not stop the run
            o = Outcome(Verdict.FAILED, code="build_error", error=f"could not build the request: {type(e).__name__}: {e}")
            self._settle(batch, [o] * len(batch), 0, 0.0, False)
            return
        engine.state.sending([m.seq for m in batch])
        engine.stats.requests += 1
        self.requests += 1
        self.on_wire += 1
        generation = self._auth_generation
        t0 = time.monotonic()
        status = 0
        unsure = False
        try:
            assert self.session is not None
            async with self.session.request(req.method, req.url, data=req.body, headers=req.headers) as resp:
                body = await resp.read()
                status = resp.status
                outcomes = provider.parse(batch, status, resp.headers, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            unsure = ambiguous(e)
            outcomes = [Outcome(Verdict.RETRY, code="transport", error=describe(e))] * len(batch)
        except Exception as e:  # a parse bug: the answer is unknown, so treat it as in doubt
            unsure = True
            outcomes = [Outcome(Verdict.FAILED, code="parse_error",
                                error=f"could not read the answer: {type(e).__name__}")] * len(batch)
        self.on_wire -= 1
        latency = (time.monotonic() - t0) * 1000
        self.circuit.record(0 < status < 500)
        await self._after(batch, outcomes, status, latency, unsure, generation)

    async def _after(self, batch: list[Message], outcomes: list[Outcome], status: int, latency: float,
                     unsure: bool, generation: int) -> None:
        if status == 429 or any(o.code == "429" for o in outcomes[:1]):
            self.limit.throttle()
            self.engine.stats.throttled += 1
        retry = self._settle(batch, outcomes, status, latency, unsure)
        if not retry:
            return
        if self.engine.stopping:  # no more attempts: a resume sends these
            self.engine.state.cleared([m.seq for m, _ in retry if not m.ambiguous])
            self.engine.forget([m for m, _ in retry])
            return
        reauth = [m for m, o in retry if o.verdict == Verdict.REAUTH]
        if reauth:
            async with self._auth_lock:
                if generation == self._auth_generation:
                    try:
                        assert self.session is not None
                        await self.provider.authenticate(self.session)
                        self._auth_generation += 1
                    except Exception as e:
                        self.halted = Outcome(Verdict.HALT, code="auth", error=f"authentication failed: {describe(e)}")
            self._requeue(reauth)
        later = [(m, o) for m, o in retry if o.verdict == Verdict.RETRY]
        if later:
            s = self.provider.settings
            wait = max(backoff(m.attempts, s.backoff_base, s.backoff_max, o.retry_after) for m, o in later)
            msgs = [m for m, _ in later]
            self.engine.stats.retries += len(msgs)
            if unsure:
                self.engine.stats.ambiguous += len(msgs)
            loop = asyncio.get_running_loop()
            handle = loop.call_later(wait, lambda: self._requeue(msgs, handle))
            self.waiting[handle] = msgs

    def _settle(self, batch: list[Message], outcomes: list[Outcome], status: int, latency: float,
                unsure: bool) -> list[tuple[Message, Outcome]]:
        """Turn outcomes into results; return what must be tried again."""
        engine = self.engine
        max_attempts = self.provider.settings.max_attempts
        results: list[Result] = []
        retry: list[tuple[Message, Outcome]] = []
        halt: Outcome | None = None
        lat = round(latency, 2) if status else None
        alias = self.alias
        for m, o in zip(batch, outcomes, strict=True):
            v = o.verdict
            if unsure:
                m.ambiguous += 1
            if v == Verdict.SENT:
                results.append(Result(m.seq, m.rid, m.to, alias, SENT, o.message_id, m.parts or None,
                                      m.encoding or None, None, None, m.attempts, lat, o.trace_id, m.channel,
                                      m.transliterated, _meta(m, o)))
                continue
            if v == Verdict.REAUTH:
                m.attempts -= 1
                if (m.extra or {}).get("reauth", 0) < 2:
                    m.extra = {**(m.extra or {}), "reauth": (m.extra or {}).get("reauth", 0) + 1}
                    retry.append((m, o))
                    continue
                v = Verdict.FAILED
            if v == Verdict.RETRY and m.attempts < max_attempts and self.halted is None:
                retry.append((m, o))
                continue
            if v == Verdict.HALT:
                halt = o
            status_ = REJECTED if v == Verdict.REJECTED else FAILED
            results.append(Result(m.seq, m.rid, m.to, alias, status_, None, m.parts or None, m.encoding or None,
                                  o.code, o.error, m.attempts, lat, o.trace_id, m.channel, m.transliterated,
                                  _meta(m, o)))
        engine.emit(results)
        if halt is not None and self.halted is None:
            self.halted = halt
            self._fail_pending(halt)
        return retry

    def _fail_pending(self, why: Outcome) -> None:
        """The provider cannot go on: everything still waiting for it fails now, with the reason."""
        for handle, msgs in list(self.waiting.items()):
            handle.cancel()
            self._settle(msgs, [why] * len(msgs), 0, 0.0, False)
        self.waiting.clear()
        pending = list(self.groups.values())
        self.groups.clear()
        self._sizes.clear()
        for g in pending:
            self._settle(g, [why] * len(g), 0, 0.0, False)

    def _fail_over(self, batch: list[Message]) -> list[Message]:
        """Hand to the failover provider what this one never received; keep what it may hold."""
        alias = self.provider.settings.failover
        other = self.engine.lanes.get(alias)
        if other is None or other.halted is not None or other.circuit.is_open:
            return batch
        moving = [m for m in batch if not m.ambiguous]
        keep = [m for m in batch if m.ambiguous]
        for m in moving:
            m.extra = {**(m.extra or {}), "failover_from": self.alias}
            m.attempts = 0
        if moving:
            other.add(moving)
            other.flush()
        return keep

    def _unreachable(self) -> None:
        o = Outcome(Verdict.HALT, code="unreachable",
                    error=f"no answer from the provider for {self.circuit.open_total:.0f} s of open circuit")
        self.halted = o
        self._fail_pending(o)

    def abandon(self) -> list[Message]:
        """On a stop: drop what waits for a retry, to be sent by a resume."""
        out = []
        for handle, msgs in self.waiting.items():
            handle.cancel()
            out.extend(msgs)
        self.waiting.clear()
        for g in self.groups.values():
            out.extend(g)
        self.groups.clear()
        self._sizes.clear()
        return out


def _meta(m: Message, o: Outcome) -> dict[str, Any] | None:
    if not m.ambiguous and not o.extra and not m.extra:
        return None
    meta: dict[str, Any] = dict(o.extra or {})
    if m.ambiguous:
        meta["unanswered_attempts"] = m.ambiguous  # the provider may have accepted an earlier attempt
    if m.extra:
        if m.extra.get("in_doubt"):
            meta["in_doubt"] = True  # in flight when an earlier attempt of this run died
        if m.extra.get("failover_from"):
            meta["failover_from"] = m.extra["failover_from"]
    return meta or None


class Engine:
    def __init__(self, campaign: Campaign, on_progress: Callable[[Engine], None] | None = None) -> None:
        self.c = campaign
        self.stats = Stats()
        self.state = RunState(campaign.state_dir, campaign.run_id)
        self.stopping = False
        self.interrupted = False
        self.running = False  # sinks, source and journal are open: a failure from now on is mid-run
        self.lanes: dict[str, Lane] = {}
        self.in_flight = 0
        self._room = asyncio.Event()
        self._drained = asyncio.Event()
        self._buffer: list[Result] = []
        self._flush = asyncio.Event()
        self._source_done = False
        self._on_progress = on_progress
        self.in_doubt: SeqSet = SeqSet()
        # per provider alias, what preparing a record needs: (channel, content, recipient column, is a phone)
        self._routes = {
            alias: (ch, campaign.contents[ch], campaign.contents[ch].recipient or campaign.recipient,
                    p.address_for(ch) == "phone")
            for alias, p in campaign.providers.items() for ch in (campaign.channels[alias],)
        }

    def snapshot(self) -> list[LaneStatus]:
        """Every lane's state now: what progress, health and metrics read (never a Lane itself)."""
        return [lane.status(self.c.channels[alias]) for alias, lane in self.lanes.items()]

    # -- results ----------------------------------------------------------------------------
    def emit(self, results: list[Result]) -> None:
        if not results:
            return
        st = self.stats
        for r in results:
            s = r.status
            if s == SENT:
                st.sent += 1
                st.parts += r.parts or 0
            else:
                if s == FAILED:
                    st.failed += 1
                    k = f"{r.provider}:{r.code}"
                else:
                    st.rejected += 1
                    k = f"rejected:{r.code}"
                if k not in st.codes:
                    st.texts[k] = r.error or ""
                st.codes[k] += 1
        self._buffer.extend(results)
        self._flush.set()  # the writer runs on the next loop turn: results of one turn go in one write
        self._settled(len(results))

    def forget(self, msgs: list[Message]) -> None:
        """Messages a stop leaves unsent: no result now, a resume sends them."""
        self.stats.unsent += len(msgs)
        self._settled(len(msgs))

    def _settled(self, n: int) -> None:
        self.in_flight -= n
        if self.in_flight <= self._limit:
            self._room.set()
        if self.in_flight == 0 and self._source_done:
            self._drained.set()
            self._flush.set()

    async def _writer(self) -> None:
        """Results reach the sinks one loop turn after they exist, so a SIGKILL leaves few in doubt."""
        while True:
            await self._flush.wait()
            self._flush.clear()
            if self._buffer:
                chunk, self._buffer = self._buffer, []
                try:
                    for sink in self.c.sinks:
                        await sink.write(chunk)
                except Exception:
                    # Results that cannot be recorded must not be sent: stop, so a resume
                    # finds these records without results and handles them (in doubt).
                    self.stop()
                    raise
            if self._drained.is_set() and not self._buffer:
                return

    # -- preparing a chunk ----------------------------------------------------------------------
    def prepare(self, records: list[Record]) -> tuple[dict[str, list[Message]], list[Result]]:
        """Render, normalise and encode one chunk; bad records become rejected results."""
        c = self.c
        out: dict[str, list[Message]] = {}
        bad: list[Result] = []
        sms: list[Message] = []
        recipient, id_col, region = c.recipient, c.id_column, c.region
        route, routes = c.route, self._routes
        in_doubt = self.in_doubt if len(self.in_doubt) else None
        for rec in records:
            f = rec.fields
            rid = str(f.get(id_col) or rec.seq) if id_col else str(rec.seq)
            try:
                alias = route(f)
            except KeyError as e:
                raw = f.get(recipient)
                bad.append(rejected(rec.seq, rid, "" if raw is None else str(raw), "no_route",
                                    str(e.args[0]) if e.args else "no route"))
                continue
            channel, content, column, phone = routes[alias]
            raw = f.get(column)
            raw = raw if type(raw) is str else ("" if raw is None else str(raw))
            if phone:
                to = to_e164(raw, region)
                if to is None:
                    bad.append(rejected(rec.seq, rid, raw, "invalid_number", f"'{raw}' is not a valid phone number"
                                        + (f" (default region {region})" if region else ""), alias, channel))
                    continue
            else:
                to = raw.strip()
                if "@" not in to or " " in to or to.startswith("@") or to.endswith("@"):
                    bad.append(rejected(rec.seq, rid, raw, "invalid_address", f"'{raw}' is not an email address",
                                        alias, channel))
                    continue
            try:
                text, slots = content.template.fill(f)
            except KeyError as e:
                bad.append(rejected(rec.seq, rid, to, "missing_variable",
                                    f"template variable '{e.args[0]}' has no value in this record", alias, channel))
                continue
            m = Message(rec.seq, rid, to, text, f, slots, alias, channel, content=content)
            if in_doubt and rec.seq in in_doubt:
                m.extra = {"in_doubt": True}
            if channel == "sms":
                sms.append(m)
            g = out.get(alias)
            if g is None:
                g = out[alias] = []
            g.append(m)
        if sms:
            self._encode(sms)
        if out:
            for alias, msgs in out.items():
                check = c.providers[alias].check
                keep = []
                for m in msgs:
                    why = check(m)
                    if why is None:
                        keep.append(m)
                    else:
                        bad.append(Result(m.seq, m.rid, m.to, alias, REJECTED, None, m.parts or None,
                                          m.encoding or None, why[0], why[1], channel=m.channel,
                                          transliterated=m.transliterated))
                out[alias] = keep
        return out, bad

    def _encode(self, msgs: list[Message]) -> None:
        """One codec call for the chunk's SMS texts: encoding, parts, transliteration."""
        a = codecs.analyze([m.text for m in msgs], gsm_pt=self.c.gsm_pt, transliterate=self.c.transliterate)
        names = codecs.ENCODINGS
        enc = a.encoding.tolist()
        parts = a.parts.tolist()
        if self.c.transliterate:
            tr = a.transliterated.tolist()
            texts = a.texts
            for i, m in enumerate(msgs):
                m.encoding = names[enc[i]]
                m.parts = parts[i]
                if tr[i]:
                    m.transliterated = True
                    m.text = texts[i]
        else:
            for i, m in enumerate(msgs):
                m.encoding = names[enc[i]]
                m.parts = parts[i]

    # -- the run ------------------------------------------------------------------------------
    @property
    def _limit(self) -> int:
        return self.c.max_in_flight

    def stop(self) -> None:
        """First Ctrl-C / SIGTERM: stop reading, let requests on the wire settle."""
        if self.stopping:
            return
        self.stopping = True
        self.interrupted = True
        self._room.set()
        for lane in self.lanes.values():
            msgs = lane.abandon()
            self.state.cleared([m.seq for m in msgs if not m.ambiguous])
            self.forget(msgs)
            for _ in range(lane.queue.qsize()):
                b = lane.queue.get_nowait()
                if b is not None:
                    self.forget(b)

    def abandon(self) -> None:
        """Second Ctrl-C / SIGTERM: give up the requests on the wire. Their records get no result
        (the journal holds them as sent, so a resume treats them as in doubt); everything settled
        so far still reaches the sinks and the run ends as a stopped one, sessions closed."""
        self.stop()
        for lane in self.lanes.values():
            for w in lane.workers:
                w.cancel()
        self.stats.unsent += max(self.in_flight, 0)
        self.in_flight = 0
        if self._source_done:
            self._drained.set()
            self._flush.set()

    def _default_limit(self) -> int:
        need = sum(lane.concurrency * lane.provider.batch_size for lane in self.lanes.values())
        return max(self.c.chunk_size * 4, min(int(need * 1.5) + self.c.chunk_size, 200_000))

    async def resume_point(self) -> SeqSet:
        """Records that already have a terminal result; notes the ones in doubt."""
        done = SeqSet()
        if not self.state.resuming:
            return done
        if self.c.sinks:
            done.update(await self.c.sinks[0].done())
        for seq in self.state.attempted():
            if seq not in done:
                self.in_doubt.add(seq)
        self.stats.in_doubt = len(self.in_doubt)
        return done

    async def run(self) -> Stats:
        c = self.c
        resuming = self.state.resuming
        for sink in c.sinks:
            await sink.open(resume=resuming)
        done = await self.resume_point()
        self.stats.skipped = 0
        self.state.open()
        self.running = True
        for alias, provider in c.providers.items():
            self.lanes[alias] = Lane(self, alias, provider)
        if not c.max_in_flight:
            c.max_in_flight = self._default_limit()
        for lane in self.lanes.values():
            await lane.start()
        if any(ch == "sms" for ch in c.channels.values()):
            codecs.warm_up()  # loads the compiled kernels (from the disk cache) before the clock starts
        self.stats.started = time.monotonic()
        writer = asyncio.create_task(self._writer())
        progress = asyncio.create_task(self._progress())
        hold = c.on_doubt == "hold"
        failure: Exception | None = None

        def skip(seq: int) -> bool:
            if seq in done:
                self.stats.skipped += 1
                return True
            return False

        try:
            async for records, bad in c.source.chunks(skip if len(done) else None):
                if self.stopping:
                    break
                self.stats.read += len(records) + len(bad)
                self.in_flight += len(records) + len(bad)
                if bad:
                    self.emit(bad)
                if hold and len(self.in_doubt):
                    held = [r for r in records if r.seq in self.in_doubt]
                    if held:
                        records = [r for r in records if r.seq not in self.in_doubt]
                        self.emit([self._held(r) for r in held])
                by_lane, rejects = self.prepare(records)
                self.emit(rejects)
                for alias, msgs in by_lane.items():
                    if msgs:
                        self.lanes[alias].add(msgs)
                if self.in_flight > c.max_in_flight:
                    for lane in self.lanes.values():
                        lane.flush()
                    self._room.clear()
                    if self.in_flight > c.max_in_flight:
                        await self._room.wait()
        except Exception as e:  # the source failed mid-run: settle and record what is on the wire first
            failure = e
            self.stop()
        finally:
            await c.source.close()
        if not self.stopping:
            for lane in self.lanes.values():
                lane.flush()
        self._source_done = True
        if self.in_flight == 0:
            self._drained.set()
            self._flush.set()
        await self._drained.wait()
        for lane in self.lanes.values():
            await lane.stop()
        await writer
        progress.cancel()
        self.stats.timeline.append((round(time.monotonic() - self.stats.started, 2), self.stats.done,
                                    self.stats.requests))
        for sink in c.sinks:
            await sink.close()
        self.state.close()
        if failure is not None:
            raise failure
        return self.stats

    def _held(self, r: Record) -> Result:
        rid = str(r.fields.get(self.c.id_column) or r.seq) if self.c.id_column else str(r.seq)
        to = r.fields.get(self.c.recipient)
        return Result(r.seq, rid, str(to or ""), "", FAILED, code="in_doubt",
                      error="in flight when an earlier attempt of this run died: the provider may have it; "
                            "not resent (on_doubt = \"hold\")", meta={"in_doubt": True})

    async def _progress(self) -> None:
        """Twice a second: a sample for the timeline (thinned to stay small) and the live display."""
        st = self.stats
        step = 0.5
        while True:
            await asyncio.sleep(step)
            st.timeline.append((round(time.monotonic() - st.started, 2), st.done, st.requests))
            if len(st.timeline) >= 4000:
                del st.timeline[::2]
                step *= 2
            if self._on_progress is not None:
                self._on_progress(self)


async def dry_run(campaign: Campaign,
                  on_chunk: Callable[[dict[str, list[Message]], list[Result]], Awaitable[None]] | None = None
                  ) -> Stats:
    """Render, normalise, encode and price every record; send nothing, write nothing.
    `on_chunk(messages by alias, rejected results)` sees each chunk (the CLI's samples and --rejects)."""
    campaign.dry_run = True
    engine = Engine(campaign)
    st = engine.stats
    async for records, bad in campaign.source.chunks():
        st.read += len(records) + len(bad)
        for r in bad:
            st.rejected += 1
            st.codes[f"rejected:{r.code}"] += 1
        by_lane, rejects = engine.prepare(records)
        for r in rejects:
            st.rejected += 1
            st.codes[f"rejected:{r.code}"] += 1
        for alias, msgs in by_lane.items():
            price = campaign.providers[alias].settings.price
            for m in msgs:
                st.sent += 1
                units = m.parts or 1
                st.parts += units
                st.cost += units * price
                st.by_encoding[m.encoding or m.channel] += 1
        if on_chunk is not None:
            await on_chunk(by_lane, bad + rejects if bad else rejects)
    await campaign.source.close()
    return st
