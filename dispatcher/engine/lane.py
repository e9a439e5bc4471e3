"""One provider alias: batching, pace, pooled connections, sender tasks, retries, halts.

Its public surface is what the engine and the daemon use, and nothing else:
`start`, `add`, `flush`, `flush_if_idle`, `halted`, `revive`, `set_share`, `status`,
`abandon` (a stop), `stop` and `close`. Every record it takes leaves through the Ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from ..model import SENT, Batch, Message, ResultRow, Results, column
from ..providers.base import Accepted, Outcome, Provider, Verdict
from ..reach import transport_outcome
from ..retry import ambiguous, backoff
from ..tasks import Spawn, unowned
from .answers import describe, message_meta
from .batcher import Batcher
from .circuit import Circuit
from .ledger import Events, Ledger
from .pace import RateLimit
from .queue import LaneQueue, split
from .settle import Policy, SpentRetries, settle
from .status import LaneState, LaneStatus
from .transport import Transport, TransportFactory

SENDING, THROTTLED, CIRCUIT_OPEN, HALTED = LaneState


@dataclass(frozen=True, slots=True)
class LaneConfig:
    """What a lane is: the provider alias it sends for, the provider, the channel it carries, this process's
    `share` of the provider (one of a run's workers: of its rate, and of its concurrency, at least one
    request), and what becomes of a record whose retries ran out (`spent_retries`, see engine/settle.py)."""

    alias: str
    provider: Provider
    channel: str
    share: float = 1.0
    spent_retries: SpentRetries = "fail"


@dataclass(slots=True)
class RunFlags:
    """The run's stop, owned by the engine and read by its lanes: once set, nothing more goes on the wire
    (what a lane holds leaves unsent, for a resume)."""

    stopping: bool = False


FailOver = Callable[[str, list[Message]], bool]  # (alias, messages) -> taken by the alias's failover lane


class Lane:
    def __init__(self, config: LaneConfig, ledger: Ledger, events: Events, transports: TransportFactory,
                 flags: RunFlags, fail_over: FailOver | None = None) -> None:
        """`fail_over(alias, msgs)`: the engine's hand-over of messages this provider never received to its
        failover provider (False when that one cannot take them now)."""
        provider, share = config.provider, config.share
        self.alias = config.alias
        self.provider = provider
        self.channel = config.channel
        self.ledger = ledger
        self.stats = ledger.stats
        self.events = events
        self._transports = transports
        self._flags = flags
        self._hand_over = fail_over
        self._policy = Policy(config.alias, provider.settings.max_attempts, config.spent_retries)
        s = provider.settings
        self.concurrency = max(1, int((s.concurrency or provider.default_concurrency) * share))
        self.limit = RateLimit(provider.rate)
        if share != 1.0:
            self.limit.set_share(share)
        self.circuit = Circuit(s.circuit_failures, s.circuit_cooldown, s.give_up_after)
        self._failure = "no answer from the provider"  # what the last failed request met: the circuit's reason
        self.batcher = Batcher(provider)
        self._queue = LaneQueue()  # urgent batches first (by priority), then in order, stop signals last
        self._waiting: dict[asyncio.TimerHandle, list[Message]] = {}
        self._held = 0  # batches a sender took from the queue and has not settled (on the wire, or waiting a slot)
        self._halted: Outcome | None = None
        self._transport: Transport | None = None
        self._senders: list[asyncio.Task[None]] = []
        self._auth_lock = asyncio.Lock()
        self._auth_generation = 0
        self.requests = 0
        self.retries = 0
        self._last_error: tuple[str | None, str | None, float] | None = None  # (code, text, epoch seconds)
        self._on_wire = 0
        self._state: tuple[str, str | None, str | None] = (SENDING, None, None)
        self._since = time.time()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, spawn: Spawn = unowned) -> None:
        """Authenticate, then start the senders (as tasks `spawn` starts: the engine's, which owns them)."""
        self._transport = self._transports(self.alias, self.concurrency, self.provider.settings.timeout)
        try:
            await self.limit.acquire()  # a token exchange is a request the provider counts
            await self.provider.authenticate(self._transport.session)  # type: ignore[arg-type]
        except Exception as e:  # the provider is unusable for now: its records are deferred, saying why
            self._halt(Outcome(Verdict.HALT, code="auth", error=f"authentication failed: {describe(e)}"))
        self._senders = [spawn(self._sender(i), f"{self.alias} sender {i}") for i in range(self.concurrency)]

    async def stop(self) -> None:
        """Let the senders finish what they hold, then close the pooled connections."""
        for _ in self._senders:
            self._queue.signal_stop()
        await asyncio.gather(*self._senders, return_exceptions=True)
        await self.close()

    def cancel(self) -> None:
        """Abandon the requests on the wire (a second signal): the senders stop where they are."""
        for sender in self._senders:
            sender.cancel()

    async def close(self) -> None:
        """Close the pooled connections now (after an abandon, requests on the wire are cut)."""
        if self._transport is not None:
            await self._transport.close()

    @property
    def halted(self) -> Outcome | None:
        """Why the lane cannot send now, or None."""
        return self._halted

    async def revive(self) -> bool:
        """Try a halted provider again: authenticate (a request it counts); on success it takes messages."""
        if self._halted is None:
            return True
        try:
            await self.limit.acquire()
            await self.provider.authenticate(self._transport.session if self._transport else None)  # type: ignore[arg-type]
        except Exception:
            return False
        self._halted = None
        self.circuit.reset()
        self.events.revived(self.alias)
        return True

    def soon(self, horizon: float) -> float:
        """Messages this lane can put on the wire within `horizon` seconds at its current pace, with the
        requests on the wire now (unlimited rate: no bound). Not its sender count: at 1 request/s, eight
        senders each holding a message while they wait for a slot are eight seconds of sending."""
        pace = self.limit.current
        if pace <= 0:
            return float("inf")
        return (pace * horizon + self._on_wire) * max(1, self.provider.batch_size)

    @property
    def urgent_waiting(self) -> int:
        """Messages of priority > 0 queued, not yet taken by a sender: what urgent claims are sized by
        (they overtake every message of lower priority here, which therefore takes none of their slots)."""
        return self._queue.urgent

    def set_share(self, share: float) -> None:
        """This process's part of the provider's rate (daemon workers split it between them)."""
        self.limit.set_share(share)

    def status(self) -> LaneStatus:
        if self._halted is not None:
            now = (HALTED, self._halted.code, self._halted.error)
        elif self.circuit.is_open:
            now = (CIRCUIT_OPEN, None, f"{self._failure}: paused")
        elif self.limit.paused:
            now = (THROTTLED, "429", "waiting on the provider's Retry-After")
        elif self.limit.current < self.limit.ceiling:
            now = (THROTTLED, "429", "the provider answered 429: pace lowered")
        else:
            now = (SENDING, None, None)
        if now != self._state:
            self._state, self._since = now, time.time()
        last = self._last_error or (None, None, None)
        return LaneStatus(self.alias, self.provider.kind, self.channel, now[0], self._since, now[1], now[2],
                          self.provider.rate, self.limit.current, self.requests, self.limit.throttled, self._on_wire,
                          self.retries, *last)

    # -- batching -------------------------------------------------------------------------
    def add(self, msgs: Sequence[Message]) -> None:
        if self._halted is not None:
            self.ledger.defer(self.alias, msgs, self._halted)
            return
        if type(msgs) is not Batch and any(m.priority > 0 for m in msgs):
            msgs = self._add_urgent(msgs)
        put = self._queue.put
        for batch in self.batcher.add(msgs):
            put(batch)

    def _add_urgent(self, msgs: Sequence[Message]) -> list[Message]:
        """Messages of priority > 0 go into requests of their own at once, ahead of every batch not yet on
        the wire (higher priority first); they never wait for a batch to fill. Returns the others."""
        levels: dict[int, list[Message]] = {}
        rest = []
        for m in msgs:
            if m.priority > 0:
                levels.setdefault(m.priority, []).append(m)
            else:
                rest.append(m)
        for priority, urgent in levels.items():
            self._put_now(urgent, -priority)
        return rest

    def flush(self) -> None:
        """Partial batches go out now (the source is done, or the engine is at its in-flight limit)."""
        for batch in self.batcher.flush():
            self._queue.put(batch)

    @property
    def busy(self) -> bool:
        """Something this lane holds will settle soon without a flush: a batch queued or held by a sender (on
        the wire or waiting on the limiter; a retry waiting its backoff may take long, so it does not count).
        While it is, records in flight will leave and open groups may wait for more to fill them."""
        return self._held > 0 or self._queue.waiting

    def flush_if_idle(self) -> bool:
        """Partial batches go out when nothing else is queued; True when some still wait for that."""
        if not self.batcher.open:
            return False
        if self._queue.qsize() == 0:
            self.flush()
            return False
        return True

    def _requeue(self, msgs: list[Message], handle: asyncio.TimerHandle | None = None) -> None:
        if handle is not None:
            self._waiting.pop(handle, None)
        self.take_over(msgs)

    def take_over(self, msgs: Sequence[Message]) -> None:
        """Messages sent before (a retry, a failover) go out at once in batches of their own: they do not wait
        for fresh records, and the open groups keep filling."""
        if self._halted is not None:
            self.ledger.defer(self.alias, msgs, self._halted)
        else:
            self._put_now(msgs)

    def _put_now(self, msgs: Sequence[Message], rank: float = 0) -> int:
        """`msgs` in requests of their own, queued now (short as they may be); how many requests."""
        batches = (cut := Batcher(self.provider)).add(msgs) + cut.flush()
        for batch in batches:
            self._queue.put(batch, rank)
        return len(batches)

    def withdraw(self, unwanted: Callable[[Message], bool]) -> list[Message]:
        """The messages `unwanted` picks among those not on the wire (open groups, queued batches, batches
        senders hold while they wait for a slot, which they drop when they get it), out of the lane unsent,
        for the caller to settle: the daemon takes back a paused or cancelled campaign's rows. Messages
        waiting for a retry stay: they have been on the wire."""
        out = self._queue.withdraw(unwanted)
        for group in self.batcher.flush():
            kept, gone = split(group, unwanted)
            out += gone
            for batch in self.batcher.add(kept):  # none comes out full (it was open), unless regrouped
                self._queue.put(batch)
        return out

    def abandon(self) -> None:
        """A stop: everything not on the wire leaves unsent (a resume sends it)."""
        self._release(self.ledger.leave)

    def _release(self, settle: Callable[[list[Message]], None]) -> None:
        """Everything the lane holds and has not sent (waiting retries, open groups, queued batches) into
        `settle`, keeping the senders' stop signals (a stop may come while the lane itself stops)."""
        waiting, self._waiting = list(self._waiting.items()), {}
        for handle, msgs in waiting:
            handle.cancel()
            settle(msgs)
        for g in self.batcher.flush():
            settle(g)
        for b in self._queue.drain():
            settle(b)

    # -- halting ------------------------------------------------------------------------------
    def _halt(self, why: Outcome) -> None:
        """The provider cannot take anything now: defer everything this lane holds, and all that comes."""
        if self._halted is not None:
            return
        self._halted = why
        self.events.halted(self.alias, why)
        self._release(lambda msgs: self.ledger.defer(self.alias, msgs, why))

    # -- sending --------------------------------------------------------------------------
    async def _sender(self, me: int) -> None:
        provider = self.provider
        queue = self._queue
        while True:
            rank, batch = await queue.get()
            if batch is None:
                return
            self._held += 1
            queue.hold(me, batch, rank)
            try:
                await self._take(provider, batch, rank, me)
            finally:
                self._held -= 1
                queue.let_go(me)

    async def _take(self, provider: Provider, batch: Sequence[Message], rank: float, me: int) -> None:
        """One batch from the queue: sent, or settled without a request (stopping, halted, failed over).
        Until it goes on the wire, the queue holds it for `me`: a withdrawal may take messages out."""
        queue = self._queue
        if self._flags.stopping:
            self.ledger.leave(batch)
            return
        if self._halted is not None:
            self.ledger.defer(self.alias, batch, self._halted)
            return
        if self.circuit.is_open:
            batch = self._fail_over(batch)
            if not batch:
                return
            queue.hold(me, batch, rank)
            await asyncio.sleep(max(0.0, self.circuit.open_until - time.monotonic()))
            batch = queue.held(me)
            if self.circuit.exhausted:
                why = Outcome(Verdict.HALT, code="unreachable",
                              error=f"{self._failure} for {self.circuit.open_total:.0f} s of open circuit")
                self._halt(why)  # a no-op when another sender halted the lane first: its reason stands
                self.ledger.defer(self.alias, batch, self._halted or why)
                return
        slot = await self.limit.acquire()
        batch, rank = queue.overtaken(me)
        if not batch:  # all of it withdrawn while this sender waited, and nothing else to send
            return
        if self._flags.stopping:
            self.ledger.leave(batch)
            return
        if self._halted is not None:  # halted while this sender waited for the limiter
            self.ledger.defer(self.alias, batch, self._halted)
            return
        await self._send(provider, batch, slot)

    async def _send(self, provider: Provider, batch: Sequence[Message], slot: float) -> None:
        if type(batch) is Batch and batch.fresh:
            batch.attempts += 1
        else:
            for m in batch:
                m.attempts += 1
        try:
            req = provider.build(batch)
        except Exception as e:  # a bug or bad data in one batch must not stop the run
            o = Outcome(Verdict.FAILED, code="build_error", error=f"could not build the request: {type(e).__name__}: {e}")
            self._settle(batch, [o] * len(batch), 0, 0.0, False)
            return
        self.ledger.journal.sending(column(batch, "seq"))
        self.stats.requests += 1
        self.requests += 1
        self._on_wire += 1
        generation = self._auth_generation
        t0 = time.monotonic()
        status = 0
        unsure = False
        try:
            assert self._transport is not None
            status, headers, body, left = await self._transport.send(req)
            self.limit.left_at(slot, left, time.monotonic())
            outcomes = provider.parse(batch, status, headers, body)
            if type(outcomes) is Accepted and len(outcomes.message_ids) != len(batch):
                raise ValueError(f"{len(outcomes.message_ids)} ids for a batch of {len(batch)}")
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            status = 0
            unsure = ambiguous(e)
            outcomes = [transport_outcome(e, describe(e))] * len(batch)  # "unreachable": the provider, not the record
        except Exception as e:  # a parse bug: the answer is unknown, so treat it as in doubt
            unsure = True
            outcomes = [Outcome(Verdict.FAILED, code="parse_error",
                                error=f"could not read the answer: {type(e).__name__}")] * len(batch)
        finally:
            self._on_wire -= 1
        latency = (time.monotonic() - t0) * 1000
        self.circuit.record(0 < status < 500)
        if not 0 < status < 500:
            self._failure = f"the provider answered HTTP {status}" if status else outcomes[0].error or "no answer"
        if type(outcomes) is Accepted:  # settled at once, without a coroutine for the common answer
            self._accepted(batch, outcomes, latency)
            return
        await self._after(batch, outcomes, status, latency, unsure, generation)

    async def _after(self, batch: Sequence[Message], outcomes: list[Outcome], status: int, latency: float,
                     unsure: bool, generation: int) -> None:
        if status == 429 or any(o.code == "429" for o in outcomes[:1]):
            self.limit.on_throttled(outcomes[0].retry_after if outcomes else None)
            self.stats.throttled += 1
        bad = next((o for o in outcomes if o.verdict != Verdict.SENT), None)
        if bad is not None:
            self._last_error = (bad.code, bad.error, time.time())
        retry = self._settle(batch, outcomes, status, latency, unsure)
        if not retry:
            return
        if self._flags.stopping:  # no more attempts: a resume sends these
            self.ledger.leave([m for m, _ in retry])
            return
        if self._halted is not None:
            self.ledger.defer(self.alias, [m for m, _ in retry], self._halted)
            return
        reauth = [m for m, o in retry if o.verdict == Verdict.REAUTH]
        if reauth:
            async with self._auth_lock:
                if generation == self._auth_generation:
                    try:
                        assert self._transport is not None
                        await self.provider.authenticate(self._transport.session)  # type: ignore[arg-type]
                        self._auth_generation += 1
                    except Exception as e:
                        self._halt(Outcome(Verdict.HALT, code="auth", error=f"authentication failed: {describe(e)}"))
            self._requeue(reauth)
        later = [(m, o) for m, o in retry if o.verdict == Verdict.RETRY]
        if later:
            s = self.provider.settings
            wait = max(backoff(m.attempts, s.backoff_base, s.backoff_max, o.retry_after) for m, o in later)
            msgs = [m for m, _ in later]
            self.stats.retries += 1  # one request retried (for its `retried` records)
            self.stats.retried += len(msgs)
            self.retries += len(msgs)
            if unsure:
                self.stats.ambiguous += len(msgs)
            loop = asyncio.get_running_loop()
            handle = loop.call_later(wait, lambda: self._requeue(msgs, handle))
            self._waiting[handle] = msgs

    def _accepted(self, batch: Sequence[Message], a: Accepted, latency: float) -> None:
        """Every message of the batch accepted: one block of `sent` results from the batch's columns (a row
        for a batch of one, which the ledger joins with the turn's other rows)."""
        n = len(batch)
        if n == 1:
            m = batch[0]
            self.ledger.finish_sent(ResultRow(
                seq=m.seq, id=m.rid, to=m.to, provider=self.alias, status=SENT, message_id=a.message_ids[0],
                parts=m.parts or None, encoding=m.encoding or None, attempts=m.attempts,
                latency_ms=round(latency, 2), trace_id=a.trace_id, channel=self.channel,
                transliterated=m.transliterated, meta=message_meta(m, None)))
            return
        seq, rid, to, parts, enc, translit = (column(batch, f) for f in
                                              ("seq", "rid", "to", "parts", "encoding", "transliterated"))
        nothing = [None] * n
        if type(batch) is Batch and batch.fresh:  # one state for all: no message of its own to read
            attempts, meta = [batch.attempts] * n, nothing
        else:
            attempts = [m.attempts for m in batch]
            meta = [message_meta(m, None) for m in batch] if any([m.ambiguous or m.in_doubt or m.failover_from for m in batch]) else nothing
        channel = [self.channel] * n  # a lane carries one channel
        if 0 in parts:
            parts = [p or None for p in parts]
        if "" in enc:
            enc = [e or None for e in enc]
        self.ledger.finish(Results.of_columns(
            seq=seq, id=rid, to=to, provider=[self.alias] * n, status=[SENT] * n, message_id=a.message_ids,
            parts=parts, encoding=enc, code=nothing, error=nothing, attempts=attempts,
            latency_ms=[round(latency, 2)] * n, trace_id=[a.trace_id] * n, channel=channel, transliterated=translit,
            meta=meta))

    def _settle(self, batch: Sequence[Message], outcomes: list[Outcome], status: int, latency: float,
                unsure: bool) -> list[tuple[Message, Outcome]]:
        """Turn outcomes into results or deferrals (engine/settle.py decides); return what must be tried again."""
        s = settle(batch, outcomes, self._policy, latency_ms=round(latency, 2) if status else None, unsure=unsure)
        self.ledger.finish(Results.of(s.results))
        if s.spent and s.last_retry is not None:
            self.ledger.defer(self.alias, s.spent, s.last_retry)
        if s.halt is not None:
            self._halt(s.halt)
            self.ledger.defer(self.alias, s.halted, s.halt)
        return s.retry

    def _fail_over(self, batch: Sequence[Message]) -> Sequence[Message]:
        """Hand to the failover provider what this one never received; keep what it may hold."""
        moving = [m for m in batch if not m.ambiguous]
        if not moving or self._hand_over is None or not self._hand_over(self.alias, moving):
            return batch
        return [m for m in batch if m.ambiguous]
