"""The daemon's long-lived tasks have one owner (dispatcher/tasks.py, `Daemon.tasks`): a background task that
fails is never lost while the daemon runs on. The ones it cannot work without (the engine, the heartbeat, the
reports writer) stop it as failed (`wait` returns 1; the process exits 2), the task named in the log; the
loops that must outlive a bug in themselves (upkeep jobs, health, webhooks, rematcher, listener, revive,
withdrawal) are logged and restarted with backoff. And a stop leaves none of them running."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from blastkit import write_toml

from dispatcher.daemon.config import load_daemon
from dispatcher.daemon.service import Daemon
from dispatcher.providers.dlr import Report
from dispatcher.tasks import Tasks, cancel

pytestmark = pytest.mark.timeout(60)
QUICK = (0.001, 0.004)  # seconds of restart backoff: first, most
OWNED = {"engine", "heartbeat", "rescuer", "depth", "cleaner", "reports-writer", "reports-rematch", "health",
         "webhooks", "listener", "revive", "withdrawal"}


def others() -> set[asyncio.Task[Any]]:
    """The loop's tasks other than the test's own, still running."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


# -- the owner alone -----------------------------------------------------------------------------------

def test_a_kept_loop_that_fails_is_logged_and_run_again_and_one_that_returns_is_over(caplog):
    runs: list[int] = []

    async def go() -> None:
        tasks = Tasks(backoff=QUICK)
        again = asyncio.Event()

        async def loop() -> None:
            runs.append(len(runs))
            if len(runs) < 3:
                raise KeyError("a bug")
            again.set()  # the third run returns: not restarted

        task = tasks.keep(loop, "sampler")
        await asyncio.wait_for(again.wait(), 10)
        await asyncio.wait_for(task, 10)
        assert tasks.restarts["sampler"] == 2 and isinstance(tasks.failed["sampler"], KeyError)
        assert tasks.failure is None  # a kept loop's failure is not the owner's
        await tasks.close()

    with caplog.at_level(logging.ERROR, "dispatcher.tasks"):
        asyncio.run(go())
    assert runs == [0, 1, 2]
    lines = [r for r in caplog.records if "sampler failed (KeyError: 'a bug'): restarting it in" in r.getMessage()]
    assert len(lines) == 2 and all(r.exc_info for r in lines)  # each with its traceback


def test_a_started_task_that_fails_calls_its_policy_and_close_ends_the_rest():
    async def go() -> None:
        tasks = Tasks()
        told: list[str] = []
        forever = asyncio.Event()

        async def broken() -> None:
            raise RuntimeError("no disk")

        idle = tasks.start(forever.wait(), "idle", on_failure=lambda: told.append("idle"))
        kept = tasks.keep(forever.wait, "kept")
        failing = tasks.start(broken(), "broken", on_failure=lambda: told.append("broken"))
        await asyncio.wait({failing})
        assert told == ["broken"] and str(tasks.failure) == "no disk" and set(tasks.failed) == {"broken"}
        await cancel(failing)  # a stop does not raise what its owner's policy already had
        await tasks.close()
        assert idle.cancelled() and kept.cancelled() and not others()

    asyncio.run(go())


# -- the daemon ----------------------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A daemon with every optional task (webhooks, the cleaner, the API): its provider and webhook receiver
    are never reached, the outbox stays empty."""
    for name, value in {"DISPATCHER_DSN": postgres_dsn, "NRS360_USER": "demo", "NRS360_PASSWORD": "demo-secret",
                        "NRS360_DLR_SECRET": "dlr-secret-0123456789", "DISPATCHER_API_KEY": "api-key-0123456789abcdef",
                        "DISPATCHER_HOOK_SECRET": "hook-secret-0123456789"}.items():
        monkeypatch.setenv(name, value)
    table = f"t_{uuid.uuid4().hex[:10]}.outbox"
    return write_toml(tmp_path / "daemon.toml", {
        "daemon": {"dsn_env": "DISPATCHER_DSN", "table": table, "region": "ES", "heartbeat": 0.2,
                   "dead_after": 1.0, "lease": 1.0, "poll": 0.2, "stop_timeout": 5, "retention_days": 7},
        "http": {"listen": "127.0.0.1:0", "api_key_env": "DISPATCHER_API_KEY"},
        "webhooks": {"url": "http://127.0.0.1:1/hook", "secret_env": "DISPATCHER_HOOK_SECRET"},
        "providers": {"sms": {"type": "nrs360", "url": "http://127.0.0.1:1", "username_env": "NRS360_USER",
                              "password_env": "NRS360_PASSWORD", "dlr_secret_env": "NRS360_DLR_SECRET"}},
        "defaults": {"sender": "ACME"}})


def test_a_failing_heartbeat_stops_the_daemon_with_exit_1_named_in_the_log(config, postgres_dsn, caplog):
    """Before: the heartbeat's task died unseen and the daemon ran on, taken for dead by the others."""
    d = Daemon(load_daemon(config))
    beat = d.registry.beat
    beats = 0

    async def broken() -> None:
        nonlocal beats
        beats += 1
        if beats > 2:
            raise RuntimeError("a bug in the heartbeat")
        await beat()

    d.registry.beat = broken  # type: ignore[method-assign]

    async def go() -> int:
        before = others()
        await d.start()
        code = await asyncio.wait_for(d.wait(), 20)
        assert not others() - before  # the stop it caused ended every task
        conn = await asyncpg.connect(postgres_dsn)
        try:  # it left as on a stop: its row is gone
            assert await conn.fetchval(f"SELECT count(*) FROM {d.names.workers}") == 0
        finally:
            await conn.close()
        return code

    with caplog.at_level(logging.INFO, "dispatcher"):
        assert asyncio.run(go()) == 1
    error = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in error] == [
        "heartbeat failed (RuntimeError: a bug in the heartbeat): stopping the daemon"]
    assert error[0].exc_info and d.failed == ["heartbeat"]


class BrokenCounts(Counter):
    """A bug on the reports writer's path, after its write: counting what it stored fails."""

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("a bug in the writer")


def test_a_failing_reports_writer_answers_its_callbacks_503_and_stops_the_daemon(config, postgres_dsn, caplog):
    """Before: the writer died unseen; the callbacks it held, and every one after, waited for ever."""
    d = Daemon(load_daemon(config))
    report = Report(provider="sms", message_id="m-1", recipient="+34600000001", status="delivered",
                    provider_status="DELIVRD", event_at=dt.datetime.now(dt.UTC), payload={})

    async def go() -> int:
        before = others()
        await d.start()
        d.reports.received = BrokenCounts()
        with pytest.raises(ConnectionError):  # what the endpoint answers 503
            await asyncio.wait_for(d.reports.submit([report]), 10)
        with pytest.raises(ConnectionError):  # at once: no writer to wait for
            await asyncio.wait_for(d.reports.submit([report]), 10)
        code = await asyncio.wait_for(d.wait(), 20)
        assert not others() - before
        conn = await asyncpg.connect(postgres_dsn)
        try:  # written before the bug: a resend adds a duplicate, which reports keep anyway
            assert await conn.fetchval(f"SELECT count(*) FROM {d.names.reports}") == 1
        finally:
            await conn.close()
        return code

    with caplog.at_level(logging.ERROR, "dispatcher"):
        assert asyncio.run(go()) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "reports-writer failed (TypeError: a bug in the writer): stopping the daemon"]
    assert d.failed == ["reports-writer"]


def test_a_failing_upkeep_job_is_restarted_and_the_daemon_runs_on(config, caplog):
    """Before: a job's loop that raised something other than a database error was gone for good, unlogged."""
    d = Daemon(load_daemon(config))
    d.tasks = Tasks(backoff=QUICK)
    sample = d.maintenance.sample
    samples = 0
    again = asyncio.Event()

    async def broken(conn: asyncpg.Connection) -> None:
        nonlocal samples
        samples += 1
        if samples == 1:
            raise ValueError("a bug in the sampler")
        await sample(conn)
        again.set()

    d.maintenance.sample = broken  # type: ignore[method-assign]

    async def go() -> int:
        await d.start()
        await asyncio.wait_for(again.wait(), 20)  # run again, and this time it sampled
        assert d.running and not d.stopping and d.tasks.restarts["depth"] == 1
        async with aiohttp.ClientSession() as http, http.get(d.url + "/metrics") as r:
            assert 'dispatcher_task_restarts_total{task="depth"} 1.0' in await r.text()
        d.stop()
        return await asyncio.wait_for(d.wait(), 20)

    with caplog.at_level(logging.ERROR, "dispatcher"):
        assert asyncio.run(go()) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "depth failed (ValueError: a bug in the sampler): restarting it in 0.001 s"]


def test_a_stop_leaves_none_of_the_daemons_tasks_running(config):
    d = Daemon(load_daemon(config))

    async def go() -> None:
        before = others()
        await d.start()
        names = {t.get_name() for t in others() - before}
        assert names >= OWNED, OWNED - names  # every one of them is the owner's
        d.stop()
        assert await asyncio.wait_for(d.wait(), 20) == 0
        left = others() - before
        assert not left, sorted(t.get_name() for t in left)

    asyncio.run(go())
