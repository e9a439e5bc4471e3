"""The streaming engine: source -> prepare (render, normalise, encode) -> lanes (batch, pace, send) -> sinks.

Work moves in chunks. A bounded number of records is in flight (read but not yet settled);
when the bound is reached the reader waits, so a slow provider slows the source and memory
stays flat. The Ledger settles every record exactly once; each provider alias has a Lane.
The engine never names a provider, and its owner (the blast CLI, the daemon) drives it only
through its public methods and hears from it through `Events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import RunError
from ..model import FAILED, Chunk, Message, Result, Results, column
from ..providers.base import Outcome
from ..state import RunState, SeqSet
from ..tasks import Tasks
from .lane import Lane, LaneConfig, RunFlags
from .ledger import Events, Ledger, Stats
from .prepare import Preparer
from .spec import RunSpec
from .status import LaneStatus
from .transport import TransportFactory, http_transport

LINGER = 0.01  # seconds between two looks, while the reader waits for room, at whether any lane is still busy


@dataclass(slots=True)
class Start:
    """What a run found before its first record was read (`Engine.begin`): records already finished,
    the only ones a retry may send, the ones in doubt. A worker forked after `begin` starts from it."""

    done: SeqSet
    only: SeqSet | None
    in_doubt: SeqSet


@contextlib.contextmanager
def collector_for_streams() -> Iterator[None]:
    """The cyclic garbage collector tuned for a stream of short-lived chunks: what exists before the run
    (modules, compiled kernels, settings) is frozen out of its scans, and young collections run every
    50,000 allocations instead of 700. With the defaults, the collector's scans of the messages in flight
    took a third of a batched run's time (79k against 110k msg/s, 200k recipients, 360nrs, measured).
    Cycles are still collected; the settings are put back after the run. Public: the benchmarks read a
    source under it (both sides of a comparison), as the engine does."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def counts(st: Stats, *, interrupted: bool, halted_all: bool) -> dict[str, Any]:
    """What the manifest notes of an attempt: a run's, or the sum of its workers'."""
    return {"read": st.read, "skipped": st.skipped, "sent": st.sent, "failed": st.failed,
            "rejected": st.rejected, "deferred": st.deferred, "unsent": st.unsent, "in_doubt": st.in_doubt,
            "requests": st.requests, "interrupted": interrupted, "halted_all": halted_all,
            "halts": {a: list(w) for a, w in st.halts.items()}}


def identity(spec: RunSpec, preparer: Preparer) -> dict[str, Any]:
    """What a run is a run of: its source, and the digest of its messages and providers (the preparer's). A
    resume with another source or another message would pair old results with new records: refused."""
    return {"source": spec.source.identity(), "message": preparer.digest()}


class Engine:
    def __init__(self, campaign: RunSpec, *, preparer: Preparer, events: Events | None = None,
                 transports: TransportFactory = http_transport,
                 on_progress: Callable[[Engine], None] | None = None) -> None:
        self.c = campaign
        self.stats = Stats()
        self.events = events or Events()
        self.state = RunState(campaign.state_dir, campaign.run_id)
        self.ledger = Ledger(self.stats, self.state, self.events)
        self.preparer = preparer
        self.flags = RunFlags()  # the stop its lanes read
        self.interrupted = False
        self.halted_all = False  # reading stopped because every provider halted
        self.running = False  # sinks, source and journal are open: a failure from now on is mid-run
        self._lanes: dict[str, Lane] = {}
        self.tasks = Tasks()  # the writer, the progress sampler and the lanes' senders
        self._transports = transports
        self._on_progress = on_progress
        self.in_doubt: SeqSet = SeqSet()

    # -- what the owner may ask and do --------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self.ledger.in_flight

    def room(self) -> int:
        """How many more records may enter now."""
        return self.ledger.room_for()

    def soon(self, horizon: float) -> float:
        """Messages the lanes can put on the wire within `horizon` seconds: what a source that claims
        work (the daemon's outbox) should hold in flight at most, so that nothing claimed waits long
        and a later, more urgent message is claimed soon."""
        return sum(lane.soon(horizon) for lane in self._lanes.values()) if self._lanes else float("inf")

    def urgent_waiting(self) -> int:
        """Messages of priority > 0 queued in the lanes, not yet taken by a lane's sender: a source sizes its
        claims of urgent work by these (lower-priority messages in flight take none of their slots)."""
        return sum(lane.urgent_waiting for lane in self._lanes.values())

    def withdraw(self, unwanted: Callable[[Message], bool]) -> list[Message]:
        """The messages `unwanted` picks among those not on the wire (nor waiting for a retry), out of every
        lane, settled with no result (as a stop leaves them: `Ledger.leave`) and returned: their owner takes
        them back (the daemon: the rows of a paused or cancelled campaign)."""
        out: list[Message] = []
        for lane in self._lanes.values():
            out += lane.withdraw(unwanted)
        self.ledger.leave(out)
        return out

    def snapshot(self) -> list[LaneStatus]:
        """Every lane's state now: what progress, health and metrics read (never a Lane itself)."""
        return [lane.status() for lane in self._lanes.values()]

    def halted(self) -> dict[str, Outcome]:
        """Providers that cannot take anything now, and why."""
        return {a: lane.halted for a, lane in self._lanes.items() if lane.halted is not None}

    async def revive(self, alias: str) -> bool:
        """Try a halted provider again (the daemon's probe, or a command); True once it takes messages."""
        lane = self._lanes.get(alias)
        return True if lane is None else await lane.revive()

    def flush_idle(self) -> bool:
        """Partial batches go out on lanes with nothing queued; True while some still wait."""
        waiting = False
        for lane in self._lanes.values():
            waiting = lane.flush_if_idle() or waiting
        return waiting

    def set_share(self, share: float) -> None:
        """This process's part of every provider's rate."""
        for lane in self._lanes.values():
            lane.set_share(share)

    @property
    def stopping(self) -> bool:
        """A stop came: nothing more is read or put on the wire."""
        return self.flags.stopping

    def _fail_over(self, alias: str, msgs: list[Message]) -> bool:
        """Hand `msgs` (which `alias`'s provider never received) to its failover provider, as fresh messages
        of that lane; False when there is none, or it cannot take them now (halted, its circuit open)."""
        other = self._lanes.get(self._lanes[alias].provider.settings.failover)
        if other is None or other.halted is not None or other.circuit.is_open:
            return False
        for m in msgs:
            m.failover_from = alias
            m.attempts = 0
        other.take_over(msgs)
        return True

    def stop(self) -> None:
        """First Ctrl-C / SIGTERM: stop reading, let requests on the wire settle; the rest is left for a resume."""
        if self.stopping:
            return
        self.flags.stopping = True
        self.interrupted = True
        self.ledger.close_source()
        for lane in self._lanes.values():
            lane.abandon()
        self.ledger.wake()

    def abandon(self) -> None:
        """Second Ctrl-C / SIGTERM: give up the requests on the wire. Their records get no result (in doubt
        for a resume); everything settled so far still reaches the sinks and the run ends as a stopped one."""
        self.stop()
        for lane in self._lanes.values():
            lane.cancel()
        self.ledger.abandon()

    async def close(self) -> None:
        """After an abandoned run (its task cancelled): close every pooled session."""
        for lane in self._lanes.values():
            await lane.close()

    # -- the run ------------------------------------------------------------------------------
    def _default_limit(self) -> int:
        """Records in flight before the reader waits: what the lanes hold on the wire and a chunk more, which
        is being read and fills the next batches meanwhile. Records read further ahead just wait, and their
        memory is what the requests on the wire then miss in the CPU's caches: 360nrs, one a request, 64 in
        flight, fast upstream: 123 against 145 us of CPU a request at 512 in flight against 8,192; 1000 a
        request, 4 in flight: 3.05 against 3.27 us a message at 6,048 against 8,192 (medians of 5 paired
        runs). Batches still go full: a short one leaves only when no lane has a request on the wire
        (Engine._room), which open groups alone bring about only when they hold more than the limit."""
        lanes = self._lanes.values()
        need = sum(lane.concurrency * lane.provider.batch_size for lane in lanes)
        if all(lane.provider.batch_size == 1 for lane in lanes):
            return max(self.c.chunk_size // 4, 2 * need)
        return max(self.c.chunk_size * 2, min(need + self.c.chunk_size, 200_000))

    async def _resume_point(self) -> SeqSet:
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

    async def _only(self, ident: dict[str, Any]) -> SeqSet | None:
        """With `retry_of`: the records that run failed, and no others (checked to be the same audience)."""
        c = self.c
        if c.retry_of is None:
            return None
        old, sink = c.retry_of
        earlier = RunState(c.state_dir, old)
        if not earlier.exists:
            raise RunError(f"unknown run id '{old}': no run of that name under {c.state_dir}")
        was = earlier.source_identity()
        if was is not None and was != ident["source"] and not c.allow_changed:
            raise RunError(f"run '{old}' was a run of another source: its failed records cannot be matched to "
                           f"this one (pass --allow-changed if it is the same audience)")
        failed = SeqSet()
        try:
            failed.update(await sink.failed())
        finally:
            await sink.close()
        if not len(failed):
            raise RunError(f"run '{old}' has no failed records to retry (rejected records are bad input: "
                           f"fix the source and start a new run)")
        return failed

    async def run(self) -> Stats:
        """The whole run in this process: `begin`, `send`, `end`."""
        start = await self.begin()
        try:
            failure = await self.send(start)
            await self.end(self.counts())
        finally:
            self.state.close()  # the journal closed, the run's lock let go
        if failure is not None:
            raise failure
        return self.stats

    async def begin(self) -> Start:
        """Everything before the first record is read: the run taken (its lock), the attempt noted in its
        manifest, the sinks opened, what an earlier attempt finished read back. Raises RunError,
        SinkError; on failure the lock is let go, else `end` or `state.close()` lets it go."""
        c = self.c
        ident = identity(c, self.preparer)
        only = await self._only(ident)
        self.state.lock()  # before anything of the run is read or written: one process runs a run at a time
        try:
            self.state.begin(ident, allow_changed=c.allow_changed, retry_of=c.retry_of[0] if c.retry_of else None,
                             origin=c.origin)
            for sink in c.sinks:
                await sink.open(resume=self.state.resuming)
            done = await self._resume_point()
        except BaseException:
            self.state.close()
            raise
        return Start(done, only, self.in_doubt)

    async def send(self, start: Start, worker: int | None = None) -> Exception | None:
        """Read, send and write from `start` until every record has left; the source's failure, if it
        failed mid-run. `worker` K: this process is one of a run's workers (its first process holds the
        lock and opened the sinks), keeping journal K."""
        c = self.c
        self.in_doubt = start.in_doubt
        self.state.open(worker)
        self.running = True
        ledger = self.ledger
        for alias, provider in c.providers.items():
            config = LaneConfig(alias, provider, c.channels[alias], share=c.share,
                                spent_retries="defer" if c.defer_transient else "fail")
            self._lanes[alias] = Lane(config, ledger, self.events, self._transports, self.flags, self._fail_over)
        ledger.limit = int(c.max_in_flight * c.share) or self._default_limit()
        for lane in self._lanes.values():
            await lane.start(self.tasks.spawner(on_failure=self.abandon))
        self.preparer.warm_up()  # loads the compiled kernels (from the disk cache) before the clock starts
        with collector_for_streams():
            failure = await self._stream(start.done, start.only)
        return failure

    async def close_sinks(self) -> None:
        """This process's hold on the sinks let go (a worker's copies, or the run's own)."""
        for sink in self.c.sinks:
            await sink.close()

    async def end(self, counts: dict[str, Any]) -> None:
        """The sinks closed, the attempt's counts noted in the manifest, the journal closed and the run
        let go."""
        await self.close_sinks()
        self.state.end(counts)
        self.state.close()

    async def _stream(self, done: SeqSet, only: SeqSet | None) -> Exception | None:
        """Read, send and write until every record has left; the source's failure, if it failed mid-run, else
        a task's (a sender's, the progress sampler's; the writer's is raised). Its tasks end with it."""
        self.stats.started = time.monotonic()
        try:
            writer = self.tasks.start(self._writer(), "writer", on_failure=self.stop)
            self.tasks.start(self._progress(), "progress", on_failure=self.stop)
            failure = await self._send_all(done, only)
            await writer
        finally:
            await self.tasks.close()  # the progress sampler; on a cancelled run, everything still running
        self.stats.timeline.append((round(time.monotonic() - self.stats.started, 2), self.stats.done,
                                    self.stats.requests))
        return failure or self.tasks.failure

    async def _send_all(self, done: SeqSet, only: SeqSet | None) -> Exception | None:
        """Read until the source ends (or a stop), then let every record leave and the lanes' senders end."""
        c = self.c
        ledger = self.ledger
        failure: Exception | None = None
        try:
            await self._read(done, only)
        except Exception as e:  # the source failed mid-run: settle and record what is on the wire first
            failure = e
            self.stop()
        finally:
            await c.source.close()
        if not self.stopping:
            for lane in self._lanes.values():
                lane.flush()
        ledger.close_source()
        await ledger.drained()
        for lane in self._lanes.values():
            await lane.stop()
        return failure

    async def _read(self, done: SeqSet, only: SeqSet | None) -> None:
        c = self.c
        ledger = self.ledger
        stats = self.stats
        hold = c.on_doubt == "hold"

        def skip(seq: int) -> bool:
            if seq in done or (only is not None and seq not in only):
                stats.skipped += 1
                return True
            return False

        wanted = skip if len(done) or only is not None else None
        # a part only for a source that splits (config checks it): the others keep the one-argument form
        chunks = c.source.chunks(wanted) if c.part is None else c.source.chunks(wanted, c.part)
        async for records, bad in chunks:
            if self.stopping:
                break
            stats.read += len(records) + len(bad)
            ledger.enter(len(records) + len(bad))
            ledger.finish(Results.of(bad))
            if len(self.in_doubt):
                records = self._doubts(records, hold)
            by_lane, rejects = self.preparer.prepare(records)
            ledger.finish(Results.of(rejects))
            doubt = self.in_doubt if len(self.in_doubt) else None
            for alias, msgs in by_lane.items():
                if not msgs:
                    continue
                if doubt is not None and any([s in doubt for s in column(msgs, "seq")]):
                    for m in msgs:
                        if m.seq in doubt:
                            m.in_doubt = True
                self._lanes[alias].add(msgs)
            if c.stop_when_halted and self._lanes and all(lane.halted is not None for lane in self._lanes.values()):
                self.halted_all = True  # nothing can be sent: the rest stays unread, for a resume
                break
            if ledger.full:
                await self._room()

    async def _room(self) -> None:
        """Wait until more records may enter. Open groups keep filling meanwhile: requests go full (a provider
        that counts requests loses time on every short one). They go short only when nothing else in flight can
        settle, and so free room: then the records they hold are all there is."""
        ledger = self.ledger
        lanes = self._lanes.values()
        while ledger.full:
            if not any(lane.busy for lane in lanes):
                for lane in lanes:
                    lane.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ledger.room(), LINGER)

    def _doubts(self, rows: Chunk, hold: bool) -> Chunk:
        """`on_doubt = "hold"`: records in flight when an earlier attempt died fail as in doubt, unsent."""
        if not hold:
            return rows
        doubt = self.in_doubt
        held = [i for i, seq in enumerate(rows.seq) if seq in doubt]
        if not held:
            return rows
        self.ledger.finish(Results.of([self._held(rows.seq[i], rows.fields(i)) for i in held]))
        return rows.take([i for i, seq in enumerate(rows.seq) if seq not in doubt])

    def _held(self, seq: int, fields: dict[str, Any]) -> Result:
        rid, to = self.preparer.describe(seq, fields)
        return Result(seq=seq, id=rid, to=to, provider="", status=FAILED, code="in_doubt",
                      error="in flight when an earlier attempt of this run died: the provider may have it; "
                            "not resent (on_doubt = \"hold\")", meta={"in_doubt": True})

    def counts(self) -> dict[str, Any]:
        return counts(self.stats, interrupted=self.interrupted, halted_all=self.halted_all)

    async def _writer(self) -> None:
        """Results reach the sinks one loop turn after they exist, so a SIGKILL leaves few in doubt."""
        while True:
            chunk = await self.ledger.results()
            if not chunk:
                return
            # Results that cannot be recorded must not be sent: a failing write stops the run (its task's
            # policy, see _stream), so a resume finds these records without results and handles them (in doubt).
            for sink in self.c.sinks:
                await sink.write(chunk)

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
