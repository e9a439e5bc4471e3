"""The results statement writes its rows' status events itself (schema v5): the same events, in the same
order, as the UPDATE trigger writes for the same change made by any other statement; and every other
statement's events are still the trigger's."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from dispatcher.daemon.outbox.names import TableNames
from dispatcher.daemon.outbox.schema import init_connection, migrations
from dispatcher.daemon.outbox.store import named_queries

SCHEMA = "events_by_results"
# (status, provider alias, code, error, message id): a result of each kind the engine writes
RESULTS = [("sent", "sms", None, None, "m-1"), ("failed", "sms", "500", "server error", None),
           ("rejected", "", "invalid_number", "not a number", None), ("sent", "wa", None, None, "m-4")]
# the same change as record_results makes, by a plain UPDATE: the trigger writes its events
PLAIN = """UPDATE {outbox} o SET status = r.status, finished_at = now(), lease_until = NULL,
    sent_via = NULLIF(r.provider, ''), provider_message_id = r.message_id, code = r.code, error = r.error
FROM (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
      AS x(id, status, provider, code, error, message_id)) r
WHERE o.id = r.id"""


async def _outbox(conn: asyncpg.Connection) -> TableNames:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    names = TableNames(f"{SCHEMA}.outbox")
    for step in migrations(names):
        await step(conn)
    return names


async def _claimed(conn: asyncpg.Connection, n: TableNames, first: int) -> list[int]:
    """Four rows inserted (keys on two, a routed provider on one, an earlier sent_via on one) and claimed."""
    ids = [await conn.fetchval(f"INSERT INTO {n.outbox} (recipient, key, provider) VALUES ($1, $2, $3) RETURNING id",
                               f"+3460000{first + i:04d}", f"k{first + i}" if i % 2 else None,
                               "sms" if i == 2 else None) for i in range(len(RESULTS))]
    await conn.execute(f"UPDATE {n.outbox} SET sent_via = 'old' WHERE id = $1", ids[2])
    await conn.execute(f"UPDATE {n.outbox} SET status = 'claimed', worker = 'w', lease_until = now() + interval '1 m' "
                       f"WHERE id = ANY($1::bigint[])", ids)
    return ids


async def _events(conn: asyncpg.Connection, n: TableNames, ids: list[int]) -> list[tuple[Any, ...]]:
    """The events of `ids` after their queued ones, each with its row's place in `ids` for its id."""
    rows = await conn.fetch(f"SELECT outbox_id, key, status, code, error, provider, message_id FROM {n.events} "
                            f"WHERE outbox_id = ANY($1::bigint[]) AND status <> 'queued' ORDER BY id", ids)
    return [(ids.index(r["outbox_id"]), (r["key"] or "")[:1], *list(r.values())[2:]) for r in rows]


def test_the_results_statement_writes_the_events_the_trigger_would(postgres_dsn: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await init_connection(conn)
            n = await _outbox(conn)
            sql = n.fill(named_queries()["record_results"])
            by_results = await _claimed(conn, n, 0)
            payload = [[i, s, p, "+34600000000", mid, 1, code, err, 12.5, None]
                       for i, (s, p, code, err, mid) in zip(by_results, RESULTS, strict=True)]
            written = await conn.fetch(sql, "w", payload, [0.1, 1.0])
            assert sum(r["count"] for r in written) == len(RESULTS)
            by_trigger = await _claimed(conn, n, 10)
            await conn.execute(n.fill(PLAIN), by_trigger, *([r[k] for r in RESULTS] for k in range(5)))
            mine, theirs = await _events(conn, n, by_results), await _events(conn, n, by_trigger)
            assert mine == theirs and [e[2] for e in mine] == ["sent", "failed", "rejected", "sent"]
            assert mine[2][5] == "old"  # no alias in the result: the provider it was sent through before
            # the flag was the results statement's alone: the next statement's events are the trigger's again
            again = await _claimed(conn, n, 20)
            await conn.execute(f"UPDATE {n.outbox} SET status = 'pending', worker = NULL, lease_until = NULL, "
                               f"not_before = now() + interval '1 h' WHERE id = ANY($1::bigint[])", again)
            assert [e[2] for e in await _events(conn, n, again)] == ["deferred"] * len(again)
            # a results write for rows no longer claimed changes nothing and says nothing
            assert await conn.fetch(sql, "w", payload, [0.1, 1.0]) == []
            assert len(await _events(conn, n, by_results)) == len(RESULTS)
            # with the trigger disabled, no events, whoever writes: as before the results statement wrote them
            await conn.execute(f'ALTER TABLE {n.outbox} DISABLE TRIGGER "outbox_events_update"')
            quiet = await _claimed(conn, n, 30)
            payload = [[i, *p[1:]] for i, p in zip(quiet, payload, strict=True)]
            assert sum(r["count"] for r in await conn.fetch(sql, "w", payload, [0.1, 1.0])) == len(RESULTS)
            assert await _events(conn, n, quiet) == []
            await conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        finally:
            await conn.close()
    asyncio.run(go())
