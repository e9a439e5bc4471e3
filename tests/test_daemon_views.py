"""What the operator's page reads, through the API (issue 26's gaps): providers' retries and last error,
campaigns' cost, a message's events, the last failures newest first. A real daemon, a real PostgreSQL,
the simulators."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from test_daemon import daemon, db, env, insert, nrs, number, run, table, until, write_config
from test_daemon_api import API_KEY, api_env, call, conforms

from dispatcher.daemon.outbox import TableNames, every_sql, migrations
from dispatcher.daemon.views import SPAN, Throughput
from dispatcher.pg import migrate

__all__ = ["api_env", "env", "table"]  # fixtures, imported for pytest


def config(tmp_path: Any, table: str, sim: Any, **provider: Any) -> Any:
    settings = {"rate": 200, "batch_size": 10, **provider}
    path = write_config(tmp_path, table, {"sms": nrs(sim, reports=False, **settings)},
                        campaigns={"promo": {"template": "Hola {name}"}, "other": {"template": "Hi {name}"}})
    path.write_text(path.read_text().replace('[http]\n', '[http]\napi_key_env = "DISPATCHER_API_KEY"\n'))
    return path


async def providers(http: aiohttp.ClientSession, url: str,
                    ready: Callable[[list[dict[str, Any]]], bool] = bool) -> list[dict[str, Any]]:
    """/healthz's providers once `ready` says so (by default: once the engine's lanes are up); polled, at
    most 10 s (/healthz shows the health monitor's last sample, taken every 0.5 s)."""
    deadline = time.monotonic() + 10
    while True:
        async with http.get(url + "/healthz") as r:
            found = (await r.json())["providers"]
        if ready(found) or time.monotonic() > deadline:
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
        [lane] = d.engine.snapshot()  # all sent: nothing more is retried
        assert lane.retries == d.engine.stats.retried  # one provider: its count is the engine's
        [p] = await providers(http, d.url, lambda ps: ps[0]["retries"] == lane.retries)  # the monitor's next sample
        errors = api_env.stats("nrs360")["errors_injected"]
        assert errors > 0
        assert p["retries"] == lane.retries >= 10 and p["retries"] % 10 == 0  # each 5xx put its batch of 10 back
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


@run
async def test_a_messages_events_are_listed_oldest_first_a_page_at_a_time(api_env, postgres_dsn, tmp_path, table):
    path = write_config(tmp_path, table, {"sms": nrs(api_env, rate=200, batch_size=10)},
                        campaigns={"promo": {"template": "Hola {name}"}})
    path.write_text(path.read_text().replace('[http]\n', '[http]\napi_key_env = "DISPATCHER_API_KEY"\n'))
    async with daemon(path) as d, db(postgres_dsn) as conn, aiohttp.ClientSession() as http:
        status, posted = await call(http, "POST", d.url + "/v1/messages",
                                    {"messages": [{"to": number(1), "campaign": "promo", "key": "k-1",
                                                   "variables": {"name": "Ana"}}]})
        oid = posted["messages"][0]["id"]
        await until(conn, f"SELECT delivery_status = 'delivered' FROM {table} WHERE id = $1", oid)
        url = f"{d.url}/v1/messages/{oid}/events"
        status, page = await call(http, "GET", url)
        assert status == 200 and conforms(page, "EventPage")["next_cursor"] is None
        assert [e["status"] for e in page["events"]] == ["queued", "sent", "delivered"]
        stored = await conn.fetch(f"SELECT id, status FROM {table.replace('outbox', 'outbox_events')} "
                                  "WHERE outbox_id = $1 ORDER BY id", oid)
        assert [(e["event_id"], e["status"]) for e in page["events"]] == [tuple(r) for r in stored]
        sent = page["events"][1]
        assert sent["id"] == oid and sent["provider"] == "sms" and sent["message_id"]
        # a page at a time: each next_cursor leads to the rest, the last page says null
        seen, cursor = [], "0"
        for _ in range(5):
            status, part = await call(http, "GET", f"{url}?limit=1&cursor={cursor}")
            assert status == 200 and len(conforms(part, "EventPage")["events"]) == 1
            seen += part["events"]
            cursor = part["next_cursor"]
            if cursor is None:
                break
        assert seen == page["events"]
        # an id that was never a message is a 404; bad parameters are 400s, each an RFC 9457 problem
        for bad, want in ((f"{d.url}/v1/messages/99999999/events", 404), (f"{url}?limit=0", 400),
                          (f"{url}?limit=1001", 400), (f"{url}?cursor=-1", 400), (f"{url}?after=3", 400),
                          (f"{d.url}/v1/messages/0/events", 400), (f"{d.url}/v1/messages/x/events", 400)):
            async with http.get(bad, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
                assert r.status == want and r.content_type == "application/problem+json", (bad, r.status)
                conforms(await r.json(), "Error")
        async with http.get(url) as r:
            assert r.status == 401  # behind the key like the rest


@run
async def test_the_listing_reads_newest_first_with_a_cursor_both_ways(api_env, postgres_dsn, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        await insert(conn, table, [{"recipient": "12", "body": f"bad {i}"} for i in range(7)])  # rejected at claim
        await until(conn, f"SELECT count(*) = 7 FROM {table} WHERE status = 'rejected'")
        status, everything = await call(http, "GET", d.url + "/v1/messages?status=rejected&limit=100")
        ascending = [m["id"] for m in everything["messages"]]
        newest, cursor = [], None
        for _ in range(5):
            status, page = await call(http, "GET", d.url + "/v1/messages?status=failed,rejected&order=desc&limit=3"
                                      + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200 and conforms(page, "MessagePage")
            newest += [m["id"] for m in page["messages"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert newest == ascending[::-1] and len(newest) == 7  # the same rows, newest first
        status, page = await call(http, "GET", d.url + f"/v1/messages?order=asc&status=rejected&cursor={newest[3]}")
        assert [m["id"] for m in page["messages"]] == ascending[4:]  # the cursor is an id, either way
        status, problem = await call(http, "GET", d.url + "/v1/messages?order=sideways")
        assert status == 400 and problem["code"] == "bad_parameter"


def test_throughput_is_each_seconds_difference_of_the_running_totals():
    counts: Counter[tuple[str, str, str]] = Counter()
    t = Throughput(lambda: counts)
    t0 = 1_800_000_000
    counts[("sms", "sent", "")] += 40
    t.note(t0 + 0.2)
    counts[("sms", "sent", "")] += 10
    counts[("sms", "failed", "101")] += 3
    t.note(t0 + 0.9)  # the same second: its totals replace the first note's
    counts[("sms", "rejected", "bad_number")] += 2
    t.note(t0 + 3.5)  # nothing written in the seconds between
    s = t.series(t0 + 5)
    assert len(s["sent"]) == len(s["failed"]) == SPAN and s["until"].startswith("2027-01-15T08:00:05")
    assert s["sent"][-5:] == [50, 0, 0, 0, 0] and s["failed"][-5:] == [3, 0, 0, 2, 0]
    assert t.series(t0 + 4)["failed"][-1] == 2  # the current second is left out until it is over
    counts[("sms", "sent", "")] += 7
    t.note(t0 + SPAN + 10)  # the early seconds fall out; the totals they reached stay the base
    late = t.series(t0 + SPAN + 11)
    assert sum(late["sent"]) == 7 and sum(late["failed"]) == 0 and len(t.samples) == 1


@run
async def test_the_throughput_route_counts_what_the_worker_wrote(api_env, postgres_dsn, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        await insert(conn, table, [{"recipient": "12", "body": "bad"}])  # rejected: a failure in the chart
        status, _ = await call(http, "POST", d.url + "/v1/messages",
                               {"messages": [{"to": number(i), "campaign": "promo", "variables": {"name": "x"}}
                                             for i in range(60)]})
        assert status == 202
        await until(conn, f"SELECT count(*) = 61 FROM {table} WHERE status IN ('sent', 'rejected')")
        deadline = time.monotonic() + 5
        while True:  # the second of the last write must be over before it is shown
            status, series = await call(http, "GET", d.url + "/v1/throughput")
            if sum(series["sent"]) == 60 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert status == 200 and conforms(series, "Throughput")
        assert sum(series["sent"]) == 60 and sum(series["failed"]) == 1 and len(series["sent"]) == SPAN
        status, problem = await call(http, "GET", d.url + "/v1/throughput?since=1")
        assert status == 400 and problem["code"] == "unknown_parameter"


@run
async def test_bad_input_to_the_read_routes_is_a_problem_never_a_500(api_env, postgres_dsn, tmp_path, table):
    """Digits that are not ASCII ('²', '١٢'), NUL, a lone surrogate, numbers past 18 digits, empty values:
    every one an RFC 9457 problem (400 or 422), on every route the page reads."""
    async with daemon(config(tmp_path, table, api_env)) as d, aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        bad = ["\u00b2", "\u0661\u0662", "%00", "%ED%A0%80", "1" * 19, "-1", "", "1e3", " 1"]
        urls = []
        for v in bad:
            urls += [f"/v1/messages?cursor={v}", f"/v1/messages?limit={v}",
                     f"/v1/messages?status=failed&order=desc&cursor={v}", f"/v1/messages/1/events?cursor={v}",
                     f"/v1/messages/1/events?limit={v}", f"/v1/throughput?x={v}"]
            if v:  # (an empty order is the default, asc)
                urls += [f"/v1/messages?order={v}", f"/v1/messages/{v}/events", f"/v1/campaigns/{v}"]
        for url in urls:
            async with http.get(d.url + url, headers=auth) as r:
                body = await r.read()
                assert r.status in (400, 404, 422), (url, r.status, body[:300])
                assert r.content_type == "application/problem+json", (url, r.content_type)
                conforms(orjson.loads(body), "Error")
        for v in ("\u00b2", "\u0661"):  # the control route beside them takes ids the same way
            async with http.post(d.url + f"/v1/messages/{v}/cancel", headers=auth) as r:
                assert r.status == 400 and r.content_type == "application/problem+json", (v, r.status)


@run
async def test_the_printed_schema_builds_what_the_migrations_build(postgres_dsn):
    """`--print-schema` (every_sql) is every version: run by hand, it gives the tables, indexes and triggers
    the daemon's own migrations give (the page's read routes need version 4's indexes)."""
    by_hand, migrated = (f"t_{uuid.uuid4().hex[:10]}" for _ in range(2))
    async with db(postgres_dsn) as conn:
        await conn.execute(f"CREATE SCHEMA {by_hand}")
        await conn.execute(every_sql(TableNames(f"{by_hand}.outbox")))
        await migrate(conn, TableNames(f"{migrated}.outbox").migration, migrations(TableNames(f"{migrated}.outbox")))

        async def shape(schema: str) -> set[tuple[str, str]]:
            rows = await conn.fetch("""
                SELECT 'table', tablename FROM pg_tables WHERE schemaname = $1
                UNION ALL SELECT 'index', indexname || ' ' || replace(indexdef, $1 || '.', '')
                    FROM pg_indexes WHERE schemaname = $1
                UNION ALL SELECT 'trigger', t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND NOT t.tgisinternal""",
                                    schema)
            return {(r[0], r[1]) for r in rows}
        built = await shape(by_hand)
        assert built == await shape(migrated)
        assert ("table", "outbox_campaigns") in built and any("outbox_failures" in name for _, name in built)
        for schema in (by_hand, migrated):
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
