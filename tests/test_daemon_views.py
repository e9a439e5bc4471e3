"""What the operator's page reads, through the API (issue 26's gaps): providers' retries and last error,
campaigns' cost, a message's events, the last failures newest first. A real daemon, a real PostgreSQL,
the simulators."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from test_daemon import daemon, db, env, nrs, number, run, table, until, write_config
from test_daemon_api import api_env, call, conforms

__all__ = ["api_env", "env", "table"]  # fixtures, imported for pytest


def config(tmp_path: Any, table: str, sim: Any, **provider: Any) -> Any:
    settings = {"rate": 200, "batch_size": 10, **provider}
    path = write_config(tmp_path, table, {"sms": nrs(sim, reports=False, **settings)},
                        campaigns={"promo": {"template": "Hola {name}"}, "other": {"template": "Hi {name}"}})
    path.write_text(path.read_text().replace('[http]\n', '[http]\napi_key_env = "DISPATCHER_API_KEY"\n'))
    return path


async def providers(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """/healthz's providers, once the engine's lanes are up (polled, at most 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        async with http.get(url + "/healthz") as r:
            found = (await r.json())["providers"]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


@run
async def test_a_provider_shows_its_retries_and_its_last_error_with_code_and_time(api_env, postgres_dsn, tmp_path,
                                                                                   table):
    api_env.config("nrs360", error_rate=0.5)  # half the requests answered 500 (360nrs: code 101): retried until they go
    async with daemon(config(tmp_path, table, api_env, max_attempts=20)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        [p] = await providers(http, d.url)
        assert p["retries"] == 0 and p["last_error"] is None  # nothing went wrong yet
        status, _ = await call(http, "POST", d.url + "/v1/messages",
                               {"messages": [{"to": number(i), "campaign": "promo", "variables": {"name": "x"}}
                                             for i in range(100)]})
        assert status == 202
        await until(conn, f"SELECT count(*) = 100 FROM {table} WHERE status = 'sent'", timeout=60)
        [p] = await providers(http, d.url)
        errors = api_env.stats("nrs360")["errors_injected"]
        assert errors > 0
        assert p["retries"] >= 10 and p["retries"] % 10 == 0  # each 5xx put its batch of 10 back
        [lane] = d.engine.snapshot()  # /healthz shows the health monitor's last sample (every 0.5 s)
        assert lane.retries == d.engine.stats.retried >= p["retries"]  # one provider: its count is the engine's
        last = p["last_error"]
        assert last["code"] == "101" and last["error"] and last["at"].endswith("+00:00"), last


@run
async def test_a_campaign_costs_its_units_times_the_providers_price_sent_and_delivered(api_env, postgres_dsn,
                                                                                       tmp_path, table):
    """The price the blast's --dry-run multiplies (per SMS part, else per message), of the provider that took
    each row: of the sent rows, and of those a report said delivered."""
    path = write_config(tmp_path, table, {"sms": nrs(api_env, rate=200, batch_size=10, price=0.05)},
                        campaigns={"promo": {"template": "Hola {name}"}, "other": {"template": "Hi {name}"}})
    path.write_text(path.read_text().replace('[http]\n', '[http]\napi_key_env = "DISPATCHER_API_KEY"\n'))
    long_text = "Your parcel is on its way and will arrive tomorrow between nine and two. " * 3  # 2 parts
    messages = [{"to": number(i), "campaign": "promo", "variables": {"name": "Ana"}} for i in range(10)]
    messages += [{"to": number(100 + i), "campaign": "promo", "body": long_text} for i in range(5)]
    async with daemon(path) as d, db(postgres_dsn) as conn, aiohttp.ClientSession() as http:
        status, _ = await call(http, "POST", d.url + "/v1/messages", {"messages": messages})
        assert status == 202
        await until(conn, f"SELECT count(*) = 15 FROM {table} WHERE delivery_status = 'delivered'")
        assert await conn.fetchval(f"SELECT sum(parts) FROM {table}") == 20
        status, promo = await call(http, "GET", d.url + "/v1/campaigns/promo")
        assert status == 200 and conforms(promo, "Campaign")["cost"] == {"sent": 1.0, "delivered": 1.0}
        # a report says one long message was not delivered: it costs, sent, but not among the delivered
        await conn.execute(f"UPDATE {table} SET delivery_status = 'undelivered', delivery_rank = 3 "
                           f"WHERE id = (SELECT max(id) FROM {table})")
        status, listed = await call(http, "GET", d.url + "/v1/campaigns")
        by_name = {c["name"]: conforms(c, "Campaign") for c in listed["campaigns"]}
        assert by_name["promo"]["cost"] == {"sent": 1.0, "delivered": 0.9}
        assert by_name["other"]["cost"] == {"sent": 0.0, "delivered": 0.0}
