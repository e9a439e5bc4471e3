"""The delivery-report listener of a run shared by forked workers (`workers = N` with `[reports]`).

The workers send; the owner process listens. Its socket is bound before the fork, so the report URL
(with the port the system gave) is known and wired into the providers the workers inherit; a thread of
the owner serves it from right after the fork (no thread exists while the owner forks), with a loop of
its own, and lingers there after the last worker ended. The owner's main thread only starts it, tells it
when the sending is over, and reads the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from typing import Any

from ..config.reports import ReportSettings
from ..errors import ConfigError
from .listener import Listener, public_url, run_secret
from .report_store import store_for

START_TIMEOUT = 30.0  # seconds for the thread to open the store and listen


class SharedListener:
    def __init__(self, campaign: Any, settings: ReportSettings) -> None:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        try:
            self.sock = socket.create_server((settings.host, settings.port), family=family, backlog=1024)
        except OSError as e:
            raise ConfigError(f"[reports] listen: cannot listen on {settings.host}:{settings.port} "
                              f"({e.strerror or e})") from None
        self.sock.setblocking(False)
        store = store_for(campaign.origin, campaign.sinks[0], campaign.run_id)
        secret = settings.secret or run_secret(campaign.state_dir, campaign.run_id)
        self.listener = Listener(settings, campaign.providers, secret, store)
        port = self.sock.getsockname()[1]
        self.listener.public, self.listener.port = public_url(settings, port), port
        self.asked = self.listener.wire()
        campaign.origin["reports"] = {**store.where(), "asked": self.asked, "listen": f"{settings.host}:{port}",
                                      "public_url": self.listener.public}
        self.ready = threading.Event()
        self.stop = threading.Event()  # Ctrl-C while lingering
        self.error: Exception | None = None
        self.counts: dict[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._go: asyncio.Event | None = None
        self._linger = 0.0
        self._thread = threading.Thread(target=self._serve, name="reports-listener", daemon=True)

    def start(self) -> None:
        """Serve, from a thread (called in the owner right after the fork). When it cannot (the store's
        database is down), it says so and the run goes on: the reports come again to `dispatcher reports`."""
        self._thread.start()
        if not self.ready.wait(START_TIMEOUT) or self.error is not None:
            self.stop.set()
            print(f"dispatcher: {self.error or '[reports]: the listener did not start'}; the run goes on without "
                  "hearing its reports", file=sys.stderr, flush=True)

    def finish(self, linger: float) -> dict[str, int] | None:
        """After the last send: linger (Ctrl-C ends it), close; the counts (None when it never started)."""
        if not self._thread.is_alive() or self._loop is None or self._go is None:
            self.sock.close()
            return self.counts
        self._linger = linger
        self._loop.call_soon_threadsafe(self._go.set)
        before = signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        try:
            self._thread.join(linger + START_TIMEOUT)  # the linger is bounded; so is closing
        finally:
            signal.signal(signal.SIGINT, before)
            self.sock.close()
        return self.counts

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._go = asyncio.Event()
        try:
            await self.listener.start(self.sock)
        except Exception as e:  # the store (a database) or the socket: said by start()
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        try:
            while not self.stop.is_set():  # until the owner says the sending is over (or gives up)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._go.wait()
                if self._go.is_set():
                    keys = await self.listener.store.sent()
                    self.counts = await self.listener.linger(keys, self.asked, self._linger, self.stop)
                    break
        finally:
            await self.listener.close()
