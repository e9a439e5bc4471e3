"""The HTTP API by the conventions developers know: RFC 9457 problem documents on every non-2xx, a
request id on every answer, `Idempotency-Key`, `Location`, and input PostgreSQL cannot hold refused as a
422 (never a 500). A real daemon, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import aiohttp
import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from test_daemon import daemon, db, env, number, run, table
from test_daemon_api import API_KEY, api_env, config, conforms, receiver

__all__ = ["api_env", "env", "table"]  # fixtures, imported for pytest
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def answer(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    data = orjson.dumps(body) if body is not None else None
    async with http.request(method, url, data=data, headers={"Content-Type": "application/json", **AUTH,
                                                             **(headers or {})}) as r:
        raw = await r.read()
        return r.status, r.headers.copy(), orjson.loads(raw) if raw else None


def is_problem(status: int, headers: Any, body: Any, want: int) -> dict[str, Any]:
    assert status == want, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == want and body["type"].startswith("https://") and body["title"] and body["detail"]
    return conforms(body, "Error")


@run
async def test_every_error_is_a_problem_document_with_the_request_id(api_env, postgres_dsn, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d, aiohttp.ClientSession() as http:
        api = d.url + "/v1/messages"
        s, h, b = await answer(http, "GET", d.url + "/v1/nowhere", headers={"X-Request-Id": "trace-42"})
        assert is_problem(s, h, b, 404)["request_id"] == "trace-42" and h["X-Request-Id"] == "trace-42"
        s, h, b = await answer(http, "DELETE", api)
        is_problem(s, h, b, 405)
        assert "POST" in h["Allow"]
        s, h, b = await answer(http, "GET", d.url + "/v1/messages/1", headers={"Authorization": ""})
        is_problem(s, h, b, 401)
        s, h, b = await answer(http, "GET", d.url + "/v1/messages/999999")
        assert is_problem(s, h, b, 404)["code"] == "not_found"
        s, h, b = await answer(http, "POST", api, {"messages": [{"to": ""}]})
        assert is_problem(s, h, b, 422)["errors"][0]["field"] == "messages[0].to"
        ids = {h["X-Request-Id"] for _ in range(3) for h in [(await answer(http, "GET", d.url + "/v1/openapi.json"))[1]]}
        assert len(ids) == 3  # made here when the client sends none


@run
async def test_a_nul_anywhere_is_a_422_bad_characters_and_nothing_is_stored(api_env, postgres_dsn, tmp_path, table,
                                                                           caplog):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        api = d.url + "/v1/messages"
        ok = {"to": number(1), "body": "hi"}
        hostile = [{**ok, "body": "a\x00b"}, {**ok, "key": "k\x00"}, {**ok, "campaign": "\x00"},
                   {"to": number(2), "template": "Hi {name}", "variables": {"name": "x\x00"}},
                   {"to": number(3), "template": "Hi {name}", "variables": {"name": "x", "n\x00": "y"}},
                   {"to": number(4), "template": "Hi {name}", "variables": {"name": "x", "deep": [{"a": "\x00"}]}}]
        with caplog.at_level(logging.ERROR, logger="dispatcher.daemon"):
            for m in hostile:
                s, h, b = await answer(http, "POST", api, {"messages": [m]})
                assert any(e["code"] == "bad_characters" for e in is_problem(s, h, b, 422)["errors"]), (m, b)
            s, h, b = await answer(http, "GET", api + "?key=%00")
            assert is_problem(s, h, b, 422)["code"] == "bad_characters"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback: not a 500
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0


@run
async def test_the_idempotency_key_header_stores_once_and_location_points_at_it(api_env, postgres_dsn, tmp_path,
                                                                               table):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        api = d.url + "/v1/messages"
        m = {"messages": [{"to": number(1), "body": "your code is 1234", "not_before": "2099-01-01T00:00:00Z"}]}
        s1, h1, b1 = await answer(http, "POST", api, m, headers={"Idempotency-Key": "order-77"})
        s2, h2, b2 = await answer(http, "POST", api, m, headers={"Idempotency-Key": "order-77"})
        assert (s1, s2) == (202, 202) and b2 == b1 and h2["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in h1
        assert h1["Location"] == f"/v1/messages/{b1['messages'][0]['id']}" == h2["Location"]
        s, h, b = await answer(http, "GET", d.url + h1["Location"])
        assert s == 200 and b["key"] == "order-77"
        other = {"messages": [{"to": number(1), "body": "your code is 9999"}]}
        s, h, b = await answer(http, "POST", api, other, headers={"Idempotency-Key": "order-77"})
        assert is_problem(s, h, b, 422)["code"] == "idempotency_key_reused"
        two = {"messages": [{"to": number(2), "body": "a", "not_before": "2099-01-01T00:00:00Z"},
                            {"to": number(3), "body": "b", "not_before": "2099-01-01T00:00:00Z"}]}
        for _ in range(2):
            s, h, b = await answer(http, "POST", api, two, headers={"Idempotency-Key": "batch-1"})
            assert s == 202 and "Location" not in h
        assert [r["key"] for r in await conn.fetch(f"SELECT key FROM {table} ORDER BY id")] == \
            ["order-77", "batch-1/0", "batch-1/1"]


@pytest.mark.parametrize("path", ["/v1/messages/12", "/v1/messages?key=x"])
@run
async def test_an_unexpected_error_is_a_500_problem_with_one_log_line(api_env, postgres_dsn, tmp_path, table, path,
                                                                     caplog, monkeypatch):
    async with daemon(config(tmp_path, table, api_env)) as d, aiohttp.ClientSession() as http:
        async def broken(*args: Any) -> Any:
            raise RuntimeError("a bug, with a secret-looking detail")
        monkeypatch.setattr(d.api, "_one", broken)
        with caplog.at_level(logging.ERROR, logger="dispatcher.daemon"):
            s, h, b = await answer(http, "GET", d.url + path)
        body = is_problem(s, h, b, 500)
        assert "secret-looking" not in orjson.dumps(body).decode() and body["request_id"] in body["detail"]
        [line] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert body["request_id"] in line.getMessage() and line.exc_info is not None


@run
async def test_webhooks_are_standard_webhooks_signed_with_every_secret_while_one_rotates(
        api_env, postgres_dsn, tmp_path, table, monkeypatch):
    """Each POST carries webhook-id, webhook-timestamp and one v1 signature per secret: the reference
    library verifies it with the new secret and with the old one; a changed timestamp or id does not verify
    (so a captured POST cannot be passed off as a fresh one)."""
    new = base64.b64encode(b"a new key of 32 random-ish bytes!").decode()
    monkeypatch.setenv("DISPATCHER_HOOK_SECRET", f"whsec_{new} the-old-plain-secret")
    async with receiver() as hook, daemon(config(tmp_path, table, api_env, hook.url)) as d, \
            aiohttp.ClientSession() as http:
        s, _, _ = await answer(http, "POST", d.url + "/v1/messages", {"messages": [{"to": number(1), "body": "hi"}]})
        assert s == 202
        await asyncio.wait_for(hook.got.wait(), 20)
    body, headers = hook.posts[0]
    for secret in (f"whsec_{new}", b"the-old-plain-secret"):
        assert Webhook(secret).verify(body, headers)["events"][0]["status"] == "queued"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-id"].startswith("evt_")
    for tampered in ({"webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)}, {"webhook-id": "evt_0_0"}):
        with pytest.raises(WebhookVerificationError):
            Webhook(f"whsec_{new}").verify(body, {**headers, **tampered})
    with pytest.raises(WebhookVerificationError):
        Webhook(b"some other secret").verify(body, headers)
