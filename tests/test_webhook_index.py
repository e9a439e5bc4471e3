"""The webhooks' due index (schema v7): the schema no longer makes it, so an outbox without webhooks does not
index every event for them; the first daemon that delivers builds it, once among racing daemons, and
rebuilds one a failed build left invalid. The events have no primary key either: deliveries find their ids
through the due index, readers after an id through the BRIN index, and the cleaner deletes by tuple id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from dispatcher.daemon.config import DaemonConfig, WebhookSpec
from dispatcher.daemon.outbox.names import TableNames
from dispatcher.daemon.outbox.store import OutboxQueries
from dispatcher.daemon.webhooks import Webhooks

Check = Callable[[asyncpg.Connection, asyncpg.Pool, OutboxQueries, Callable[[], Webhooks]], Awaitable[None]]


def _on_fresh_outbox(dsn: str, check: Check, rows: int) -> None:
    """`check` on an outbox migrated as a daemon migrates it, with `rows` inserted (each writes its `queued`
    event), given a connection, a pool, the outbox's queries and a maker of Webhooks on that pool."""
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
        try:
            names = TableNames(f"t_{uuid.uuid4().hex[:10]}.outbox")  # a schema of its own, as test_daemon's `table`
            cfg = DaemonConfig(path=Path("test.toml"), dsn=dsn, dsn_env="DISPATCHER_DSN", table=names.table)
            store = OutboxQueries(cfg, names)  # no webhooks: the cleaner takes every old event
            await store.migrate(conn)
            await conn.execute(f"INSERT INTO {names.outbox} (recipient) SELECT '+3460000' || lpad(g::text, 4, '0') "
                               f"FROM generate_series(1, $1) g", rows)
            spec = WebhookSpec("http://127.0.0.1:9/hook", "secret")
            await check(conn, pool, store, lambda: Webhooks(cfg, spec, pool, names))
        finally:
            await pool.close()
            await conn.close()
    asyncio.run(go())


async def _indexes(conn: asyncpg.Connection, names: TableNames) -> dict[str, bool]:
    rows = await conn.fetch("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                            "WHERE i.indrelid = to_regclass($1)", names.events)
    return {r["relname"]: r["indisvalid"] for r in rows}


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))


def test_racing_webhook_daemons_build_one_valid_due_index_that_delivery_uses_and_ids_have_brin(postgres_dsn):
    async def check(conn, pool, store, webhooks) -> None:
        assert await _indexes(conn, store.names) == {"outbox_events_message": True}  # no key, no due index
        racing = [webhooks() for _ in range(8)]
        await asyncio.gather(*(hooks.index() for hooks in racing))
        assert await _indexes(conn, store.names) == {"outbox_events_message": True, "outbox_events_due": True}
        e = store.names.events
        await conn.execute(f"ANALYZE {e}")
        for sql in (racing[0].done_sql, racing[0].tried_sql):  # a delivery's own UPDATEs
            plan = await _plan(conn, sql, [1, 2])
            assert "outbox_events_due" in plan, plan
        await conn.execute("SET enable_seqscan = off")  # can the index serve it, whatever the table's size
        plan = await _plan(conn, f"SELECT * FROM {e} WHERE id > $1 ORDER BY id", 1000)
        assert "outbox_events_message" in plan, plan  # the SQL reader's `id > $last`: the BRIN index
    _on_fresh_outbox(postgres_dsn, check, 2000)


def test_a_due_index_left_invalid_by_a_failed_build_is_built_again(postgres_dsn):
    async def check(conn, pool, store, webhooks) -> None:
        hooks = webhooks()
        await hooks.index()
        # what a CREATE INDEX CONCURRENTLY stopped midway leaves: the index, marked invalid
        await conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1::regclass",
                           store.names.events_due)
        assert await _indexes(conn, store.names) == {"outbox_events_message": True, "outbox_events_due": False}
        await hooks.index()
        assert await _indexes(conn, store.names) == {"outbox_events_message": True, "outbox_events_due": True}
    _on_fresh_outbox(postgres_dsn, check, 10)


def test_the_cleaner_deletes_old_events_by_tuple_id_in_batches(postgres_dsn):
    async def check(conn, pool, store, webhooks) -> None:
        e = store.names.events
        await conn.execute(f"UPDATE {e} SET at = at - interval '2 days' WHERE outbox_id % 5 <> 0")
        assert [await store.purge_events(conn, 1, limit=80) for _ in range(4)] == [80, 80, 40, 0]
        left = await conn.fetch(f"SELECT outbox_id FROM {e} ORDER BY id")
        assert [r[0] for r in left] == list(range(5, 251, 5))  # only the young ones stay
    _on_fresh_outbox(postgres_dsn, check, 250)
