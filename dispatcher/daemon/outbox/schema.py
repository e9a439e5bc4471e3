"""The daemon's schema as numbered migrations: schema/001_outbox.sql (the outbox, its reports,
suppressions and workers), schema/002_events.sql (the status events and their triggers),
schema/003_control.sql (campaigns: pause, resume, cancel, weight; the `cancelled` status) and
schema/004_views.sql (the indexes the read routes look up: a message's events, the failures) and
schema/005_results_events.sql (the results statement writes its own status events) and
schema/006_feed.sql (the inserting transaction of each row: the listing's exactly-once order) and
schema/007_lean_events.sql (events without a primary key, their due index left to the webhooks), each
filled with the configured names and applied once, in order, by `pg.migrate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from ...pg import ident
from .names import TableNames

SCHEMA = Path(__file__).with_name("schema")


def _read(name: str, names: TableNames) -> str:
    lines = (SCHEMA / name).read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and (lines[0].startswith("--") or not lines[0].strip()):  # the file's header, not the DDL
        lines.pop(0)
    return names.fill("".join(lines))


def schema_sql(names: TableNames) -> str:
    """The DDL of schema version 1 (what `dispatcher daemon FILE --print-schema` shows)."""
    return _read("001_outbox.sql", names)


def events_sql(names: TableNames) -> str:
    """Schema version 2: the status events every route produces (webhooks.py delivers them)."""
    return _read("002_events.sql", names)


def control_sql(names: TableNames) -> str:
    """Schema version 3: the `cancelled` status, the campaigns table (state and weight) and the claim's
    fair-share index."""
    return _read("003_control.sql", names)


def every_sql(names: TableNames) -> str:
    """Every version's DDL in order: what `dispatcher daemon FILE --print-schema` shows (what a new
    database gets; the daemon applies it itself, one version at a time)."""
    return "\n\n".join(_read(f.name, names).strip() for f in sorted(SCHEMA.glob("[0-9][0-9][0-9]_*.sql")))


def migrations(names: TableNames) -> list[Callable[[asyncpg.Connection], Any]]:
    async def v1(conn: asyncpg.Connection) -> None:
        if names.schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(names.schema)}")
        await conn.execute(schema_sql(names))

    async def v2(conn: asyncpg.Connection) -> None:
        await conn.execute(events_sql(names))

    async def v3(conn: asyncpg.Connection) -> None:
        await conn.execute(control_sql(names))

    async def v4(conn: asyncpg.Connection) -> None:
        await conn.execute(_read("004_views.sql", names))

    async def v5(conn: asyncpg.Connection) -> None:
        await conn.execute(_read("005_results_events.sql", names))

    async def v6(conn: asyncpg.Connection) -> None:
        await conn.execute(_read("006_feed.sql", names))

    async def v7(conn: asyncpg.Connection) -> None:
        await conn.execute(_read("007_lean_events.sql", names))
    return [v1, v2, v3, v4, v5, v6, v7]


async def init_connection(conn: asyncpg.Connection) -> None:
    """Every pool connection: jsonb read and written by orjson."""
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                              schema="pg_catalog")
