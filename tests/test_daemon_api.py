"""The daemon as a service: its HTTP API, signed status webhooks, LISTEN/NOTIFY, honest health and logs.

A real PostgreSQL (conftest), the simulators, and a webhook receiver in this process, all over local HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import orjson
import pytest
from aiohttp import web
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from standardwebhooks import Webhook
from test_daemon import Proc, daemon, db, env, insert, metrics, nrs, number, run, table, until, write_config

from dispatcher.daemon.openapi import complete, document
from dispatcher.logs import JsonFormatter
from dispatcher.model import Message
from dispatcher.providers import HttpRequest, Outcome, Provider, Settings, Verdict, kinds
from dispatcher.providers.dlr import Report

__all__ = ["env", "table"]  # fixtures, imported for pytest
API_KEY = "api-key-0123456789abcdef"
HOOK_SECRET = "hook-secret-0123456789"
DOC = complete(document())
REGISTRY = Registry().with_resource("urn:api", Resource.from_contents(DOC, default_specification=DRAFT202012))


def conforms(data: Any, schema: str) -> Any:
    """The answer matches the OpenAPI document's schema (a real JSON Schema 2020-12 / OAS 3.1 validator)."""
    OAS31Validator({"$ref": f"urn:api#/components/schemas/{schema}"}, registry=REGISTRY).validate(data)
    return data


@pytest.fixture
def api_env(env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DISPATCHER_API_KEY", API_KEY)
    monkeypatch.setenv("DISPATCHER_HOOK_SECRET", HOOK_SECRET)
    return env


class Receiver:
    """A webhook receiver: answers `fail` POSTs with 503, then 200; keeps what it took and its signatures."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.posts: list[tuple[bytes, dict[str, str]]] = []  # accepted: (raw body, its headers)
        self.refused = 0
        self.up = True
        self.url = ""
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.up or self.refused < self.fail:
            self.refused += 1
            return web.Response(status=503)
        self.posts.append((body, dict(request.headers)))
        self.got.set()
        return web.Response(text="ok")

    def events(self) -> list[dict[str, Any]]:
        """Every event taken, after checking each POST's Standard Webhooks signature with the library."""
        out = []
        for body, headers in self.posts:
            Webhook(HOOK_SECRET.encode()).verify(body, headers)  # raises on a bad signature
            out.extend(orjson.loads(body)["events"])
        return out


@contextlib.asynccontextmanager
async def serving(path: str, handler: Any) -> AsyncIterator[str]:
    """`handler` answering POST `path` on a free local port, for the test's length: its URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def receiver(fail: int = 0) -> AsyncIterator[Receiver]:
    r = Receiver(fail)
    async with serving("/hook", r.handle) as r.url:
        yield r


def config(tmp_path: Any, table: str, sim: Any, hook: str | None = None, **kw: Any) -> Any:
    path = write_config(tmp_path, table, {"sms": nrs(sim, reports=False, rate=200, batch_size=100)},
                        campaigns={"promo": {"template": "Hola {name}"}}, **kw)
    text = path.read_text().replace('[http]\n', '[http]\napi_key_env = "DISPATCHER_API_KEY"\n')
    if hook:
        text += (f'\n[webhooks]\nurl = "{hook}"\nsecret_env = "DISPATCHER_HOOK_SECRET"\nbatch = 200\n'
                 'backoff_max = 0.3\ntimeout = 2\n')
    path.write_text(text)
    return path


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None, *,
               key: str | None = API_KEY, raw: bytes | None = None,
               content_type: str = "application/json") -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    async with http.request(method, url, data=data, headers=headers) as r:
        text = await r.read()
        return r.status, orjson.loads(text) if text else None


# -- the "Done when" --------------------------------------------------------------------------

@run
async def test_500_posted_twice_are_sent_once_readable_and_each_has_a_signed_sent_webhook(api_env, postgres_dsn,
                                                                                          tmp_path, table):
    async with receiver(fail=3) as hook, daemon(config(tmp_path, table, api_env, hook.url)) as d, \
            db(postgres_dsn) as conn, aiohttp.ClientSession() as http:
        messages = [{"to": number(i), "body": f"Your code is {i}", "key": f"order-{i}"} for i in range(500)]
        status, first = await call(http, "POST", d.url + "/v1/messages", {"messages": messages})
        assert status == 202, first
        conforms(first, "SubmitResponse")
        ids = [m["id"] for m in first["messages"]]
        assert len(set(ids)) == 500 and [m["key"] for m in first["messages"]] == [m["key"] for m in messages]
        assert {m["status"] for m in first["messages"]} == {"queued"}
        status, again = await call(http, "POST", d.url + "/v1/messages", {"messages": messages})
        assert status == 202 and [m["id"] for m in again["messages"]] == ids  # the stored ids, nothing enqueued
        assert all(m["duplicate"] for m in again["messages"])
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 500
        await until(conn, f"SELECT count(*) = 500 FROM {table} WHERE status = 'sent'", timeout=60)
        ledger = api_env.ledger("nrs360")
        assert len(ledger) == 500 and len({e["to"] for e in ledger}) == 500
        for oid in ids:
            status, row = await call(http, "GET", f"{d.url}/v1/messages/{oid}")
            assert status == 200 and row["status"] == "sent" and row["message_id"], row
        conforms(row, "Message")
        status, by_key = await call(http, "GET", d.url + "/v1/messages?key=order-7")
        assert status == 200 and by_key["id"] == ids[7] and by_key["parts"] == 1
        conforms(by_key, "Message")
        deadline = time.monotonic() + 30
        while sum(e["status"] == "sent" for e in hook.events()) < 500:
            assert time.monotonic() < deadline, f"webhooks: {len(hook.events())} events so far"
            hook.got.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hook.got.wait(), 1)
        assert hook.refused >= 3  # it failed first, then recovered: nothing lost
        per: dict[int, list[str]] = defaultdict(list)
        for e in hook.events():
            per[e["id"]].append(e["status"])
            assert e["key"] == f"order-{ids.index(e['id'])}"
            if e["status"] == "sent":
                assert e["provider"] == "sms" and e["message_id"]
        assert set(per) == set(ids)
        assert all(s[0] == "queued" and s.count("sent") == 1 and s.index("sent") > 0 for s in per.values())
        while d.webhooks is not None and d.webhooks.delivered < 1000:  # the last batch's commit follows its POST
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        async with http.get(d.url + "/metrics") as r:
            got = metrics(await r.text())
        assert got[("dispatcher_api_messages_total", (("outcome", "duplicate"),))] == 500
        assert got[("dispatcher_api_requests_total", (("route", "post"), ("status", "202")))] == 2
        assert got[("dispatcher_webhook_events_delivered_total", ())] >= 1000
        assert got[("dispatcher_webhook_posts_total", (("result", "failed"),))] >= 3


# -- bad input ------------------------------------------------------------------------------------------

@run
async def test_bad_requests_get_precise_errors_and_store_nothing(api_env, postgres_dsn, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        url = d.url + "/v1/messages"
        ok = {"to": number(1), "body": "hi"}

        async def refused(want: int, body: Any = None, **kw: Any) -> list[dict[str, Any]]:
            status, answer = await call(http, "POST", url, body, **kw)
            assert status == want, answer
            conforms(answer, "Error")
            return answer["errors"]

        assert (await call(http, "POST", url, {"messages": [ok]}, key=None))[0] == 401
        assert (await call(http, "POST", url, {"messages": [ok]}, key="wrong-key"))[0] == 403
        assert (await call(http, "GET", d.url + "/v1/messages/1", key=None))[0] == 401
        await refused(400, raw=b'{"messages": [')
        await refused(415, raw=orjson.dumps({"messages": [ok]}), content_type="text/plain")
        await refused(413, raw=b'{"messages": [' + b" " * (5 * 1024 * 1024) + b"]}")
        [e] = await refused(422, {"messages": [ok] * 1001})
        assert "1,001 messages" in e["message"] and e["field"] == "messages"
        errors = await refused(422, {"messages": [
            ok,
            {"to": "", "body": "hi"},
            {"to": number(2), "body": "hi", "not_before": "tomorrow at nine"},
            {"to": number(3), "body": "hi", "channel": "pigeon"},
            {"to": number(4), "body": "hi", "provider": "nope"},
            {"to": number(5), "bdy": "hi"},
            {"to": "not a number", "body": "hi"},
            {"to": number(7), "campaign": "promo", "variables": {}},
            {"to": number(8), "body": "hi", "campaign": "nope"},
            {"to": number(9), "template": "Hi {name|shout}", "variables": {"name": "x"}},
            {"to": number(10), "body": "hi", "channel": "voice"},
        ]})
        by = {(e["field"], e["code"]): e["message"] for e in errors}
        assert set(by) == {
            ("messages[1].to", "required"), ("messages[2].not_before", "format"),
            ("messages[3].channel", "unknown_channel"), ("messages[4].provider", "no_route"),
            ("messages[5].bdy", "unknown_field"), ("messages[6].to", "invalid_number"),
            ("messages[7].variables", "missing_variable"), ("messages[8].campaign", "unknown_campaign"),
            ("messages[9].template", "bad_template"), ("messages[10].channel", "no_route")}
        assert "did you mean 'body'?" in by[("messages[5].bdy", "unknown_field")]
        assert "not a valid phone number" in by[("messages[6].to", "invalid_number")]
        unknown, missing = await refused(422, {"mesages": [ok]})  # a near miss, so no messages at all
        assert "did you mean 'messages'?" in unknown["message"] and missing["field"] == "messages"
        # the same key with another payload: 409 with both hashes, nothing stored from that request
        assert (await call(http, "POST", url, {"messages": [{**ok, "key": "k1"}]}))[0] == 202
        [c] = await refused(409, {"messages": [{"to": number(20), "body": "new"}, {**ok, "body": "bye", "key": "k1"}]})
        assert c["field"] == "messages[1].key" and c["stored_hash"] != c["posted_hash"]
        assert c["stored_hash"] in c["message"] and c["posted_hash"] in c["message"]
        [c] = await refused(409, {"messages": [{**ok, "key": "k2"}, {**ok, "body": "other", "key": "k2"}]})
        # the same payload spelled differently (field order, the default channel written out) is the same
        status, same = await call(http, "POST", url, {"messages": [{"channel": "sms", "key": "k1", **ok}]})
        assert status == 202 and same["messages"][0]["duplicate"]
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1  # only k1's row
        status, answer = await call(http, "GET", d.url + "/v1/messages/999999")
        assert status == 404 and conforms(answer, "Error")
        assert (await call(http, "GET", d.url + "/v1/messages/abc"))[0] == 400
        assert (await call(http, "GET", d.url + "/v1/messages?key="))[0] == 400  # no list: test_daemon_control


@run
async def test_concurrent_posts_of_the_same_keys_store_each_key_once(api_env, postgres_dsn, tmp_path, table):
    later = "2099-01-01T00:00:00+00:00"  # not sent: only the intake is under test
    body = {"messages": [{"to": number(i), "body": "hi", "key": f"c{i}", "not_before": later} for i in range(200)]}
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        backwards = {"messages": body["messages"][::-1]}  # the same keys in the other order too
        answers = await asyncio.gather(*(call(http, "POST", d.url + "/v1/messages", body) for _ in range(3)),
                                       call(http, "POST", d.url + "/v1/messages", backwards))
        answers[-1][1]["messages"].reverse()
        assert [status for status, _ in answers] == [202] * 4
        ids = {tuple(m["id"] for m in a["messages"]) for _, a in answers}
        assert len(ids) == 1  # every request answered the same id for each key
        assert sum(not m["duplicate"] for _, a in answers for m in a["messages"]) == 200  # each key queued once
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 200
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_events WHERE status = 'queued'") == 200


@run
async def test_the_api_and_the_sql_route_reject_the_same_rows(api_env, postgres_dsn, tmp_path, table):
    """One validator (RowValidator.check): what the API refuses up front, the claim path rejects with the same code."""
    rows = [{"to": "not a number", "body": "x"}, {"to": number(1), "campaign": "promo", "variables": {}},
            {"to": number(2), "campaign": "nope", "body": "x"}, {"to": "a@example.com", "channel": "email", "body": "x"},
            {"to": number(4), "template": "Hi {name|shout}", "variables": {"name": "x"}},
            {"to": number(5), "body": "x", "provider": "nope"}]
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        codes = []
        for m in rows:
            status, answer = await call(http, "POST", d.url + "/v1/messages", {"messages": [m]})
            assert status == 422
            codes.append(answer["errors"][0]["code"])
        await insert(conn, table, [{"recipient": m["to"], "variables": m.get("variables", {}),
                                    **{k: v for k, v in m.items() if k not in ("to", "variables")}} for m in rows])
        await until(conn, f"SELECT count(*) = $1 FROM {table} WHERE status = 'rejected'", len(rows))
        assert [r[0] for r in await conn.fetch(f"SELECT code FROM {table} ORDER BY id")] == codes


def test_the_openapi_document_is_valid_and_served():
    validate_spec(DOC)  # openapi-spec-validator: OpenAPI 3.1
    assert DOC["openapi"].startswith("3.1")
    assert {"/v1/messages", "/v1/messages/{id}", "/v1/messages/{id}/cancel", "/v1/campaigns",
            "/v1/openapi.json"} <= set(DOC["paths"])
    ops = [(m, op) for ops in DOC["paths"].values() for m, op in ops.items()]
    assert len({op["operationId"] for _, op in ops}) == len(ops) and all(op["tags"] for _, op in ops)
    assert DOC["servers"] and {"messages", "meta"} <= {t["name"] for t in DOC["tags"]}
    for _, op in ops:  # every answer documented, with an example where it has a schema of ours
        assert {"405", "500"} <= set(op["responses"])
        for status, response in op["responses"].items():
            for media in response.get("content", {}).values():
                assert "example" in media or "$ref" not in media["schema"], (op["operationId"], status)


@run
async def test_openapi_json_is_served_without_a_key(api_env, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d, aiohttp.ClientSession() as http, \
            http.get(d.url + "/v1/openapi.json") as r:
        assert r.status == 200 and orjson.loads(await r.read()) == orjson.loads(orjson.dumps(DOC))


# -- webhooks and LISTEN ------------------------------------------------------------------------------

@run
async def test_events_wait_in_the_table_through_a_receiver_outage_and_a_daemon_restart(api_env, postgres_dsn,
                                                                                       tmp_path, table):
    async with receiver() as hook, db(postgres_dsn) as conn:
        hook.up = False
        path = config(tmp_path, table, api_env, hook.url)
        async with daemon(path) as d, aiohttp.ClientSession() as http:
            status, _ = await call(http, "POST", d.url + "/v1/messages",
                                   {"messages": [{"to": number(i), "body": "hi", "key": f"r{i}"} for i in range(5)]})
            assert status == 202
            await until(conn, f"SELECT count(*) = 5 FROM {table} WHERE status = 'sent'")
            await until(conn, f"SELECT count(*) >= 3 FROM {table}_events WHERE attempts > 0")  # tried, refused
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_events WHERE delivered_at IS NULL") == 10
        assert hook.posts == []
        hook.up = True
        async with daemon(path):  # a new daemon delivers what the stopped one could not
            await until(conn, f"SELECT count(*) = 0 FROM {table}_events WHERE delivered_at IS NULL")
        got = [(e["key"], e["status"]) for e in hook.events()]
        assert sorted(got) == sorted([(f"r{i}", s) for i in range(5) for s in ("queued", "sent")])
        for i in range(5):
            assert [s for k, s in got if k == f"r{i}"] == ["queued", "sent"]  # in order per message


@run
async def test_events_older_than_max_age_are_given_up_counted_and_kept(api_env, postgres_dsn, tmp_path, table):
    async with receiver() as hook, db(postgres_dsn) as conn:
        hook.up = False
        path = config(tmp_path, table, api_env, hook.url)
        path.write_text(path.read_text() + "max_age = 0.5\n")
        async with daemon(path) as d:
            await insert(conn, table, [{"recipient": number(1), "body": "hi"}])
            await until(conn, f"SELECT count(*) >= 2 FROM {table}_events WHERE given_up_at IS NOT NULL")
            deadline = time.monotonic() + 10
            while d.webhooks is not None and d.webhooks.given_up < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_events") == 2  # kept


@run
async def test_sql_inserts_and_results_reach_listen_dispatcher_events(api_env, postgres_dsn, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)), db(postgres_dsn) as conn, db(postgres_dsn) as listener:
        heard: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener("dispatcher_events", lambda *a: heard.put_nowait(a[3]))
        [oid] = await insert(conn, table, [{"recipient": number(1), "body": "hi", "key": "sql-1"}])
        assert await asyncio.wait_for(heard.get(), 10) == table
        await until(conn, f"SELECT status = 'sent' FROM {table} WHERE id = $1", oid)
        assert await asyncio.wait_for(heard.get(), 10) == table
        rows = await conn.fetch(f"SELECT status, key, provider, message_id FROM {table}_events WHERE outbox_id = $1 "
                                "ORDER BY id", oid)
        assert [(r["status"], r["key"]) for r in rows] == [("queued", "sql-1"), ("sent", "sql-1")]
        assert rows[1]["provider"] == "sms" and rows[1]["message_id"]
        # a delivery report settles the row: one more event, named for the application
        await conn.execute(f"UPDATE {table} SET delivery_status = 'delivered', delivery_rank = 3 WHERE id = $1", oid)
        await conn.execute(f"UPDATE {table} SET delivery_status = 'expired', delivery_rank = 3 WHERE id = $1", oid)
        rows = await conn.fetch(f"SELECT status, code FROM {table}_events WHERE outbox_id = $1 ORDER BY id", oid)
        assert [tuple(r) for r in rows][2:] == [("delivered", None), ("undelivered", "expired")]


# -- health and logs --------------------------------------------------------------------------------

@run
async def test_a_halted_provider_is_logged_at_once_and_health_says_degraded(api_env, postgres_dsn, tmp_path, table,
                                                                            caplog):
    api_env.config("nrs360", credits=0)
    caplog.set_level(logging.INFO, logger="dispatcher.daemon")
    path = config(tmp_path, table, api_env, stats_every=0.5)
    async with daemon(path) as d, db(postgres_dsn) as conn, aiohttp.ClientSession() as http:
        async with http.get(d.url + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        t0 = time.monotonic()
        await insert(conn, table, [{"recipient": number(1), "body": "hi"}])
        deadline = t0 + 10
        while not any(r.levelno == logging.WARNING and "-> halted" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no WARNING for the halt"
            await asyncio.sleep(0.05)
        warned = time.monotonic() - t0
        [line] = [r.getMessage() for r in caplog.records if "-> halted" in r.getMessage()]
        assert "provider sms (nrs360): " in line and "-> halted: 111" in line and "credit" in line.lower()
        async with http.get(d.url + "/healthz") as r:
            health = await r.json()
        assert r.status == 200 and health["status"] == "degraded"  # it can still work: 200, not 503
        [p] = health["providers"]
        assert p["provider"] == "sms" and p["state"] == "halted" and p["code"] == "111" and p["since"]
        async with http.get(d.url + "/metrics") as r:
            got = metrics(await r.text())
        assert got[("dispatcher_provider_state", (("provider", "sms"), ("state", "halted")))] == 1
        assert got[("dispatcher_provider_state", (("provider", "sms"), ("state", "sending")))] == 0
        assert got[("dispatcher_provider_state_changes_total", (("provider", "sms"), ("state", "halted")))] == 1
        await until(conn, f"SELECT count(*) >= 1 FROM {table}_events WHERE status = 'deferred'")  # not failed
        assert await conn.fetchval(f"SELECT count(*) FROM {table}_events WHERE status = 'failed'") == 0
        deadline = time.monotonic() + 5
        while not any(r.levelno == logging.INFO and r.getMessage().startswith("last 0.5 s: sms:")
                      for r in caplog.records):
            assert time.monotonic() < deadline, "no INFO line with counts"
            await asyncio.sleep(0.05)
    assert warned < 5, f"the halt was logged {warned:.1f} s after the row came"  # the sampling is every 0.5 s


@run
async def test_health_is_503_only_while_the_daemon_cannot_use_its_database(api_env, postgres_dsn, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        async def health() -> tuple[int, str]:
            async with http.get(d.url + "/healthz") as r:
                return r.status, (await r.json())["status"]

        assert await health() == (200, "ok")
        schema = table.split(".")[0]
        await conn.execute(f"ALTER TABLE {table}_workers RENAME TO gone")  # every heartbeat fails now
        deadline = time.monotonic() + 10
        while await health() != (503, "unhealthy"):
            assert time.monotonic() < deadline, "still healthy without a database"
            await asyncio.sleep(0.1)
        await conn.execute(f"ALTER TABLE {schema}.gone RENAME TO outbox_workers")
        while await health() != (200, "ok"):
            assert time.monotonic() < deadline + 10, "not healthy again with the database back"
            await asyncio.sleep(0.1)


def test_a_daemon_with_log_format_json_writes_one_object_a_line(api_env, postgres_dsn, tmp_path, table):
    path = config(tmp_path, table, api_env, log_format="json")
    proc = Proc(path, "json-logs", tmp_path)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    lines = proc.log.read_text().splitlines()
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) >= 2 and {r["level"] for r in records} <= {"info", "warning"}
    assert any("json-logs on http://127.0.0.1:" in r["message"] for r in records)
    assert API_KEY not in proc.log.read_text()


def test_json_log_lines_are_one_object_each():
    record = logging.LogRecord("dispatcher.daemon", logging.WARNING, __file__, 1, "provider %s: %s", ("sms", "x\ny"),
                               None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = orjson.loads(line)
    assert data["level"] == "warning" and data["message"] == "provider sms: x\ny" and data["logger"] == "dispatcher.daemon"
    assert data["time"].endswith("+00:00")


# -- a provider is one module: reports read by the provider, callbacks wired by it -----------------------

@dataclass(slots=True)
class PigeonSettings(Settings):
    report_to: str = ""  # where the provider posts its delivery reports (set by `callback`)


class Pigeon(Provider):
    """A provider that exists only in this test: the daemon must send through it and read its reports
    without a line of daemon code knowing it."""

    kind = "pigeon"
    channels = frozenset({"sms"})
    default_rate = 100.0
    settings_class = PigeonSettings

    def build(self, batch: Sequence[Message]) -> HttpRequest:
        s = cast(PigeonSettings, self.settings)
        [m] = batch
        return HttpRequest("POST", s.url + "/send", {"Content-Type": "application/json"},
                           orjson.dumps({"msisdn": m.to, "text": m.text, "report_to": s.report_to}))

    def parse(self, batch: Sequence[Message], status: int, headers: Mapping[str, str], body: bytes) -> list[Outcome]:
        return [Outcome(Verdict.SENT, message_id=orjson.loads(body)["ref"])] if status == 200 else \
            [Outcome(Verdict.FAILED, code=str(status))]

    # -- delivery reports --
    def callback(self, url: str) -> bool:
        cast(PigeonSettings, self.settings).report_to = url
        return True

    def report_item(self, it: dict[str, Any], now: dt.datetime) -> Report:
        return Report(self.alias, it["ref"], "+" + it["msisdn"].lstrip("+"),
                      {"OK": "delivered", "KO": "undelivered"}[it["state"]], it["state"], now, it)


@run
async def test_a_provider_defined_only_here_sends_and_its_reports_are_read_by_its_own_module(
        api_env, postgres_dsn, tmp_path, table, monkeypatch):
    monkeypatch.setitem(kinds(), "pigeon", Pigeon)
    monkeypatch.setenv("PIGEON_DLR_SECRET", "pigeon-secret-0123456789")
    sent: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def report(to: str, ref: str, url: str) -> None:
        async with aiohttp.ClientSession() as http, \
                http.post(url, json={"ref": ref, "msisdn": to, "state": "OK" if to.endswith("1") else "KO"}) as r:
            assert r.status == 200

    async def send(request: web.Request) -> web.Response:
        m = await request.json()
        sent.append(m)
        ref = f"pg-{len(sent)}"
        t = asyncio.create_task(report(m["msisdn"], ref, m["report_to"]))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        return web.json_response({"ref": ref})

    app = web.Application()
    app.router.add_post("/send", send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    path = write_config(tmp_path, table, {"p": {"type": "pigeon", "url": url, "dlr_secret_env": "PIGEON_DLR_SECRET"}})
    try:
        async with daemon(path), db(postgres_dsn) as conn:
            await insert(conn, table, [{"recipient": number(1), "body": "coo"}, {"recipient": number(2), "body": "coo"}])
            await until(conn, f"SELECT count(*) = 2 FROM {table} WHERE delivery_status IS NOT NULL")
            got = {r[0]: (r[1], r[2]) for r in await conn.fetch(
                f"SELECT sent_to, delivery_status, provider_message_id FROM {table}")}
            assert got == {number(1): ("delivered", "pg-1"), number(2): ("undelivered", "pg-2")} or \
                got == {number(1): ("delivered", "pg-2"), number(2): ("undelivered", "pg-1")}
            assert all(m["report_to"].startswith("http://127.0.0.1:") and "/dlr/p/" in m["report_to"] for m in sent)
            events = {tuple(r) for r in await conn.fetch(f"SELECT status, code FROM {table}_events WHERE status "
                                                         "IN ('delivered', 'undelivered')")}
            assert events == {("delivered", None), ("undelivered", "undelivered")}
    finally:
        await runner.cleanup()
