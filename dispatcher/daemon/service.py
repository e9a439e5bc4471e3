"""The daemon: the outbox Source and Sink on an Engine, heartbeats, the report receiver, health and metrics.

Start: connect, migrate, bind the HTTP port (reports, /healthz, /metrics), point the
providers' callback URLs at it, register the worker, LISTEN, start the engine. Stop
(SIGTERM, SIGINT, or `stop()`): stop claiming, let the requests on the wire settle and
their results be written, put the unfinished claims back to pending, leave the worker
table, close. A second signal, or `stop_timeout` seconds, abandons what is still on the
wire (its rows go back to pending too: the provider may hold some of them, which a resend
duplicates, as after a crash).

Its long-lived tasks have one owner, `self.tasks` (tasks.Tasks), given to each component's `start`; what
a failing one does is said where it starts. The engine, the heartbeat and the reports writer: the daemon
stops (gracefully) as failed (`wait` returns 1: exit 2), the failure logged with the task's name and
traceback, because it cannot work safely on without them (a supervisor restarts the process). The upkeep
jobs, the health monitor, webhooks, the report rematcher, the listener, revive and withdrawal: logged and
restarted with backoff, because each is a loop that must outlive a bug in itself and the daemon works on
meanwhile. A stop ends every one of them: none outlives the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client.core import Metric

from .. import pg
from ..engine import Encoder, Engine, Events, RunSpec
from ..pg import PG_ERRORS, explain
from ..providers.base import Outcome, Provider, Verdict
from ..tasks import Tasks, cancel, nothing
from . import delivery_reports, metrics, page
from .api import MAX_BODY, Api
from .campaigns import Control
from .config import DaemonConfig
from .database import Database
from .health import Monitor
from .heartbeat import WorkerNameInUse, WorkerRegistry
from .maintenance import Maintenance
from .outbox import (
    EVENTS_CHANNEL,
    OutboxQueries,
    OutboxSink,
    OutboxSource,
    RowsPreparer,
    RowValidator,
    TableNames,
    init_connection,
)
from .problems import problems
from .views import Throughput, Views
from .webhooks import Webhooks
from .withdrawal import Withdrawal

log = logging.getLogger("dispatcher.daemon")
HALT_PROBE = 60.0  # seconds between attempts to revive a provider that halted (credentials, credit)


class Daemon:
    """Built whole from its config in `__init__` (River's NewClient): providers, the one row validator the
    source and the API share, the sink with its listeners, the source, the engine, the heartbeat, the upkeep,
    the HTTP routes. Nothing there opens anything: `start()` opens the pool (`Database.open`), binds the
    port, points the providers' callbacks at it, registers the worker and starts the tasks."""

    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        self.names = TableNames(cfg.table)
        self.store = OutboxQueries(cfg, self.names)
        self.db = Database(cfg.dsn)
        self.listener: asyncpg.Connection | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.stopping = False
        self.running = False
        self.abandon = False
        self._stop_requested = False
        self._registered = False
        self.released = 0
        self._stop = asyncio.Event()  # set by a stop, a fatal failure or the engine's end: what `wait` waits on
        self.tasks = Tasks()  # every long-lived task of the daemon, its components' too
        self.failed: list[str] = []  # the tasks whose failure stops the daemon (`wait` returns 1), as they failed
        self._tasks: list[asyncio.Task[None]] = []
        self._engine_task: asyncio.Task[None] | None = None
        db, store = self.db, self.store
        self.providers: dict[str, Provider] = {alias: spec.build() for alias, spec in cfg.providers.items()}
        validator = RowValidator(cfg, self.providers)  # the claim path's and the API's
        self.reports = delivery_reports.ReportStore(cfg, db, self.names)
        self.webhooks = Webhooks(cfg, cfg.webhooks, db, self.names) if cfg.webhooks else None
        self.throughput = Throughput(lambda: self.sink.results) if cfg.api_key else None
        listeners = [self.reports.poke]  # told when results are written
        if self.webhooks is not None:
            listeners.append(self.webhooks.notify)
        if self.throughput is not None:
            listeners.append(self.throughput.note)
        self.sink = OutboxSink(cfg, db, store, on_write=listeners, on_fatal=[self.stop])
        self.source = OutboxSource(cfg, db, store, validator, ready=self._may_claim)
        self.engine = self._engine()
        self.registry = WorkerRegistry(cfg, db, store, self.engine)
        self.maintenance = Maintenance(cfg, db, store)
        self.withdrawal = Withdrawal(cfg, db, store, self.source, self.engine)
        self.monitor = Monitor(self.engine.snapshot, lambda: self.sink.results, stats_every=cfg.stats_every)
        self.control = Control(cfg, db, store) if cfg.api_key else None
        self.api = (Api(cfg, db, self.names, validator, listing=self.control.list_messages)
                    if self.control is not None else None)
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[problems])
        self.app.add_routes(self._routes())

    def _engine(self) -> Engine:
        """The engine on the outbox: the source feeds it and sizes its claims by its free slots (attached)."""
        cfg = self.cfg
        channels = {alias: spec.channel for alias, spec in cfg.providers.items()}
        spec = RunSpec(
            run_id=f"daemon-{cfg.worker}", source=self.source, sinks=[self.sink], providers=self.providers,
            channels=channels, chunk_size=cfg.claim, max_in_flight=cfg.max_in_flight, state_dir=None,
            stop_when_halted=False, defer_transient=True)
        encoder = Encoder(self.providers, gsm_pt=cfg.gsm_pt, transliterate=cfg.transliterate)
        self.preparer = RowsPreparer(encoder, channels)
        engine = Engine(spec, preparer=self.preparer, events=EngineEvents(self.source, changed=self._lanes_changed))
        self.source.attach(engine)  # the two refer to each other: the engine reads the source, which asks its room
        return engine

    def _may_claim(self) -> bool:
        """The source's `ready`: past the joining wait, and heartbeats answered (WorkerRegistry.ready)."""
        return self.registry.ready()

    def _lanes_changed(self) -> None:
        """A provider halted or came back: the health monitor looks at the lanes at once (and logs the change)."""
        self.monitor.observe(self.engine.snapshot())

    async def start(self) -> None:
        cfg = self.cfg
        try:
            await self.db.open(min_size=2, max_size=8, init=init_connection, timeout=10)
            async with self.db.acquire() as conn:
                await self.store.migrate(conn)
        except PG_ERRORS as e:
            raise DaemonError(f"database: {explain(e, cfg.dsn)}") from None
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=3.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.listen_host, cfg.listen_port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            raise DaemonError(f"http: cannot listen on {cfg.listen_host}:{cfg.listen_port} ({e.strerror or e})") from None
        port = self.runner.addresses[0][1] if self.runner.addresses else cfg.listen_port
        self.url = f"http://{cfg.listen_host}:{port}"
        public = cfg.public_url or self.url
        for alias, url in delivery_reports.configure_callbacks(public, cfg.providers, self.providers).items():
            log.info("delivery reports for %s: %s", alias, url)
        # the compiled kernels loaded before this worker registers (a load blocks the loop, and with it the
        # heartbeat); the collector's tuning is the engine's (collector_for_streams), for its run
        self.preparer.warm_up()
        await self._listen()
        try:
            await self.registry.register()
        except WorkerNameInUse as e:
            raise DaemonError(str(e)) from None
        self._registered = True  # from here on, claims of this name are this process's
        tasks = self.tasks
        self.registry.start(tasks, on_failure=lambda: self._fatal("heartbeat"))
        self.maintenance.start(tasks)
        self.reports.start(tasks, on_failure=lambda: self._fatal("reports-writer"))
        self.monitor.start(tasks)
        if self.webhooks is not None:
            self.webhooks.start(tasks)
        self._engine_task = tasks.start(self.engine.run(), "engine", on_failure=nothing)  # `wait` reports it
        self._engine_task.add_done_callback(lambda _: self._stop.set())
        self._tasks = [tasks.keep(self._keep_listening, "listener"), tasks.keep(self._revive, "revive"),
                       tasks.keep(self.withdrawal.run, "withdrawal")]
        self.running = True
        if self._stop_requested:  # a signal came while starting
            self.stop()
        log.info("worker %s on %s: outbox %s, %d provider(s)", cfg.worker, self.url, cfg.table, len(self.providers))

    def _routes(self) -> list[web.RouteDef]:
        """Reports, health and metrics; the API and the control of campaigns when an API key is set."""
        routes = delivery_reports.routes(self.cfg, self.reports) + metrics.routes(self._collectors(), self._health)
        if self.api is not None and self.control is not None and self.throughput is not None:
            routes += self.api.routes() + self.control.routes(self.api.guard) + page.routes()
            routes += Views(self.db, self.names, self.throughput).routes(self.api.guard)
        return routes

    def _collectors(self) -> list[metrics.Collect]:
        """/metrics: each component's own collector."""
        found = [self.sink.collect, self.maintenance.collect, metrics.engine_metrics(self.engine), self.source.collect,
                 self.registry.collect, self.reports.collect, self.monitor.collect, self._restarts]
        if self.webhooks is not None:
            found.append(self.webhooks.collect)
        if self.api is not None:
            found.append(self.api.collect)
        return found

    def _restarts(self) -> Iterator[Metric]:
        """/metrics: the loops restarted after a failure (tasks.Tasks.keep), by task: a bug an operator sees."""
        yield metrics.counter("dispatcher_task_restarts", "Background loops restarted after a failure, by task",
                              ["task"], self.tasks.restarts)

    def _health(self) -> tuple[bool, dict[str, Any]]:
        """/healthz: serving while running, not stopping, with heartbeats answered (else it cannot work:
        database lost); degraded when a provider is."""
        r = self.registry
        ok = not self.stopping and r.fresh() and self.running
        degraded = self.monitor.degraded()
        return ok, {
            "status": ("degraded" if degraded else "ok") if ok else ("stopping" if self.stopping else "unhealthy"),
            "providers": self.monitor.providers(),
            "worker": self.cfg.worker, "live_workers": r.live, "share": r.share,
            "heartbeat_age_s": r.heartbeat_age(),
            "in_flight": self.engine.in_flight, "claimed": self.source.claimed,
            "outbox": self.maintenance.depth, "results": self.sink.written,
        }

    # -- LISTEN ---------------------------------------------------------------------------------
    async def _listen(self) -> None:
        try:
            conn = await pg.connect(self.cfg.dsn, timeout=10)
            await conn.add_listener(self.names.channel, self.source.notify)
            await conn.add_listener(self.names.control, self.source.notify)  # a resume: claim again at once
            await conn.add_listener(self.names.control, self.withdrawal.notify)  # a pause: take claimed rows back
            if self.webhooks is not None:
                await conn.add_listener(EVENTS_CHANNEL, self.webhooks.notify)
            self.listener = conn
        except PG_ERRORS as e:
            log.warning("LISTEN failed (%s): polling every %g s", explain(e, self.cfg.dsn), self.cfg.poll)
            self.listener = None

    async def _keep_listening(self) -> None:
        while True:
            await asyncio.sleep(max(self.cfg.poll, 1.0))
            if self.listener is None or self.listener.is_closed():
                await self._listen()
                self.source.notify()  # what was inserted while deaf

    async def _revive(self) -> None:
        """A provider that halted (credentials refused, no credit, unreachable) is tried again now and then."""
        while True:
            await asyncio.sleep(HALT_PROBE)
            for alias, why in self.engine.halted().items():
                if await self.engine.revive(alias):
                    log.info("provider %s halted (%s %s): trying it again", alias, why.code, why.error)
                else:
                    log.warning("provider %s still unusable (%s %s)", alias, why.code, why.error)

    # -- stopping ---------------------------------------------------------------------------------
    def _fatal(self, name: str) -> None:
        """A task the daemon cannot work without failed: logged with its traceback, then a graceful stop
        (`wait` returns 1, the process exits 2). Called while that task's error goes on (tasks.Tasks.start's `on_failure`)."""
        e = self.tasks.failed[name]
        log.error("%s failed (%s: %s): stopping the daemon", name, type(e).__name__, e, exc_info=e)
        self.failed.append(name)
        if not self.stopping:
            self.stop()

    def stop(self) -> None:
        """Graceful stop; called a second time, abandon what is on the wire."""
        if not self.running and not self.stopping:  # still starting: stop once started
            self._stop_requested = True
            return
        if self.stopping:
            self.abandon = True
            self._stop.set()
            return
        self.stopping = True
        log.info("stopping: no more claims; settling the requests on the wire")
        self.source.stop()
        self.engine.stop()
        self._stop.set()

    async def wait(self) -> int:
        """Run until stopped (0), or until the engine or a task it cannot work without fails (1); then
        release, leave and close."""
        engine = self._engine_task
        assert engine is not None
        await self._stop.wait()
        t0 = time.monotonic()
        while not engine.done() and not self.abandon:  # stopping: the requests on the wire settle
            left = self.cfg.stop_timeout - (time.monotonic() - t0)
            if left <= 0:
                log.warning("stop_timeout (%g s) reached: abandoning the requests still on the wire",
                            self.cfg.stop_timeout)
                break
            self._stop.clear()  # set again by a second signal or the engine's end
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._stop.wait()
        await self._end_engine()
        code = 1 if self.failed else 0
        if not engine.cancelled() and engine.exception() is not None:
            log.error("engine failed: %s", engine.exception())
            code = 1
        await self.close()
        return code

    async def _end_engine(self) -> None:
        """The engine cancelled if it still runs (abandoning what is on the wire), its sessions closed."""
        engine = self._engine_task
        if engine is None or engine.done():
            return
        engine.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await engine
        await self.engine.close()  # cancelled mid-request: close the pooled sessions

    async def close(self) -> None:
        self.running = False
        self.stopping = True
        await self._end_engine()  # closed without `wait`: what is on the wire is abandoned
        await cancel(*self._tasks)
        started = self._registered
        if self.db.is_open and started:
            try:
                async with self.db.acquire() as conn:
                    self.released = await self.store.release(conn)
                if self.released:
                    log.info("released %d unfinished claim(s) back to pending", self.released)
            except PG_ERRORS as e:
                log.warning("could not release claims (%s): they come back when their lease ends",
                            explain(e, self.cfg.dsn))
        if self.runner is not None:  # reports still arriving are answered (their writer still runs)
            await self.runner.cleanup()
        await self.reports.stop()
        await self.monitor.stop()
        if self.webhooks is not None:  # what it did not deliver stays in the events table for the next start
            await self.webhooks.stop()
        if started:
            await self.maintenance.stop()
            await self.registry.leave()
        await self.tasks.close()  # each component ended its own; this ends whatever is left: none outlives us
        if self.listener is not None and not self.listener.is_closed():
            with contextlib.suppress(Exception):
                await self.listener.close()
        await self.db.close()


class EngineEvents(Events):
    """What the engine tells the daemon: state changes are logged at once; deferred rows go back to the outbox."""

    def __init__(self, source: OutboxSource, changed: Callable[[], None] | None = None) -> None:
        self.source = source
        self.changed = changed  # the health monitor's look at the lanes (logs the change)

    def halted(self, alias: str, why: Outcome) -> None:
        if self.changed is not None:
            self.changed()  # logged at once, in the monitor's words, with the reason
        else:
            log.warning("provider %s cannot take messages now: %s %s", alias, why.code, why.error)

    def revived(self, alias: str) -> None:
        if self.changed is not None:
            self.changed()

    def deferred(self, alias: str, seqs: list[int], why: Outcome) -> None:
        if why.verdict == Verdict.HALT:
            self.source.defer_later(seqs)
        else:  # retries ran out on something transient: the outbox retries it later, with backoff
            self.source.retry_later(seqs, why.code, why.error)


class DaemonError(Exception):
    """The daemon cannot start: one line."""
