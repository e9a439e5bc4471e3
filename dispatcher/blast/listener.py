"""A blast that hears its delivery reports (`[reports] listen`), and `dispatcher reports RUN` afterwards.

The listener serves the daemon's report endpoint (dispatcher/callbacks.py: `/dlr/{alias}/{secret}`, read
by each provider's own `parse_report`) while the run sends, and for `linger` seconds after its last send,
or until every sent record of the providers it asked has a final report. Every provider whose API takes a
report URL in each request (`Provider.callback`: 360nrs `notificationUrl`, Kaleyra `callback`) is told
`public_url/dlr/ALIAS/SECRET`; the others take their report URL in their own console (the log says which
URL to give; with `secret_env` it stays the same from run to run). The secret is `secret_env`'s, else one
made for the run and kept in its state directory (`runs/ID/report-secret`, mode 0600), so a resume and a
later `dispatcher reports RUN` listen at the URL the providers were given. Reports are kept beside the
results (blast/report_store.py: a JSONL file, or the PostgreSQL sink's table) before the callback is
answered 200, and tallied.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import callbacks
from ..config.reports import ReportSettings
from ..errors import ConfigError
from ..providers.base import Provider
from ..providers.dlr import Report
from .heard import Keys, Tally, Waiting, count
from .report_store import FileStore, PgStore, store_for

log = logging.getLogger("dispatcher.blast")
RECOUNT = 0.25  # seconds between looks at what is still pending while reports come


def run_secret(state_dir: Path, run_id: str) -> str:
    """The run's own report secret: made on first use, then the same for every attempt."""
    path = Path(state_dir) / "runs" / run_id / "report-secret"
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)
    return text


class Listener:
    """The report endpoint of one run: writes and tallies what its providers report."""

    def __init__(self, settings: ReportSettings, providers: dict[str, Provider], secret: str,
                 store: FileStore | PgStore) -> None:
        self.settings = settings
        self.providers = providers
        self.secret = secret
        self.store = store
        self.tally = Tally()  # what earlier attempts (or listeners) heard counts: read by `start`
        self.refused: Counter[tuple[str, str]] = Counter()
        self.received = 0
        self.public = ""
        self.port = settings.port  # the port bound (port 0: the one the system gave)
        self._runner: web.AppRunner | None = None
        self._heard = asyncio.Event()

    async def start(self, sock: socket.socket | None = None) -> str:
        """Listen (on `sock` when one is bound already); the public base URL. Raises ConfigError when the
        address or the store cannot be used."""
        await self.store.open(self.tally)
        app = web.Application(client_max_size=1 << 20)
        app.add_routes(callbacks.routes(self._lookup, self.submit, self.refused))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        s = self.settings
        try:
            site = web.SockSite(self._runner, sock) if sock is not None else \
                web.TCPSite(self._runner, s.host, s.port, reuse_address=True)
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            await self.store.close()
            raise ConfigError(f"[reports] listen: cannot listen on {s.host}:{s.port} ({e.strerror or e})") from None
        self.port = self._runner.addresses[0][1] if self._runner.addresses else s.port
        self.public = public_url(s, self.port)
        return self.public

    def wire(self) -> list[str]:
        """Point every provider that takes a report URL in its requests here; the aliases that do."""
        asked = []
        for alias, p in self.providers.items():
            url = callbacks.callback_url(self.public, alias, self.secret)
            shown = url.replace(self.secret, "<secret>")
            if p.callback(url):
                asked.append(alias)
                log.info("delivery reports for %s: %s", alias, shown)
            else:
                log.info("delivery reports for %s: %s takes its report URL in its own console: give it %s",
                         alias, p.kind, shown)
        return asked

    def _lookup(self, alias: str) -> tuple[Provider, str | None] | None:
        p = self.providers.get(alias)
        return None if p is None else (p, self.secret)

    async def submit(self, reports: list[Report]) -> None:
        await self.store.write(reports, dt.datetime.now(dt.UTC))
        for r in reports:
            self.tally.add_report(r)
        self.received += len(reports)
        self._heard.set()

    async def linger(self, keys: Keys, asked: list[str], seconds: float,
                     stop: asyncio.Event | threading.Event) -> dict[str, int]:
        """Wait until every sent record of `asked` has a final report, `seconds` pass, or `stop` is set;
        the delivery counts then. Only the finals heard since the last look narrow what is pending, at
        most every RECOUNT seconds however fast reports come (20,000 looks a report made it quadratic)."""
        deadline = time.monotonic() + seconds
        waiting = Waiting(keys, self.tally, asked)
        while waiting.look() and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._heard.clear()
            await _either(self._heard, _event(stop), min(left, 1.0))  # a report, Ctrl-C, or a second
            with contextlib.suppress(TimeoutError):  # more reports come meanwhile: counted together
                async with asyncio.timeout(min(RECOUNT, max(deadline - time.monotonic(), 0))):
                    await _event(stop).wait()
        return count(keys, self.tally, asked)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.store.close()


async def _either(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    """Until `a` or `b` is set, or `timeout` seconds."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _event(stop: asyncio.Event | threading.Event) -> asyncio.Event:
    """`stop` as something to wait on in this loop (a thread's event is looked at when the wait ends)."""
    return stop if isinstance(stop, asyncio.Event) else asyncio.Event()


def public_url(s: ReportSettings, port: int) -> str:
    """What the providers are told: `public_url`, else http:// and the address listened on."""
    host = f"[{s.host}]" if ":" in s.host else s.host
    return s.public_url or f"http://{host}:{port}"


def stop_on_signals() -> asyncio.Event:
    """An event Ctrl-C or SIGTERM sets: the end of a linger (nothing is on the wire any more)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def open_for(campaign: Any, settings: ReportSettings) -> tuple[Listener, list[str]]:
    """The listener of a blast's run, started and wired into its providers before anything is sent, and the
    aliases asked to report; the run's manifest notes where its reports go. Raises ConfigError."""
    store = store_for(campaign.origin, campaign.sinks[0], campaign.run_id)
    secret = settings.secret or run_secret(campaign.state_dir, campaign.run_id)
    listener = Listener(settings, campaign.providers, secret, store)
    await listener.start()
    asked = listener.wire()
    campaign.origin["reports"] = {**store.where(), "asked": asked,
                                  "listen": f"{settings.host}:{listener.port}", "public_url": listener.public}
    return listener, asked


async def hear_out(listener: Listener, asked: list[str], seconds: float, say: bool) -> dict[str, int]:
    """After the last send: listen up to `seconds` more (Ctrl-C ends it), then close; the counts."""
    stop = stop_on_signals()
    try:
        keys = await listener.store.sent()
        if say and seconds > 0 and count(keys, listener.tally, asked)["reports_pending"]:
            print(f"listening for delivery reports for up to {seconds:g} s at {listener.public} (Ctrl-C to stop)",
                  file=sys.stderr, flush=True)
        return await listener.linger(keys, asked, seconds, stop)
    finally:
        await listener.close()
