"""The HTTP API and webhooks as the ecosystem expects them (issue 27): Idempotency-Key with Stripe's
semantics kept in PostgreSQL, several API keys, hostile input on every handler never a 500, webhooks that
honour Retry-After and 410, `--listen`, and schemathesis (all checks) against a live daemon finding nothing.
A real daemon, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from standardwebhooks import Webhook
from test_api_conventions import AUTH, answer, is_problem
from test_daemon import daemon, db, env, number, run, table, until
from test_daemon_api import API_KEY, HOOK_SECRET, api_env, config, serving

from dispatcher.daemon.api import api_keys
from dispatcher.daemon.cli import _parser
from dispatcher.daemon.idempotency import Keys
from dispatcher.daemon.webhooks import retry_after

__all__ = ["api_env", "env", "table"]  # fixtures, imported for pytest
LATER = "2099-01-01T00:00:00Z"  # not sent during the test: the rows stay queued


def idem(table: str) -> str:
    schema, _, base = table.rpartition(".")
    return f"{schema}.{base}_idempotency"


@run
async def test_an_idempotency_key_replays_the_first_answer_across_restarts_and_expires(api_env, postgres_dsn,
                                                                                        tmp_path, table):
    path = config(tmp_path, table, api_env)
    m = {"messages": [{"to": number(1), "body": "your code is 1234"}]}
    async with daemon(path) as d, db(postgres_dsn) as conn, aiohttp.ClientSession() as http:
        api = d.url + "/v1/messages"
        async with http.post(api, json=m, headers={**AUTH, "Idempotency-Key": "pay-1"}) as r:
            first = (r.status, await r.read(), r.headers["Location"])
            assert "Idempotent-Replayed" not in r.headers
        await until(conn, f"SELECT count(*) = 1 FROM {table} WHERE status = 'sent'")
    async with daemon(path) as d, db(postgres_dsn) as conn, aiohttp.ClientSession() as http:  # another process
        api = d.url + "/v1/messages"
        async with http.post(api, json=m, headers={**AUTH, "Idempotency-Key": "pay-1"}) as r:
            assert (r.status, await r.read(), r.headers["Location"]) == first  # byte for byte
            assert r.headers["Idempotent-Replayed"] == "true"
        s, h, b = await answer(http, "POST", api, {"messages": [{"to": number(2), "body": "x"}]},
                               headers={"Idempotency-Key": "pay-1"})
        assert is_problem(s, h, b, 422)["code"] == "idempotency_key_reused"
        # a claim still being answered (another daemon mid-request): 409 with Retry-After, nothing stored
        await conn.execute(f"INSERT INTO {idem(table)} (key, request_hash) VALUES ('busy', 'h')")
        s, h, b = await answer(http, "POST", api, m, headers={"Idempotency-Key": "busy"})
        assert is_problem(s, h, b, 409)["code"] == "idempotency_key_in_flight" and h["Retry-After"] == "1"
        # after 24 h the key is forgotten: the same request is new again
        await conn.execute(f"UPDATE {idem(table)} SET created_at = now() - interval '25 hours' WHERE key = 'pay-1'")
        await conn.execute(f"UPDATE {table} SET key = NULL")  # the message's own key too (a new one may come)
        s, h, b = await answer(http, "POST", api, m, headers={"Idempotency-Key": "pay-1"})
        assert s == 202 and "Idempotent-Replayed" not in h and b["messages"][0]["duplicate"] is False
        await until(conn, f"SELECT count(*) = 2 FROM {table} WHERE status = 'sent'")
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2  # each POST went out once


@run
async def test_a_refused_request_is_replayed_too_and_a_5xx_is_not_kept(api_env, postgres_dsn, tmp_path, table,
                                                                       monkeypatch):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        api = d.url + "/v1/messages"
        bad = {"messages": [{"to": ""}]}
        one = await answer(http, "POST", api, bad, headers={"Idempotency-Key": "bad-1"})
        two = await answer(http, "POST", api, bad, headers={"Idempotency-Key": "bad-1"})
        assert one[0] == two[0] == 422 and one[2] == two[2] and two[1]["Idempotent-Replayed"] == "true"

        async def broken(*args: Any) -> Any:
            raise RuntimeError("a bug")
        monkeypatch.setattr(d.api, "store", broken)
        ok = {"messages": [{"to": number(1), "body": "hi", "not_before": LATER}]}
        s, h, b = await answer(http, "POST", api, ok, headers={"Idempotency-Key": "retry-me"})
        is_problem(s, h, b, 500)
        assert await conn.fetchval(f"SELECT count(*) FROM {idem(table)} WHERE key = 'retry-me'") == 0
        monkeypatch.undo()
        monkeypatch.setenv("DISPATCHER_API_KEY", API_KEY)
        s, h, b = await answer(http, "POST", api, ok, headers={"Idempotency-Key": "retry-me"})
        assert s == 202 and "Idempotent-Replayed" not in h


@run
async def test_every_handler_takes_hostile_input_without_a_500(api_env, postgres_dsn, tmp_path, table, caplog):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        api = d.url + "/v1/messages"
        cases: list[tuple[str, str, Any, dict[str, str], int]] = [
            ("GET", api + "/%C2%B2", None, {}, 400),  # '²' is a digit to str.isdigit, not to int()
            ("GET", api + "/" + "9" * 40, None, {}, 400),
            ("GET", api + "/%00", None, {}, 422),
            ("GET", api + "?key=%ED%A0%80", None, {}, 404),  # not UTF-8: decoded to U+FFFD, a key like any
            ("GET", api + "?key=" + "k" * 5000, None, {}, 404),
            ("GET", api + "?campaign=%00", None, {}, 422),  # the list's parameters too
            ("GET", d.url + "/v1/campaigns/a%00b", None, {}, 422),  # and every route's path parameters
            ("POST", api + "/%00/cancel", None, {}, 422),
            ("POST", api, {"messages": [{"to": number(1), "body": "a\x00"}]}, {"Idempotency-Key": "n"}, 422),
            ("POST", api, {"messages": [{"to": number(1), "body": "x"}]}, {"Idempotency-Key": "x" * 300}, 400),
            ("POST", api, {"messages": [{"to": number(1), "variables": {"a": {"b": ["\x00"]}}, "template": "{a}"}]},
             {}, 422),
            ("POST", api, {"messages": [{"to": number(1), "body": "x", "priority": 1e300}]}, {}, 422),
            ("POST", api, {"messages": {"to": 1}}, {}, 422),
            ("POST", api, [1, 2], {}, 400),
        ]
        with caplog.at_level(logging.ERROR, logger="dispatcher.daemon"):
            for method, url, body, headers, want in cases:
                s, h, b = await answer(http, method, url, body, headers=headers)
                assert s == want, (url, body, b)
                if s >= 400:
                    is_problem(s, h, b, want)
            async with http.post(api, data=b'{"messages": [{"to": "\\ud800"}]}', headers={
                    **AUTH, "Content-Type": "application/json"}) as r:  # a lone surrogate: not JSON orjson takes
                assert r.status == 400 and r.content_type == "application/problem+json"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0


def test_several_api_keys_by_name_and_bare():
    keys = api_keys("current:0123456789abcdef0123 old:fedcba9876543210fedc  barekey-0123456789abc")
    assert keys == {"current": b"0123456789abcdef0123", "old": b"fedcba9876543210fedc",
                    "key3": b"barekey-0123456789abc"}
    assert api_keys("https://not-a-name:x") == {"key1": b"https://not-a-name:x"}  # too short to be name:key


@run
async def test_each_of_several_api_keys_works_and_its_name_is_logged(api_env, postgres_dsn, tmp_path, table,
                                                                     monkeypatch, caplog):
    monkeypatch.setenv("DISPATCHER_API_KEY", "new:new-key-0123456789abcd old:old-key-0123456789abcd")
    async with daemon(config(tmp_path, table, api_env)) as d, aiohttp.ClientSession() as http:
        with caplog.at_level(logging.INFO, logger="dispatcher.daemon"):
            for key, want in (("new-key-0123456789abcd", 404), ("old-key-0123456789abcd", 404),
                              ("new:new-key-0123456789abcd", 403), (API_KEY, 403)):
                s, h, b = await answer(http, "GET", d.url + "/v1/messages/7", headers={"Authorization": f"Bearer {key}"})
                is_problem(s, h, b, want)
        used = [r.getMessage() for r in caplog.records if "in use" in r.getMessage()]
        assert used == ["API key 'new' in use", "API key 'old' in use"]
        assert "new-key" not in caplog.text and d.api.used == {"new": 1, "old": 1}


def test_listen_flag_sets_where_the_listener_binds():
    args = _parser().parse_args(["daemon.toml", "--listen", "0.0.0.0:9011"])
    assert args.listen == ("0.0.0.0", 9011)
    assert _parser().parse_args(["d.toml", "--listen", "[::1]:0"]).listen == ("::1", 0)
    with pytest.raises(SystemExit):
        _parser().parse_args(["d.toml", "--listen", "nowhere"])


def test_retry_after_in_seconds_or_as_a_date():
    assert retry_after("3") == 3.0 and retry_after(None) == 0.0 and retry_after("soon") == 0.0
    assert retry_after("999999") == 3600.0
    from email.utils import formatdate
    assert 8 <= retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10


class Answers:
    """A webhook receiver answering from a script (status, headers) then 200; it records each POST's time."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.posts: list[tuple[float, bytes, dict[str, str]]] = []
        self.got = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((time.monotonic(), await request.read(), dict(request.headers)))
        status, headers = self.script.pop(0) if self.script else (200, {})
        if status == 200:
            self.got.set()
        return web.Response(status=status, headers=headers)


@contextlib.asynccontextmanager
async def answers(script: list[tuple[int, dict[str, str]]]) -> AsyncIterator[Answers]:
    r = Answers(script)
    async with serving("/hook", r.handle) as r.url:
        yield r


@run
async def test_webhooks_wait_for_retry_after_and_come_again_under_the_same_id(api_env, postgres_dsn, tmp_path,
                                                                              table):
    async with answers([(429, {"Retry-After": "1"}), (503, {"Retry-After": "1"})]) as hook, \
            daemon(config(tmp_path, table, api_env, hook.url)) as d, aiohttp.ClientSession() as http:
        s, _, _ = await answer(http, "POST", d.url + "/v1/messages",
                               {"messages": [{"to": number(1), "body": "hi", "not_before": LATER}]})
        assert s == 202
        await asyncio.wait_for(hook.got.wait(), 20)
    (t1, b1, h1), (t2, b2, h2), (t3, b3, h3) = hook.posts[:3]
    assert t2 - t1 >= 0.95 and t3 - t2 >= 0.95  # backoff_max is 0.3 s: the waits are the receiver's
    assert b1 == b2 == b3 and h1["webhook-id"] == h2["webhook-id"] == h3["webhook-id"]
    assert Webhook(HOOK_SECRET.encode()).verify(b3, h3)["events"][0]["status"] == "queued"


@run
async def test_webhooks_stop_for_an_endpoint_that_answers_410(api_env, postgres_dsn, tmp_path, table, caplog):
    async with answers([(410, {})]) as hook, daemon(config(tmp_path, table, api_env, hook.url)) as d, \
            db(postgres_dsn) as conn, aiohttp.ClientSession() as http:
        with caplog.at_level(logging.ERROR, logger="dispatcher.daemon"):
            for i in range(2):
                s, _, _ = await answer(http, "POST", d.url + "/v1/messages",
                                       {"messages": [{"to": number(i), "body": "hi", "not_before": LATER}]})
                assert s == 202
                await until(conn, f"SELECT count(*) > 0 FROM {table}_events WHERE attempts > 0 OR {i} = 1")
            deadline = time.monotonic() + 10
            while not d.webhooks.gone and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # would be three more POSTs at backoff_max 0.3 s, were it still sending
        assert d.webhooks.gone and len(hook.posts) == 1
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_events WHERE delivered_at IS NULL") >= 2
        assert any("410 Gone" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(180)
@run
async def test_schemathesis_with_all_checks_finds_nothing(api_env, postgres_dsn, tmp_path, table):
    """The contract, checked the way a client developer would: schemathesis (all checks, 50 examples an
    operation, a fixed seed) against a live daemon; its report is the assertion message."""
    settings = tmp_path / "schemathesis.toml"
    # a schema-valid request may still be a 422: the API checks what a schema cannot say (that `to` is a
    # phone number, that a campaign is configured, that an Idempotency-Key is not reused with another body)
    # links: the document's own (a message's `id` to its routes) and Location headers; not guessed from field
    # names, which took `message_id` (the provider's id) for a message's id
    settings.write_text('[checks.positive_data_acceptance]\n'
                        'expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]\n'
                        '[phases.stateful.inference]\nalgorithms = ["location-headers"]\n')
    async with daemon(config(tmp_path, table, api_env)) as d:
        proc = await asyncio.create_subprocess_exec(
            os.path.join(os.path.dirname(sys.executable), "schemathesis"), "--config-file", str(settings),
            "run", d.url + "/v1/openapi.json", "--checks", "all", "--max-examples", "50", "--seed", "1", "--generation-database", "none",
            "--no-color", "-H", f"Authorization: Bearer {API_KEY}", "--request-timeout", "10",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
            cwd=tmp_path)  # its cache (.schemathesis/) goes there, not into the checkout
        out, _ = await asyncio.wait_for(proc.communicate(), 150)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]


def test_a_report_time_to_the_minute_gives_way_to_the_receive_time_within_that_minute():
    """NRS's report times have no seconds; delivery.at was cut to the minute, earlier than finished_at."""
    import datetime as dt

    from dispatcher.providers.dlr import when
    now = dt.datetime(2026, 12, 6, 19, 20, 37, 123456, tzinfo=dt.UTC)
    assert when("2026-12-06 19:20", now) == now
    assert when("2026-12-06 19:20:05", now) == now.replace(second=5, microsecond=0)  # seconds given: kept
    assert when("2026-12-06 19:18", now) == now.replace(minute=18, second=0, microsecond=0)  # not this minute


def test_the_example_receiver_verifies_what_the_daemon_signs_and_refuses_a_stale_timestamp():
    import importlib.util
    from pathlib import Path

    from dispatcher.daemon.webhooks import keys, signed
    spec = importlib.util.spec_from_file_location(
        "webhook_receiver", Path(__file__).parent.parent / "examples" / "webhook_receiver.py")
    assert spec is not None and spec.loader is not None
    receiver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(receiver)
    new = "whsec_" + base64.b64encode(b"the new secret, 32 bytes long!!!").decode()
    body, now = b'{"events": []}', int(time.time())
    headers = signed(keys(f"{new} old-plain-secret-0123"), "evt_1_5", now, body)
    assert receiver.verify(new, headers, body) is None and receiver.verify("old-plain-secret-0123", headers, body) is None
    Webhook(new).verify(body, headers)  # the reference library agrees
    assert receiver.verify(new, headers, body + b" ") == "no signature matches"
    assert "5 minutes" in receiver.verify(new, headers, body, now=now + 301)
    assert receiver.verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body) == "no signature matches"


@run
async def test_racing_daemons_create_the_idempotency_table_once(postgres_dsn):
    """Eight daemons' first claims at once, on a table not made yet: each claim succeeds (the table's
    creation is serialised; CREATE TABLE IF NOT EXISTS alone races on the row type and answers 500)."""
    pool = await asyncpg.create_pool(postgres_dsn, min_size=8, max_size=8)
    try:
        for round_ in range(20):  # a fresh table each round: the race is on its creation (3 in 3 old runs lost it)
            outbox = f"t_{uuid.uuid4().hex[:10]}.outbox"
            async with pool.acquire() as conn:
                await conn.execute(f"CREATE SCHEMA {outbox.split('.')[0]}")
            keys = [Keys(pool, outbox) for _ in range(8)]
            got = await asyncio.gather(*(k.claim(f"k{round_}-{i}", "h") for i, k in enumerate(keys)))
            assert got == [None] * 8  # every key is fresh: every request holds its own
            async with pool.acquire() as conn:
                assert await conn.fetchval(f"SELECT count(*) FROM {idem(outbox)}") == 8
    finally:
        await pool.close()


@run
async def test_concurrent_posts_with_one_idempotency_key_store_one_message(api_env, postgres_dsn, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        m = {"messages": [{"to": number(1), "body": "once", "not_before": LATER}]}
        got = await asyncio.gather(*(answer(http, "POST", d.url + "/v1/messages", m,
                                            headers={"Idempotency-Key": "race-1"}) for _ in range(8)))
        firsts = [b for s, h, b in got if s == 202 and "Idempotent-Replayed" not in h]
        assert len(firsts) == 1
        for s, h, b in got:
            assert (s == 202 and b == firsts[0]) or (s == 409 and h["Retry-After"] == "1"), (s, b)
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1
