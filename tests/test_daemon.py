"""The daemon end to end: a real PostgreSQL, the simulators over local HTTP, daemons in this process
and as `python -m dispatcher daemon` subprocesses.

DISPATCHER_FULL=1 drains the issue's 100,000 rows with two daemons instead of 5,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from blastkit import write_toml

from dispatcher.daemon.config import load_daemon
from dispatcher.daemon.outbox import OutboxQueries, TableNames, init_connection
from dispatcher.daemon.schedule import Schedule, Window, WindowError
from dispatcher.daemon.service import Daemon, DaemonError
from dispatcher.errors import ConfigError
from dispatcher.model import MISSING

ROOT = Path(__file__).resolve().parent.parent
FULL = os.environ.get("DISPATCHER_FULL") == "1"
SECRETS = {"NRS360_DLR_SECRET": "nrs-secret-0123456789", "KALEYRA_DLR_SECRET": "kal-secret-0123456789",
           "SENDIX_DLR_SECRET": "wa-secret-0123456789", "SENDX_DLR_SECRET": "mail-secret-0123456789",
           "SMSGATEWAY24_DLR_SECRET": "phone-secret-0123456789"}
FAST = {"heartbeat": 0.2, "dead_after": 1.0, "lease": 1.0, "poll": 0.2, "claim": 500, "stop_timeout": 8,
        "log_level": "info"}


# -- helpers ---------------------------------------------------------------------------------------------

def write_config(tmp: Path, table: str, providers: dict[str, dict[str, Any]], *, routes: dict[str, Any] | None = None,
                 defaults: dict[str, Any] | None = None, campaigns: dict[str, dict[str, Any]] | None = None,
                 **daemon: Any) -> Path:
    doc: dict[str, Any] = {"daemon": {"dsn_env": "DISPATCHER_DSN", "table": table, "region": "ES", **FAST, **daemon},
                           "http": {"listen": "127.0.0.1:0"}, "providers": providers,
                           "defaults": defaults or {"sender": "ACME"}}
    if routes:
        doc["routes"] = routes
    if campaigns:
        doc["campaigns"] = campaigns
    return write_toml(tmp / f"daemon-{uuid.uuid4().hex[:6]}.toml", doc)


def nrs(sim: Any, reports: bool = True, **kw: Any) -> dict[str, Any]:
    """360nrs settings; with `reports`, the daemon gets its DLRs (the simulator's report queue is shared by
    the session and not emptied by a reset: tests that send thousands leave reports off)."""
    return {"type": "nrs360", "url": sim.url("nrs360"), "username_env": "NRS360_USER", "password_env": "NRS360_PASSWORD",
            **({"dlr_secret_env": "NRS360_DLR_SECRET"} if reports else {}), "rate": 50, "batch_size": 100,
            "concurrency": 4, "backoff_base": 0.01, "backoff_max": 0.2, "max_attempts": 8, "timeout": 5, **kw}


def number(i: int) -> str:
    return f"+3460{i:07d}"


@pytest.fixture
def env(sim: Any, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DISPATCHER_DSN", postgres_dsn)
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return sim


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}.outbox"


def run(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test body run on its own loop (the in-process daemon shares it)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> None:
        asyncio.run(fn(*args, **kw))
    return wrapper


@contextlib.asynccontextmanager
async def daemon(path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(load_daemon(path))
    await d.start()
    try:
        deadline = time.monotonic() + 10
        while not d.registry.ready():  # past its joining wait
            assert time.monotonic() < deadline, "the daemon did not join"
            await asyncio.sleep(0.05)
        yield d
    finally:
        d.stop()
        assert await d.wait() == 0


@contextlib.asynccontextmanager
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        yield conn
    finally:
        await conn.close()


async def until(conn: asyncpg.Connection, query: str, *args: Any, timeout: float = 20) -> Any:
    """Poll until `query` returns a true value; return it. On a timeout, say what the outbox holds."""
    deadline = time.monotonic() + timeout
    while True:
        v = await conn.fetchval(query, *args)
        if v:
            return v
        if time.monotonic() > deadline:
            table = re.search(r"FROM (\S+?\.outbox)\b", query)
            state = await conn.fetch(f"SELECT status, sent_via, code, delivery_status, count(*) FROM {table.group(1)} "
                                     "GROUP BY 1, 2, 3, 4") if table else []
            raise AssertionError(f"timed out waiting for: {query}; outbox: {[tuple(r) for r in state]}")
        await asyncio.sleep(0.05)


async def insert(conn: asyncpg.Connection, table: str, rows: list[dict[str, Any]]) -> list[int]:
    ids = []
    for r in rows:
        cols = list(r)
        vals = list(r.values())
        ids.append(await conn.fetchval(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))}) "
            "RETURNING id", *vals))
    return ids


def sim_call(sim: Any, kind: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(sim.url(kind) + path, data=orjson.dumps(body), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return orjson.loads(r.read() or b"null")


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        async with db(dsn) as conn:
            return await conn.fetch(query, *args)
    return asyncio.run(go())


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Proc:
    """`python -m dispatcher daemon` in a subprocess; stderr (its log) to a file."""

    def __init__(self, config: Path, worker: str, tmp: Path) -> None:
        self.worker = worker
        self.log = tmp / f"{worker}.log"
        self._err = open(self.log, "w")  # noqa: SIM115 (closed in wait)
        self.p = subprocess.Popen([sys.executable, "-m", "dispatcher", "daemon", str(config), "--worker", worker],
                                  stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=ROOT, env=os.environ.copy())
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.p.stdout or ()], daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if lines.get(timeout=1).strip() == "ready":
                    return
            except queue.Empty:
                if self.p.poll() is not None:
                    break
        self.p.kill()
        raise AssertionError(f"daemon {worker} did not start: {self.log.read_text()}")

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self._err.close()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)
        self._err.close()


async def live_workers(conn: asyncpg.Connection, table: str, n: int) -> None:
    await until(conn, f"SELECT count(*) >= $1 FROM {table}_workers WHERE heartbeat_at > now() - interval '1 s'", n)
    await asyncio.sleep(0.5)  # past their joining wait (1.5 heartbeats)


async def bulk(conn: asyncpg.Connection, table: str, n: int, start: int = 0, campaign: str | None = None) -> None:
    await conn.execute(f"""INSERT INTO {table} (recipient, campaign, variables)
        SELECT '+3460' || lpad(g::text, 7, '0'), $3, jsonb_build_object('name', 'name' || g, 'amount', g || '.50')
        FROM generate_series($1::int, $2::int) g""", start, start + n - 1, campaign)


# -- units: windows and configuration ----------------------------------------------------------------

def test_sending_windows_follow_days_hours_and_time_zones():
    w = Window.parse("mon-sat", "08:00-22:00", "Europe/Paris")
    paris = lambda *a: dt.datetime(*a, tzinfo=w.tz)  # noqa: E731
    assert w.is_open(paris(2024, 6, 3, 8, 0))  # Monday 08:00: open
    assert not w.is_open(paris(2024, 6, 3, 7, 59))
    assert not w.is_open(paris(2024, 6, 3, 22, 0))  # end excluded
    assert w.is_open(paris(2024, 6, 8, 21, 59))  # Saturday
    assert not w.is_open(paris(2024, 6, 9, 12, 0))  # Sunday
    # summer and winter time: 08:00 in Paris is 06:00 UTC in June, 07:00 UTC in January
    assert w.is_open(dt.datetime(2024, 6, 3, 6, 0, tzinfo=dt.UTC))
    assert not w.is_open(dt.datetime(2024, 1, 8, 6, 30, tzinfo=dt.UTC))
    assert w.is_open(dt.datetime(2024, 1, 8, 7, 0, tzinfo=dt.UTC))
    night = Window.parse("fri", "22:00-06:00", "UTC")  # Friday 22:00 to Saturday 06:00
    assert night.is_open(dt.datetime(2024, 6, 7, 23, 0, tzinfo=dt.UTC))
    assert night.is_open(dt.datetime(2024, 6, 8, 5, 59, tzinfo=dt.UTC))
    assert not night.is_open(dt.datetime(2024, 6, 8, 23, 0, tzinfo=dt.UTC))
    assert not night.is_open(dt.datetime(2024, 6, 7, 5, 0, tzinfo=dt.UTC))
    split = Schedule((Window.parse("mon-fri", "09:00-13:00,15:00-20:00", "Europe/Madrid"),
                      Window.parse("sat-sun", "*", "Europe/Madrid")))
    madrid = lambda *a: dt.datetime(*a, tzinfo=split.windows[0].tz)  # noqa: E731
    assert split.is_open(madrid(2024, 6, 4, 12, 0)) and not split.is_open(madrid(2024, 6, 4, 14, 0))
    assert split.is_open(madrid(2024, 6, 9, 3, 0))
    assert split.next_change(madrid(2024, 6, 4, 14, 0)) == madrid(2024, 6, 4, 15, 0)
    assert Schedule().is_open()
    for days, hours, tz in (("mon-xyz", "*", "UTC"), ("*", "8-22", "UTC"), ("*", "25:00-26:00", "UTC"),
                            ("*", "*", "Mars/Olympus")):
        with pytest.raises(WindowError):
            Window.parse(days, hours, tz)


def test_configuration_errors_name_the_file_line_and_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("DISPATCHER_DSN", "postgresql://u@127.0.0.1:1/db")
    monkeypatch.setenv("NRS360_DLR_SECRET", SECRETS["NRS360_DLR_SECRET"])
    p = {"type": "nrs360", "url": "http://127.0.0.1:1", "username_env": "NRS360_USER", "password_env": "NRS360_PASSWORD"}

    def error(**kw: Any) -> str:
        with pytest.raises(ConfigError) as e:
            load_daemon(write_config(tmp_path, kw.pop("table", "outbox"), kw.pop("providers", {"sms": p}), **kw))
        return str(e.value)

    e = error(leese=3)
    assert re.search(r"daemon-\w+\.toml:\d+: daemon\.leese: unknown setting \(did you mean 'lease'\?\)", e), e
    assert "dead_after: must be at least twice the heartbeat" in error(heartbeat=2, dead_after=3)
    e = error(campaigns={"promo": {"window": {"days": "mon-sun", "hours": "8-22"}}})
    assert re.search(r":\d+: campaigns\.promo\.window: '8-22' is not a range of hours", e), e
    assert "is not a provider" in error(routes={"sms": "nope"})
    assert "'xyz' is not in [routes]" in error(campaigns={"c": {"route": "xyz"}})
    assert "environment variable NOPE_SECRET is not set" in error(providers={"sms": {**p, "dlr_secret_env": "NOPE_SECRET"}})
    monkeypatch.setenv("SHORT_SECRET", "abc")
    assert "too short" in error(providers={"sms": {**p, "dlr_secret_env": "SHORT_SECRET"}})
    assert "nrs360 does not carry 'fax'" in error(providers={"sms": {**p, "channel": "fax"}})
    e = error(providers={"sms": {**p, "url": "http://user:hunter2@127.0.0.1:1"}})
    assert "providers.sms.url: must not hold credentials" in e and "hunter2" not in e
    assert "daemon.table: 'Bad Name' must be a lower-case name" in error(table="Bad Name")
    monkeypatch.delenv("DISPATCHER_DSN")
    assert "environment variable DISPATCHER_DSN is not set" in error()
    # and on the command line: exit 2, one line
    monkeypatch.setenv("DISPATCHER_DSN", "postgresql://u@127.0.0.1:1/db")
    bad = write_config(tmp_path, "outbox", {"sms": p}, claim=0)
    r = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(bad)], capture_output=True, text=True,
                       cwd=ROOT, env=os.environ.copy(), timeout=60)
    assert r.returncode == 2 and "daemon.claim: must be at least 1" in r.stderr and len(r.stderr.splitlines()) == 1
    good = write_config(tmp_path, "outbox", {"sms": p})
    r = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(good), "--check"], capture_output=True,
                       text=True, cwd=ROOT, env=os.environ.copy(), timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(good), "--print-schema"], capture_output=True,
                       text=True, cwd=ROOT, env=os.environ.copy(), timeout=60)
    assert r.returncode == 0 and r.stdout.startswith('CREATE TABLE "outbox" (') and "outbox_suppressions" in r.stdout
    secrets = {k: "x" * 20 for k in (*SECRETS, "DISPATCHER_API_KEY", "DISPATCHER_WEBHOOK_SECRET")}
    for example in ("daemon.toml", "quickstart.toml"):
        r = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(ROOT / "examples" / example), "--check"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, **secrets})
        assert r.returncode == 0, (example, r.stderr)
    monkeypatch.setenv("SHORT_SECRET", "short")
    for extra, where in (('[webhooks]\nsecret_env = "SHORT_SECRET"\n', "webhooks.url: '' must be an http(s) URL"),
                         ('[webhooks]\nurl = "http://x/y"\nsecret_env = "SHORT_SECRET"\n',
                          "webhooks.secret_env: the secret in SHORT_SECRET is too short"),
                         ('[webhooks]\nurl = "http://x/y"\nsecert_env = "X"\n', "did you mean 'secret_env'"),
                         ("", None)):
        bad = tmp_path / "w.toml"
        bad.write_text(good.read_text().replace('[http]\n', '[http]\napi_key_env = "NOPE_UNSET"\n') + extra
                       if not extra else good.read_text() + extra)
        with pytest.raises(ConfigError) as e:
            load_daemon(bad)
        assert (where or "http.api_key_env: environment variable NOPE_UNSET is not set") in str(e.value), str(e.value)


# -- claims, leases, order -------------------------------------------------------------------------------

@run
async def test_claims_skip_locked_rows_follow_priority_and_come_back_from_dead_workers(env, postgres_dsn, tmp_path,
                                                                                        table):
    cfg = load_daemon(write_config(tmp_path, table, {"sms": nrs(env)}, lease=0.3, max_claims=2,
                                   campaigns={"shut": {"window": {"days": "mon", "hours": "00:00-00:01"}}}))
    store = OutboxQueries(cfg, TableNames(table))
    async with db(postgres_dsn) as a, db(postgres_dsn) as b:
        await store.migrate(a)
        await bulk(a, table, 100)
        await a.execute(f"UPDATE {table} SET priority = 5 WHERE id % 10 = 0")
        await a.execute(f"UPDATE {table} SET not_before = now() + interval '1 hour' WHERE id % 10 = 1")
        await a.execute(f"UPDATE {table} SET campaign = 'shut' WHERE id % 10 = 2")
        # two claimers at once: SKIP LOCKED gives them disjoint rows
        first, second = await asyncio.gather(store.claim(a, 30, ["shut"], [""]), store.claim(b, 30, ["shut"], [""]))
        ids_a, ids_b = {r["id"] for r in first}, {r["id"] for r in second}
        assert len(ids_a) == len(ids_b) == 30 and not ids_a & ids_b
        both = sorted(ids_a | ids_b)
        # the ten priority-5 rows first, then by id; never a future row or a closed campaign's row
        top = [r["id"] for r in await a.fetch(f"SELECT id FROM {table} WHERE priority = 5 ORDER BY id")]
        assert set(top) <= set(both)
        assert not any(i % 10 in (1, 2) for i in both)
        rest = await store.claim(a, 1000, ["shut"], [""])
        assert len(rest) == 100 - 30 - 30 - 10 - 10
        assert await store.claim(a, 10, ["shut"], [""]) == []
        # nobody heartbeats for this worker: once the lease ends its claims go back to pending
        assert await store.reap(a) == (0, 0)  # the leases have not ended yet
        await asyncio.sleep(0.4)
        released, failed = await store.reap(a)
        assert (released, failed) == (80, 0)
        assert await a.fetchval(f"SELECT count(*) FROM {table} WHERE status = 'pending' AND attempts = 1") == 80
        # a live worker keeps its claims past the lease; a row claimed max_claims times by dead ones fails
        await a.execute(f"INSERT INTO {table}_workers (name) VALUES ($1)", cfg.worker)
        again = await store.claim(a, 1000, ["shut"], [""])
        assert len(again) == 80
        await asyncio.sleep(0.4)
        assert await store.reap(a) == (0, 0)
        await a.execute(f"DELETE FROM {table}_workers")
        assert await store.reap(a) == (0, 80)
        row = await a.fetchrow(f"SELECT status, code, error FROM {table} WHERE status = 'failed' LIMIT 1")
        assert row["code"] == "abandoned" and "claimed 2 times" in row["error"]
        # a graceful stop puts its claims back at once
        await a.execute(f"UPDATE {table} SET not_before = now(), campaign = NULL WHERE status = 'pending'")
        assert len(await store.claim(a, 1000, [], [""])) == 20
        assert await store.release(a) == 20
        assert await a.fetchval(f"SELECT count(*) FROM {table} WHERE status = 'pending' AND worker IS NULL") == 20
        # retention: finished rows go, pending ones stay
        assert await store.purge(a, 0) == 80
        assert await a.fetchval(f"SELECT count(*) FROM {table}") == 20
        events = await a.fetchval(f"SELECT count(*) FROM {table}_events")
        assert events > 0 and await store.purge_events(a, 0) == events  # no webhooks: every old event goes


@run
async def test_a_worker_name_is_held_once_and_a_restart_takes_back_its_claims(env, postgres_dsn, tmp_path, table):
    config = write_config(tmp_path, table, {"sms": nrs(env)}, worker="ghost",
                          defaults={"sender": "ACME", "template": "Hi {name}"})
    async with daemon(config), db(postgres_dsn) as conn:
        twin = Daemon(load_daemon(config))
        with pytest.raises(DaemonError, match="worker name 'ghost' is in use"):
            await twin.start()
        await twin.close()
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_workers WHERE name = 'ghost'") == 1  # untouched
    async with db(postgres_dsn) as conn:  # as if a process named ghost had died holding claims
        await bulk(conn, table, 30)
        await conn.execute(f"UPDATE {table} SET status = 'claimed', worker = 'ghost', attempts = 1, "
                           "lease_until = now() + interval '1 hour'")
        await conn.execute(f"UPDATE {table}_workers SET heartbeat_at = now() - interval '1 minute'")
        async with daemon(config):
            await until(conn, f"SELECT count(*) = 30 FROM {table} WHERE status = 'sent'")
        assert {e["to"] for e in env.ledger("nrs360")} == {number(i)[1:] for i in range(30)}


# -- several daemons on one outbox -----------------------------------------------------------------------

def test_two_daemons_drain_a_shared_outbox_once_each_within_the_rate(env, postgres_dsn, tmp_path, table):
    """Two processes, one outbox, one provider limit: every row sent exactly once, the rate split between them."""
    n = 100_000 if FULL else 5_000
    rate = 40
    env.config("nrs360", rate=rate)
    config = write_config(tmp_path, table, {"sms": nrs(env, False, rate=rate, batch_size=100 if not FULL else 500)},
                          defaults={"sender": "ACME", "template": "Hola {name}, debes {amount} EUR"})
    a = Proc(config, "wa", tmp_path)
    b = Proc(config, "wb", tmp_path)

    async def go() -> None:
        async with db(postgres_dsn) as conn:
            await live_workers(conn, table, 2)
            await bulk(conn, table, n)
            await until(conn, f"SELECT count(*) = $1 FROM {table} WHERE status <> 'pending' AND status <> 'claimed'",
                        n, timeout=600 if FULL else 120)
    try:
        asyncio.run(go())
        a.signal(signal.SIGTERM)
        b.signal(signal.SIGTERM)
        assert a.wait() == 0 and b.wait() == 0
    finally:
        a.stop()
        b.stop()
    rows = sql(postgres_dsn, f"SELECT status, worker, provider_message_id, sent_to FROM {table}")
    assert Counter(r["status"] for r in rows) == {"sent": n}
    by_worker = Counter(r["worker"] for r in rows)
    assert by_worker["wa"] > 0 and by_worker["wb"] > 0 and by_worker["wa"] + by_worker["wb"] == n
    ledger = env.ledger("nrs360")
    assert len(ledger) == n, "a message sent twice, or one lost"
    assert len({e["to"] for e in ledger}) == n
    assert {e["id"] for e in ledger} == {r["provider_message_id"] for r in rows}
    assert {"+" + e["to"] for e in ledger} == {r["sent_to"] for r in rows}
    assert any(e["text"] == "Hola name7, debes 7.50 EUR" for e in ledger)
    stats = env.stats("nrs360")
    assert stats["rate_limited"] == 0 and stats["max_window"] <= rate  # the sum of both never exceeded the rate
    assert sql(postgres_dsn, f"SELECT count(*) FROM {table}_workers")[0][0] == 0  # both left


def test_a_killed_daemons_rows_are_sent_by_the_other_after_the_lease(env, postgres_dsn, tmp_path, table):
    n = 3000
    env.config("nrs360", rate=10)
    config = write_config(tmp_path, table, {"sms": nrs(env, False, rate=10, batch_size=50)},
                          defaults={"sender": "ACME", "template": "Hola {name}"})
    a = Proc(config, "victim", tmp_path)
    b = Proc(config, "survivor", tmp_path)
    held: set[int] = set()

    async def go() -> None:
        async with db(postgres_dsn) as conn:
            await live_workers(conn, table, 2)
            await bulk(conn, table, n)
            await until(conn, f"SELECT count(*) >= 300 FROM {table} WHERE worker = 'victim' AND status = 'sent'")
            held.update(r[0] for r in await conn.fetch(
                f"SELECT id FROM {table} WHERE worker = 'victim' AND status = 'claimed'"))
            a.signal(signal.SIGKILL)
            await until(conn, f"SELECT count(*) = $1 FROM {table} WHERE status = 'sent'", n, timeout=120)
    try:
        asyncio.run(go())
        assert a.wait() == -signal.SIGKILL
        b.signal(signal.SIGTERM)
        assert b.wait() == 0
    finally:
        a.stop()
        b.stop()
    assert held, "the victim held no claim when it was killed"
    rows = {r["id"]: r for r in sql(postgres_dsn, f"SELECT id, worker, attempts, sent_to FROM {table}")}
    recovered = [i for i in held if rows[i]["worker"] == "survivor"]
    assert recovered and all(rows[i]["attempts"] >= 2 for i in recovered)
    ledger = env.ledger("nrs360")
    per_number = Counter("+" + e["to"] for e in ledger)
    assert len(per_number) == n  # nothing lost
    twice = {k for k, c in per_number.items() if c > 1}
    assert twice <= {rows[i]["sent_to"] for i in held}  # a resend only where the victim may have sent it
    assert "took back" in b.log.read_text()


def test_sigterm_settles_requests_releases_claims_and_exits_zero(env, postgres_dsn, tmp_path, table):
    n = 2000
    env.config("nrs360", latency_ms=400)
    config = write_config(tmp_path, table, {"sms": nrs(env, False, rate=10, batch_size=20, concurrency=2)},
                          defaults={"sender": "ACME", "template": "Hola {name}"}, stop_timeout=5)
    p = Proc(config, "leaver", tmp_path)

    async def go() -> None:
        async with db(postgres_dsn) as conn:
            await live_workers(conn, table, 1)
            await bulk(conn, table, n)
            await until(conn, f"SELECT count(*) >= 40 FROM {table} WHERE status = 'sent'")
    try:
        asyncio.run(go())
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait() == 0
        assert time.monotonic() - t0 < 7
    finally:
        p.stop()
    rows = sql(postgres_dsn, f"SELECT status, attempts, worker, provider_message_id FROM {table}")
    status = Counter(r["status"] for r in rows)
    assert set(status) == {"sent", "pending"} and status["pending"] > 0
    assert all(r["attempts"] == 0 and r["worker"] is None for r in rows if r["status"] == "pending")
    sent = {r["provider_message_id"] for r in rows if r["status"] == "sent"}
    assert {e["id"] for e in env.ledger("nrs360")} == sent  # every request on the wire settled and was recorded
    assert re.search(r"released \d+ unfinished claim", p.log.read_text())
    assert sql(postgres_dsn, f"SELECT count(*) FROM {table}_workers")[0][0] == 0


# -- delivery reports -----------------------------------------------------------------------------------

@run
async def test_delivery_reports_from_every_provider_are_stored_and_matched(env, postgres_dsn, tmp_path, table):
    providers = {
        "sms": nrs(env),
        "kal": {"type": "kaleyra", "url": env.url("kaleyra"), "sid_env": "KALEYRA_SID", "api_key_env": "KALEYRA_API_KEY",
                "dlr_secret_env": "KALEYRA_DLR_SECRET", "route": "TXN"},
        "wa": {"type": "sendix", "channel": "whatsapp", "url": env.url("sendix"), "username_env": "SENDIX_USER",
               "password_env": "SENDIX_PASSWORD", "dlr_secret_env": "SENDIX_DLR_SECRET"},
        "mail": {"type": "sendx", "channel": "email", "url": env.url("sendx"), "api_key_env": "SENDX_API_KEY",
                 "dlr_secret_env": "SENDX_DLR_SECRET"},
        "phone": {"type": "smsgateway24", "url": env.url("smsgateway24"), "email_env": "SMSGATEWAY24_EMAIL",
                  "password_env": "SMSGATEWAY24_PASSWORD", "device_id": 260, "dlr_secret_env": "SMSGATEWAY24_DLR_SECRET"},
    }
    campaigns = {"kal": {"sender": "KLRHXA", "provider": "kal"},
                 "phone": {"provider": "phone", "options": {"sim": 1}},
                 "wa": {"options": {"template_name": "promo", "language": "es", "parameters": ["name", "amount"]}},
                 "mail": {"sender": "news@example.com", "subject": "Your invoice",
                          "options": {"reply_to": "help@example.com", "name_field": "name"}}}
    config = write_config(tmp_path, table, providers, routes={"sms": "sms", "whatsapp": "wa", "email": "mail"},
                          campaigns=campaigns)
    async with daemon(config) as d, db(postgres_dsn) as conn:
        url = d.url + "/dlr/{}/" + "{}"
        sim_call(env, "sendix", "/_sim/options", {"webhook_url": url.format("wa", SECRETS["SENDIX_DLR_SECRET"])})
        sim_call(env, "smsgateway24", "/_sim/gateway", {"webhook": url.format("phone", SECRETS["SMSGATEWAY24_DLR_SECRET"]),
                                                        "phone_rate": 200})
        sim_call(env, "sendx", "/api/v1/rest/webhook", {"url": url.format("mail", SECRETS["SENDX_DLR_SECRET"]),
                                                        "opened": True, "bounced": True}, {"X-Team-ApiKey": "demo-team-key"})
        long_text = "Your parcel is on its way and will arrive tomorrow between nine and two. " * 3  # 2 parts
        rows: list[dict[str, Any]] = []
        for i in range(5):
            rows.append({"recipient": number(i), "body": long_text})
            rows.append({"recipient": f"+3461{i:07d}", "campaign": "kal", "body": f"Code {i}"})
            rows.append({"recipient": f"+3462{i:07d}" if i else "+34620000000", "channel": "whatsapp", "campaign": "wa",
                         "variables": {"name": f"n{i}", "amount": f"{i}.00"}})
            rows.append({"recipient": f"user{i}@example.com" if i else "bounce@example.com", "channel": "email",
                         "campaign": "mail", "template": "<p>Hi {name}</p>", "variables": {"name": f"N{i}"}})
            rows.append({"recipient": f"+4915{i:09d}", "campaign": "phone", "body": f"Parcel {i}"})
        ids = await insert(conn, table, [{**r, "variables": r.get("variables", {})} for r in rows])
        await until(conn, f"SELECT count(*) = $1 FROM {table} WHERE status = 'sent' AND delivery_status IS NOT NULL "
                          "AND (sent_via <> 'phone' OR delivery_status = 'delivered')", len(ids))
        got = {(r["sent_via"], r["delivery_status"]): r["n"] for r in await conn.fetch(
            f"SELECT sent_via, delivery_status, count(*) AS n FROM {table} GROUP BY 1, 2")}
        assert got == {("sms", "delivered"): 5, ("kal", "delivered"): 5, ("wa", "delivered"): 4, ("wa", "failed"): 1,
                       ("mail", "opened"): 4, ("mail", "bounced"): 1, ("phone", "delivered"): 5}
        reports = await conn.fetch(f"SELECT provider, status, outbox_id, matched_by, part FROM {table}_reports")
        assert all(r["outbox_id"] is not None for r in reports), "an unmatched report"
        per = Counter(r["provider"] for r in reports)
        assert per["sms"] == 10 and {r["part"] for r in reports if r["provider"] == "sms"} == {1, 2}  # one a part
        assert per["phone"] == 15  # taken, sent, delivered for each
        # no id in their accept answers: the first reports of each message are paired by recipient, later ones by id
        assert len({r["outbox_id"] for r in reports if r["matched_by"] == "recipient"}) == 10
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE sent_via IN ('phone', 'mail') "
                                   "AND provider_message_id IS NULL") == 0  # the ids the reports carried
        async with aiohttp.ClientSession() as http, http.get(d.url + "/metrics") as r:
            text = await r.text()
        assert metrics(text)[("dispatcher_reports_total", (("provider", "phone"), ("status", "delivered")))] == 5


@run
async def test_reports_need_their_secret_and_keep_order_duplicates_and_strangers(env, postgres_dsn, tmp_path, table):
    providers = {
        "wa": {"type": "sendix", "channel": "whatsapp", "url": env.url("sendix"), "username_env": "SENDIX_USER",
               "password_env": "SENDIX_PASSWORD", "dlr_secret_env": "SENDIX_DLR_SECRET"},
        "phone": {"type": "smsgateway24", "url": env.url("smsgateway24"), "email_env": "SMSGATEWAY24_EMAIL",
                  "password_env": "SMSGATEWAY24_PASSWORD", "device_id": 260, "dlr_secret_env": "SMSGATEWAY24_DLR_SECRET"},
    }
    secret = SECRETS["SENDIX_DLR_SECRET"]
    config = write_config(tmp_path, table, providers, routes={"whatsapp": "wa", "sms": "phone"},
                          defaults={"options": {"template_name": "promo", "parameters": ["name", "amount"], "sim": 1}})
    async with daemon(config) as d, db(postgres_dsn) as conn, aiohttp.ClientSession() as http:

        async def post(path: str, body: Any, headers: dict[str, str] | None = None) -> int:
            async with http.post(d.url + path, data=orjson.dumps(body),
                                 headers={"Content-Type": "application/json", **(headers or {})}) as r:
                return r.status

        event = {"messageId": "x", "phone": "34620000001", "status": "Delivered", "timestamp": "2024-06-03T10:00:05Z"}
        assert await post("/dlr/wa", event) == 401
        assert await post("/dlr/wa/not-the-secret", event) == 403
        assert await post("/dlr/wa?secret=not-the-secret", event) == 403
        assert await post("/dlr/nope/" + secret, event) == 404
        body = orjson.dumps(event)
        good = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert await post("/dlr/wa", event, {"X-Signature": "sha256=" + "0" * 64}) == 403
        assert await post("/dlr/wa", event, {"X-Signature": "sha256=" + good}) == 200  # kept, unmatched
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_reports") == 1
        async with http.post(d.url + "/dlr/wa/" + secret, data=b"not json {") as r:  # kept as it came
            assert r.status == 200
        assert await post("/dlr/wa/" + secret, {**event, "messageId": "nul\u0000id", "errorMessage": "a\u0000b"}) == 200
        odd = await conn.fetch(f"SELECT status, message_id, payload FROM {table}_reports WHERE id > 1 ORDER BY id")
        assert [(r["status"], r["message_id"]) for r in odd] == [("unknown", None), ("delivered", "nulid")]
        assert odd[0]["payload"] == {"raw": "not json {"}
        await conn.execute(f"DELETE FROM {table}_reports WHERE id > 1")
        # a report that comes before its message is sent: paired when the result lands (by recipient here)
        early = {"sms_id": 777001, "status_id": 7, "status_message": "delivered", "sendto": "+4915000000001",
                 "senttime": "2024-06-03 10:00:00", "channel_id": 1, "device_id": 260}
        assert await post("/dlr/phone/" + SECRETS["SMSGATEWAY24_DLR_SECRET"], early) == 200
        [wa, phone] = await insert(conn, table, [
            {"recipient": "+34620000001", "channel": "whatsapp", "variables": {"name": "Ana", "amount": "5"}},
            {"recipient": "+4915000000001", "body": "Parcel", "variables": {}}])
        await until(conn, f"SELECT count(*) = 2 FROM {table} WHERE status = 'sent'")
        mid = await conn.fetchval(f"SELECT provider_message_id FROM {table} WHERE id = $1", wa)
        await until(conn, f"SELECT delivery_status = 'delivered' FROM {table} WHERE id = $1", phone)
        assert await conn.fetchval(f"SELECT provider_message_id FROM {table} WHERE id = $1", phone) == "777001"
        # out of order and duplicated: delivered (10:00:05), then sent (10:00:01), delivered again, read, failed
        path = "/dlr/wa/" + secret
        for status, at in (("Delivered", "10:00:05"), ("Sent", "10:00:01"), ("Delivered", "10:00:05"),
                           ("Sent", "10:00:09")):
            assert await post(path, {**event, "messageId": mid, "status": status, "timestamp": f"2024-06-03T{at}Z"}) == 200
        state = await conn.fetchrow(f"SELECT delivery_status, delivery_rank, delivery_at FROM {table} WHERE id = $1", wa)
        assert state["delivery_status"] == "delivered"  # never back to sent
        assert state["delivery_at"] == dt.datetime(2024, 6, 3, 10, 0, 5, tzinfo=dt.UTC)
        assert await post(path, {**event, "messageId": mid, "status": "Read", "timestamp": "2024-06-03T10:01:00Z"}) == 200
        assert await post(path, [{**event, "messageId": mid, "status": "Delivered", "timestamp": "2024-06-03T10:02:00Z"},
                                 {**event, "messageId": "someone-else", "status": "Failed"}]) == 200  # a JSON list
        assert await conn.fetchval(f"SELECT delivery_status FROM {table} WHERE id = $1", wa) == "read"
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_reports WHERE outbox_id = $1", wa) == 6
        strangers = await conn.fetch(f"SELECT message_id FROM {table}_reports WHERE outbox_id IS NULL ORDER BY id")
        assert [r[0] for r in strangers] == ["x", "someone-else"]  # kept, not dropped
        payload = await conn.fetchval(f"SELECT payload FROM {table}_reports WHERE message_id = 'someone-else'")
        assert payload["status"] == "Failed"
        async with http.get(d.url + "/metrics") as r:
            text = await r.text()
        got = metrics(text)
        assert got[("dispatcher_reports_refused_total", (("provider", "wa"), ("reason", "wrong")))] == 3
        assert got[("dispatcher_reports_refused_total", (("provider", "wa"), ("reason", "missing")))] == 1


# -- suppression, rejections, scheduling, operations ---------------------------------------------------------

@run
async def test_opted_out_and_bad_rows_are_never_sent_and_unsubscribes_are_learnt(env, postgres_dsn, tmp_path, table):
    config = write_config(tmp_path, table, {"sms": nrs(env), "fr": nrs(env, False)},
                          routes={"sms": {"default": "sms", "prefixes": {"+33": "fr"}}},
                          campaigns={"promo": {"template": "Hola {name}"}})
    async with daemon(config) as d, db(postgres_dsn) as conn:
        await conn.execute(f"INSERT INTO {table}_suppressions (address, reason) VALUES ('+34600000002', 'asked')")
        ids = await insert(conn, table, [
            {"recipient": "+34 600 000 001", "body": "hello"},
            {"recipient": "600000002", "body": "hello"},  # national format: the same number, opted out
            {"recipient": "not a number", "body": "hello"},
            {"recipient": number(3), "campaign": "promo", "variables": {}},  # {name} missing
            {"recipient": number(4), "campaign": "nope", "body": "hello"},
            {"recipient": "a@example.com", "channel": "email", "provider": "sms", "body": "hello"},
            {"recipient": number(6), "channel": "voice", "body": "hello"},  # no route for voice
            {"recipient": number(7), "template": "Hi {name|shout}", "variables": {"name": "x"}},
            {"recipient": "+33 6 12 34 56 78", "template": "Salut {name|capitalize}", "variables": {"name": "léa"}},
        ])
        await until(conn, f"SELECT count(*) = $1 FROM {table} WHERE status IN ('sent', 'rejected')", len(ids))
        got = [(r["status"], r["code"]) for r in await conn.fetch(f"SELECT status, code FROM {table} ORDER BY id")]
        assert got == [("sent", None), ("rejected", "suppressed"), ("rejected", "invalid_number"),
                       ("rejected", "missing_variable"), ("rejected", "unknown_campaign"),
                       ("rejected", "channel_mismatch"), ("rejected", "no_route"), ("rejected", "bad_template"),
                       ("sent", None)]
        assert await conn.fetchval(f"SELECT sent_via FROM {table} WHERE id = $1", ids[-1]) == "fr"  # by prefix
        ledger = sorted(env.ledger("nrs360"), key=lambda e: e["to"])
        assert [(e["to"], e["text"]) for e in ledger] == [("33612345678", "Salut Léa"), ("34600000001", "hello")]
        ledger = ledger[1:]
        # the provider reports an unsubscribe (360nrs account event: form POST, message id only)
        async with aiohttp.ClientSession() as http:
            form = {"id": ledger[0]["id"], "channel": "sms", "event": "unsubscribed", "eventDate": "2024-06-03 10:00:00",
                    "extra": "{}", "contactId": "0", "campaignId": "0", "campaignName": ""}
            async with http.post(f"{d.url}/dlr/sms/{SECRETS['NRS360_DLR_SECRET']}", data=form) as r:
                assert r.status == 200
        await until(conn, f"SELECT count(*) = 1 FROM {table}_suppressions WHERE address = '+34600000001'")
        [again] = await insert(conn, table, [{"recipient": "0034600000001", "body": "hello again"}])
        await until(conn, f"SELECT status = 'rejected' FROM {table} WHERE id = $1", again)
        assert await conn.fetchval(f"SELECT code FROM {table} WHERE id = $1", again) == "suppressed"
        assert len(env.ledger("nrs360")) == 2


def test_a_claimed_row_carries_the_daemons_facts_beside_its_variables(tmp_path, monkeypatch):
    """RowValidator.build reads the claim's columns by name (their order is free) and makes each row a
    ClaimedRow; the chunk the engine gets holds the rows' variables as its record fields and nothing of
    the daemon's (no _to, _alias, body...), and the messages come from the ClaimedRows."""
    from dispatcher.daemon.outbox import RowsPreparer, RowValidator
    from dispatcher.daemon.outbox.rows import ClaimedChunk

    monkeypatch.setenv("DISPATCHER_DSN", "postgresql://u@127.0.0.1:1/db")
    sms = {"type": "nrs360", "url": "http://127.0.0.1:1", "username_env": "NRS360_USER", "password_env": "NRS360_PASSWORD"}
    cfg = load_daemon(write_config(tmp_path, "outbox", {"sms": sms}, campaigns={"promo": {"template": "Hi {name}: {body}"}}))
    columns = ("id", "recipient", "channel", "provider", "route", "campaign", "body", "template", "variables",
               "priority", "opted_out")
    claimed = [dict(zip(reversed(columns), reversed(row), strict=True)) for row in (  # another order than the query's
        (7, number(7), "sms", None, None, "promo", None, None, {"name": "Ann", "body": "mine"}, 3, False),
        (8, "600000008", "sms", None, None, None, "plain", None, {"body": "also mine"}, 0, False),  # national
        (9, number(9), "sms", None, None, None, "x", None, {}, 0, True),  # opted out
        (10, "nope", "sms", None, None, None, "x", None, {}, 0, False))]
    send, bad, unsure = RowValidator(cfg).build(claimed)
    assert [(r.seq, r.code) for r in bad] == [(9, "suppressed"), (10, "invalid_number")]
    assert unsure.ids == [8] and unsure.rows[0].to == number(8)  # its suppression is looked up by E.164
    send.extend(unsure)
    assert send.ids == [7, 8]
    first = send.rows[0]
    assert (first.to, first.alias, first.text, first.priority, first.group) == (number(7), "sms", "Hi Ann: mine", 3,
                                                                              "promo")
    chunk = ClaimedChunk.of(send)
    assert chunk.seq == [7, 8] and chunk.columns == {"name": ["Ann", MISSING], "body": ["mine", "also mine"]}
    assert claimed[0]["variables"] == {"name": "Ann", "body": "mine"}  # the claim's own dict is not written to
    later = chunk.take([1])
    assert later.seq == [8] and [r.id for r in later.claimed] == [8] and later.columns["body"] == ["also mine"]
    by_alias, rejected = RowsPreparer(lambda out, sms, bad: (out, bad), {"sms": "sms"}).prepare(chunk)
    assert rejected == []
    assert [(m.seq, m.to, m.text, m.vars, m.route, m.priority, m.group) for m in by_alias["sms"]] == [
        (7, number(7), "Hi Ann: mine", {"name": "Ann", "body": "mine"}, "sms", 3, "promo"),
        (8, number(8), "plain", {"body": "also mine"}, "sms", 0, "")]


@run
async def test_a_variable_named_body_is_the_users_own(env, postgres_dsn, tmp_path, table):
    """The daemon's own facts of a row (address, provider, rendered text) travel beside its variables, not
    written into them: a template reads {body} from the variables, and a WhatsApp template's parameter
    named `body` gets the variable (it was overwritten with the rendered text, empty here: rejected)."""
    providers = {"sms": nrs(env, False),
                 "wa": {"type": "sendix", "channel": "whatsapp", "url": env.url("sendix"),
                        "username_env": "SENDIX_USER", "password_env": "SENDIX_PASSWORD"}}
    config = write_config(tmp_path, table, providers, routes={"sms": "sms", "whatsapp": "wa"}, campaigns={
        "note": {"template": "Note: {body}"},
        "wa": {"options": {"template_name": "promo", "language": "es", "parameters": ["name", "body"]}}})
    async with daemon(config), db(postgres_dsn) as conn:
        ids = await insert(conn, table, [
            {"recipient": number(1), "campaign": "note", "variables": {"body": "call me"}},
            {"recipient": number(2), "body": "hello", "variables": {"body": "not the text"}},  # the column wins
            {"recipient": "+34620000001", "channel": "whatsapp", "campaign": "wa",
             "variables": {"name": "Ana", "body": "5.00"}}])
        await until(conn, f"SELECT count(*) = $1 FROM {table} WHERE status <> 'pending' AND status <> 'claimed'",
                    len(ids))
        got = [(r["status"], r["code"]) for r in await conn.fetch(f"SELECT status, code FROM {table} ORDER BY id")]
        assert got == [("sent", None)] * 3
    texts = sorted((e["to"], e["text"]) for e in env.ledger("nrs360"))
    assert texts == [(number(1)[1:], "Note: call me"), (number(2)[1:], "hello")]
    assert [(e["phone"], e["parameters"]) for e in env.ledger("sendix")] == [("34620000001", ["Ana", "5.00"])]


@run
async def test_not_before_and_sending_windows_hold_rows_back(env, postgres_dsn, tmp_path, table):
    other_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(dt.datetime.now(dt.UTC).weekday() + 3) % 7]
    config = write_config(tmp_path, table, {"sms": nrs(env)}, campaigns={
        "closed": {"window": {"days": other_day, "hours": "*", "tz": "UTC"}},
        "open": {"windows": [{"days": "*", "hours": "00:00-24:00", "tz": "Pacific/Kiritimati"}]}})
    async with daemon(config) as d, db(postgres_dsn) as conn:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        [closed, opened, scheduled, plain] = await insert(conn, table, [
            {"recipient": number(1), "campaign": "closed", "body": "promo"},
            {"recipient": number(2), "campaign": "open", "body": "promo"},
            {"recipient": number(3), "body": "reminder", "not_before": later},
            {"recipient": number(4), "body": "now"}])
        await until(conn, f"SELECT count(*) = 2 FROM {table} WHERE status = 'sent'")
        assert await conn.fetchval(f"SELECT status FROM {table} WHERE id = $1", scheduled) == "pending"
        await until(conn, f"SELECT status = 'sent' FROM {table} WHERE id = $1", scheduled)
        assert await conn.fetchval(f"SELECT finished_at FROM {table} WHERE id = $1", scheduled) >= later
        await asyncio.sleep(0.5)
        row = await conn.fetchrow(f"SELECT status, attempts FROM {table} WHERE id = $1", closed)
        assert (row["status"], row["attempts"]) == ("pending", 0)  # never claimed while its window is shut
        assert {e["to"] for e in env.ledger("nrs360")} == {number(i)[1:] for i in (2, 3, 4)}
        assert opened and plain
        # operations: health and metrics
        async with aiohttp.ClientSession() as http:
            async with http.get(d.url + "/healthz") as r:
                health = await r.json()
                assert r.status == 200 and health["status"] == "ok" and health["live_workers"] == 1
            await asyncio.sleep(0.3)
            async with http.get(d.url + "/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                text = await r.text()
        got = metrics(text)
        assert got[("dispatcher_messages_total", (("code", ""), ("provider", "sms"), ("status", "sent")))] == 3
        assert got[("dispatcher_in_flight", ())] == 0
        assert got[("dispatcher_rate_limit_per_second", (("provider", "sms"),))] > 0
        assert got[("dispatcher_throttled_total", (("provider", "sms"),))] == 0
        assert got[("dispatcher_queue_seconds_count", ())] == 3
        assert got[("dispatcher_request_seconds_bucket", (("le", "+Inf"), ("provider", "sms")))] >= 1
        assert got[("dispatcher_workers_live", ())] == 1 and got[("dispatcher_rate_share", ())] == 1
        assert "dispatcher_outbox_rows" in text


@run
async def test_rows_for_a_halted_provider_wait_instead_of_failing(env, postgres_dsn, tmp_path, table):
    """Out of credit: nothing fails; every row goes back to pending for a while, to go out when credit is back."""
    env.config("nrs360", credits=0)
    config = write_config(tmp_path, table, {"sms": nrs(env, batch_size=1, concurrency=1)},
                          defaults={"sender": "ACME", "template": "Hi {name}"})
    async with daemon(config) as d, db(postgres_dsn) as conn:
        await bulk(conn, table, 3)  # one claim: all three on their way when the provider halts
        await bulk(conn, table, 3, start=3)  # claimed after the halt: not even tried
        await until(conn, f"SELECT count(*) = 6 FROM {table} WHERE status = 'pending' "
                          "AND not_before > now() + interval '20 s' AND attempts = 0")
        assert d.engine is not None and d.engine.halted()["sms"].code == "111"
        assert d.source.deferred_rows == 6 and d.engine.stats.deferred == 6
    assert env.ledger("nrs360") == []


@run
async def test_retry_failed_puts_failed_rows_back_and_they_are_sent_once(env, postgres_dsn, tmp_path, table):
    """`dispatcher daemon CFG --retry-failed --code C`: the failed rows with that code go back to pending and
    out once; rejected rows and other failures stay as they are."""
    env.config("nrs360", error_rate=1.0)
    config = write_config(tmp_path, table, {"sms": nrs(env, reports=False, batch_size=5, max_attempts=1,
                                                       circuit_failures=1000)},
                          defaults={"sender": "ACME", "template": "Hi {name}"}, retry_for=0)  # fail at once
    async with daemon(config), db(postgres_dsn) as conn:
        await bulk(conn, table, 20)
        await conn.execute(f"INSERT INTO {table} (recipient, variables) VALUES ('+34 12', '{{}}')")  # rejected
        await until(conn, f"SELECT count(*) = 21 FROM {table} WHERE status IN ('failed', 'rejected')")
        codes = {r[0] for r in await conn.fetch(f"SELECT DISTINCT code FROM {table} WHERE status = 'failed'")}
        assert len(codes) == 1
        env.config("nrs360", error_rate=0.0)
        done = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(config), "--retry-failed",
                               "--code", codes.pop()], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "DISPATCHER_DSN": postgres_dsn})
        assert done.returncode == 0, done.stderr
        assert "20 failed row(s) with code" in done.stdout
        await until(conn, f"SELECT count(*) = 20 FROM {table} WHERE status = 'sent'")
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE status = 'rejected'") == 1
    per_number = Counter(e["to"] for e in env.ledger("nrs360"))
    assert len(per_number) == 20 and max(per_number.values()) == 1


def test_retry_failed_filters_need_the_flag(tmp_path):
    cfg = tmp_path / "d.toml"
    cfg.write_text('[daemon]\ndsn_env = "X"\n')
    done = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(cfg), "--code", "500"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "X": "postgresql://u@h/d"})
    assert done.returncode == 2 and "go with --retry-failed" in done.stderr


@run
async def test_an_outage_costs_time_not_messages(env, postgres_dsn, tmp_path, table):
    """Every request answered 5xx for a while: rows are rescheduled in the outbox with backoff (holding no
    claim), then all go out once the provider is back; none fails. Past retry_for they would fail."""
    env.config("nrs360", error_rate=1.0)
    config = write_config(tmp_path, table, {"sms": nrs(env, reports=False, batch_size=10, max_attempts=2,
                                                       circuit_cooldown=0.1)},
                          defaults={"sender": "ACME", "template": "Hi {name}"}, retry_base=0.2, retry_max=0.5)
    async with daemon(config) as d, db(postgres_dsn) as conn:
        await bulk(conn, table, 50)
        # down long enough that every row went back to the outbox at least twice
        await until(conn, f"SELECT bool_and(coalesce((meta->>'retries')::int, 0) >= 2) FROM {table}", timeout=60)
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE status = 'failed'") == 0
        env.config("nrs360", error_rate=0.0)  # back
        await until(conn, f"SELECT count(*) = 50 FROM {table} WHERE status = 'sent'", timeout=60)
        assert d.source.rescheduled >= 100 and d.source.retries_failed == 0
        async with aiohttp.ClientSession() as http, http.get(d.url + "/metrics") as r:
            got = metrics(await r.text())
        assert got[("dispatcher_rescheduled_total", ())] == d.source.rescheduled
        assert got[("dispatcher_retry_for_expired_total", ())] == 0
    per_number = Counter(e["to"] for e in env.ledger("nrs360"))
    assert len(per_number) == 50 and max(per_number.values()) == 1


@run
async def test_a_row_fails_once_its_retry_for_is_over(env, postgres_dsn, tmp_path, table):
    env.config("nrs360", error_rate=1.0)
    config = write_config(tmp_path, table, {"sms": nrs(env, reports=False, batch_size=10, max_attempts=1,
                                                       circuit_failures=1000)},
                          defaults={"sender": "ACME", "template": "Hi {name}"}, retry_base=0.1, retry_max=0.2,
                          retry_for=0.5)
    async with daemon(config) as d, db(postgres_dsn) as conn:
        await bulk(conn, table, 5)
        await until(conn, f"SELECT count(*) = 5 FROM {table} WHERE status = 'failed'", timeout=30)
        row = await conn.fetchrow(f"SELECT code, error, (meta->>'retries')::int AS retries FROM {table} LIMIT 1")
        assert row["code"] == "101" and row["error"] and row["retries"] >= 1  # 360nrs: 101 Internal database error
        assert d.source.retries_failed == 5
    assert env.ledger("nrs360") == []


@run
async def test_a_campaign_the_provider_would_refuse_rejects_its_rows_before_sending(env, postgres_dsn, tmp_path,
                                                                                     table):
    """A 17-character 360nrs sender (code 107 for every request): the campaign's rows are rejected at claim,
    naming the campaign and the rule; the other campaign's rows go out; nothing wrong reaches the provider."""
    config = write_config(tmp_path, table, {"sms": nrs(env, reports=False)},
                          defaults={"sender": "ACME", "template": "Hi {name}"},
                          campaigns={"long": {"sender": "ACME-Seventeen-Ch"}})
    async with daemon(config), db(postgres_dsn) as conn:
        await bulk(conn, table, 3, campaign="long")
        await bulk(conn, table, 2, start=10)
        await until(conn, f"SELECT count(*) = 5 FROM {table} WHERE status IN ('sent', 'rejected')")
        bad = await conn.fetch(f"SELECT code, error FROM {table} WHERE campaign = 'long'")
        assert {r["code"] for r in bad} == {"bad_campaign"}
        assert "campaign 'long'" in bad[0]["error"] and "code 107" in bad[0]["error"]
    assert len(env.ledger("nrs360")) == 2


# -- a service: priority traffic beside a backlog ----------------------------------------------------


async def overtaken(conn: asyncpg.Connection, table: str, pid: int) -> int:
    """Rows of priority 0 that finished after the priority row `pid` was inserted and before it finished."""
    return await conn.fetchval(f"""SELECT count(*) FROM {table} o, {table} p WHERE p.id = $1 AND o.priority = 0
        AND o.finished_at > p.created_at AND o.finished_at < p.finished_at""", pid)


@pytest.mark.parametrize("batch_size", [1, 20])
@run
async def test_a_priority_message_overtakes_a_backlog(env, postgres_dsn, tmp_path, table, batch_size):
    """5,000 rows queued, then priority ones: each goes out in the next requests, not behind the backlog
    (the daemon claims about a second of sending, and the lane puts urgent messages first, in a request
    of their own). Before, a claim took 2,000 rows into memory and a priority row waited behind them."""
    rate, concurrency = 10, 2
    config = write_config(tmp_path, table, {"sms": nrs(env, reports=False, rate=rate, batch_size=batch_size,
                                                       concurrency=concurrency)},
                          defaults={"sender": "ACME", "template": "Hi {name}"})
    async with daemon(config), db(postgres_dsn) as conn:
        await bulk(conn, table, 5000)
        await until(conn, f"SELECT count(*) >= {2 * batch_size} FROM {table} WHERE status = 'sent'")
        for i in range(3):
            [pid] = await insert(conn, table, [{"recipient": number(900_000 + i), "priority": 10,
                                                "variables": {"name": "urgent"}}])
            await until(conn, f"SELECT status = 'sent' FROM {table} WHERE id = $1", pid)
            # a second of sending (rate x batch) plus what the workers held: far below the backlog
            bound = (rate * 1 + concurrency + 2) * batch_size
            assert await overtaken(conn, table, pid) <= bound
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE status = 'pending'") > 4000
    sent = [r for r in env.ledger("nrs360") if r["to"].startswith("3460090")]
    assert len(sent) == 3
