"""The webhooks' due index (schema v7): the schema no longer makes it, so an outbox without webhooks does not
index every event for them; the first daemon that delivers builds it, once among racing daemons, and
rebuilds one a failed build left invalid. The events have no primary key either: deliveries find their ids
through the due index, readers after an id through the BRIN index, and the cleaner deletes by tuple id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from dispatcher.daemon.config import DaemonConfig, WebhookSpec
from dispatcher.daemon.outbox.names import TableNames
from dispatcher.daemon.outbox.schema import migrations
from dispatcher.daemon.outbox.store import OutboxQueries
from dispatcher.daemon.webhooks import Webhooks

SCHEMA = "webhook_index"


async def _outbox(conn: asyncpg.Connection) -> TableNames:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    names = TableNames(f"{SCHEMA}.outbox")
    for step in migrations(names):
        await step(conn)
    return names


def _webhooks(dsn: str, pool: asyncpg.Pool, names: TableNames) -> Webhooks:
    cfg = DaemonConfig(path=Path("test.toml"), dsn=dsn, dsn_env="DISPATCHER_DSN", table=names.table)
    return Webhooks(cfg, WebhookSpec("http://127.0.0.1:9/hook", "secret"), pool, names)


async def _indexes(conn: asyncpg.Connection) -> dict[str, bool]:
    rows = await conn.fetch("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = $1 AND i.indrelid = 'webhook_index.outbox_events'::regclass", SCHEMA)
    return {r["relname"]: r["indisvalid"] for r in rows}


def test_racing_webhook_daemons_build_one_valid_due_index_that_delivery_uses_and_ids_have_brin(postgres_dsn: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=10)
        try:
            names = await _outbox(conn)
            assert await _indexes(conn) == {"outbox_events_message": True}  # no key, no due index
            await conn.execute(f"INSERT INTO {names.outbox} (recipient) SELECT '+3460000' || lpad(g::text, 4, '0') "
                               f"FROM generate_series(1, 2000) g")
            await asyncio.gather(*(_webhooks(postgres_dsn, pool, names).index() for _ in range(8)))
            assert await _indexes(conn) == {"outbox_events_message": True, "outbox_events_due": True}
            await conn.execute(f"ANALYZE {names.events}")
            plan = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN UPDATE {names.events} SET attempts = attempts + 1 "
                f"WHERE id = ANY($1::bigint[]) AND delivered_at IS NULL AND given_up_at IS NULL", [1, 2]))
            assert "outbox_events_due" in plan, plan
            await conn.execute("SET enable_seqscan = off")  # can the index serve it, whatever the table's size
            plan = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN SELECT * FROM {names.events} WHERE id > $1 ORDER BY id", 1000))
            assert "outbox_events_message" in plan, plan  # the SQL reader's `id > $last`: the BRIN index
        finally:
            await pool.close()
            await conn.close()
    asyncio.run(go())


def test_a_due_index_left_invalid_by_a_failed_build_is_built_again(postgres_dsn: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
        try:
            names = await _outbox(conn)
            hooks = _webhooks(postgres_dsn, pool, names)
            await hooks.index()
            # what a CREATE INDEX CONCURRENTLY stopped midway leaves: the index, marked invalid
            await conn.execute(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{names.events_due}'::regclass")
            assert await _indexes(conn) == {"outbox_events_message": True, "outbox_events_due": False}
            await hooks.index()
            assert await _indexes(conn) == {"outbox_events_message": True, "outbox_events_due": True}
        finally:
            await pool.close()
            await conn.close()
    asyncio.run(go())


def test_the_cleaner_deletes_old_events_by_tuple_id_in_batches(postgres_dsn: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            names = await _outbox(conn)
            await conn.execute(f"INSERT INTO {names.outbox} (recipient) SELECT '+3460000' || lpad(g::text, 4, '0') "
                               f"FROM generate_series(1, 250) g")
            await conn.execute(f"UPDATE {names.events} SET at = at - interval '2 days' WHERE outbox_id % 5 <> 0")
            cfg = DaemonConfig(path=Path("test.toml"), dsn=postgres_dsn, dsn_env="DISPATCHER_DSN", table=names.table)
            store = OutboxQueries(cfg, names)  # no webhooks: every old event goes, delivered or not
            deleted = [await store.purge_events(conn, 1, limit=80) for _ in range(4)]
            assert deleted == [80, 80, 40, 0]
            left = await conn.fetch(f"SELECT outbox_id FROM {names.events} ORDER BY id")
            assert [r[0] for r in left] == list(range(5, 251, 5))  # only the young ones stay
        finally:
            await conn.close()
    asyncio.run(go())
