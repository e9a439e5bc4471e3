"""The daemon's object graph (review P4): built whole in `Daemon.__init__`, with no event loop and no
database; each component given what it needs when made; `/metrics` served from the collectors it is
given, one a component, and `/healthz` from the health it is told (metrics.py holds no Daemon)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from blastkit import write_toml
from prometheus_client.core import GaugeMetricFamily

from dispatcher.daemon import metrics
from dispatcher.daemon.config import load_daemon
from dispatcher.daemon.service import Daemon

SMS = {"type": "nrs360", "url": "http://127.0.0.1:1", "username_env": "NRS360_USER",
       "password_env": "NRS360_PASSWORD", "dlr_secret_env": "NRS360_DLR_SECRET"}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {"DISPATCHER_DSN": "postgresql://u@127.0.0.1:1/db", "NRS360_USER": "demo",
                        "NRS360_PASSWORD": "demo-secret", "NRS360_DLR_SECRET": "dlr-secret-0123456789",
                        "DISPATCHER_API_KEY": "api-key-0123456789abcdef",
                        "DISPATCHER_HOOK_SECRET": "hook-secret-0123456789"}.items():
        monkeypatch.setenv(name, value)
    return write_toml(tmp_path / "daemon.toml", {
        "daemon": {"dsn_env": "DISPATCHER_DSN", "table": "outbox", "region": "ES"},
        "http": {"listen": "127.0.0.1:0", "api_key_env": "DISPATCHER_API_KEY"},
        "webhooks": {"url": "http://127.0.0.1:1/hook", "secret_env": "DISPATCHER_HOOK_SECRET"},
        "providers": {"sms": SMS}, "defaults": {"sender": "ACME"}})


def test_the_daemon_is_built_whole_before_it_starts(config: Path) -> None:
    """No running loop, no database: every component exists and holds what it works with; nothing opened."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    d = Daemon(load_daemon(config))
    assert d.api is not None and d.control is not None and d.webhooks is not None and d.throughput is not None
    assert d.source.slots is d.engine and d.registry.engine is d.engine and d.withdrawal.source is d.source
    assert d.withdrawal.engine is d.engine
    assert d.engine.c.source is d.source and d.engine.c.sinks == [d.sink] and d.engine.c.providers is d.providers
    assert d.api.validator is d.source.validator  # one row validator for the claim path and the API
    assert d.api.listing == d.control.list_messages
    assert d.sink.on_write == (d.reports.poke, d.webhooks.notify, d.throughput.note)
    assert d.sink.on_fatal == (d.stop,)
    paths = {r.resource.canonical for r in d.app.router.routes() if r.resource is not None}
    assert {"/metrics", "/healthz", "/v1/messages"} <= paths
    assert not d.db.is_open
    with pytest.raises(RuntimeError, match="not open"):
        d.db.acquire()  # nothing touches the database before start
    asyncio.run(d.close())  # a daemon that never started closes: nothing to release, nothing left open
    assert not d.db.is_open and d.released == 0


def test_metrics_serves_the_collectors_it_is_given_and_the_health_it_is_told(config: Path) -> None:
    """Per-component collectors read their component only; routes() takes them and a health callable."""
    d = Daemon(load_daemon(config))
    d.sink.results[("sms", "sent", "")] += 3
    told: list[tuple[bool, dict[str, Any]]] = [(False, {"status": "stopping"})]
    collectors = [d.sink.collect, d.registry.collect,
                  lambda: [GaugeMetricFamily("example_gauge", "A collector of this test's own", value=7)]]

    async def scrape() -> tuple[str, list[tuple[int, Any]]]:
        app = web.Application()
        app.add_routes(metrics.routes(collectors, lambda: told[-1]))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/metrics") as r:
                    text = await r.text()
                health = []
                for answer in ((False, {"status": "stopping"}), (True, {"status": "ok"})):
                    told.append(answer)
                    async with http.get(url + "/healthz") as r:
                        health.append((r.status, await r.json()))
            return text, health
        finally:
            await runner.cleanup()

    text, health = asyncio.run(scrape())
    assert 'dispatcher_messages_total{code="",provider="sms",status="sent"} 3.0' in text
    assert "dispatcher_rate_share 1.0" in text and "dispatcher_workers_live 1.0" in text
    assert "example_gauge 7.0" in text
    assert "dispatcher_claimed" not in text  # only what it was given: the source's collector was not
    assert health == [(503, {"status": "stopping"}), (200, {"status": "ok"})]
