"""What the PostgreSQL sink holds of a run, for `dispatcher runs` and `dispatcher status`: its totals from
the results table, and its delivery from `<results table>_reports` matched to its sent rows.

The rule is the file case's (blast/delivery.py): a sent row of a provider the run asked to report is
delivered, undelivered or pending by its report of highest rank, the latest event among equals, the later
arrival among those (matched by provider and message id). It is one statement a run, the matching done by
the database (a DISTINCT ON over the run's reports, a hash join with its sent rows), over one connection
a database. The run's manifest names the table and the environment variable holding the database URL
(`origin.results`), never the URL: a variable that is not set, or a database that cannot be read, is said
instead of the numbers.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .. import pg
from ..errors import ConfigError
from .heard import DELIVERED, DELIVERED_WORDS, PENDING, UNDELIVERED

COUNTS = ("sent", "failed", "rejected")

_TOTALS = "SELECT 'status', status, count(*) FROM {results} WHERE run_id = $1 GROUP BY status"
_DELIVERY = """
    SELECT 'delivery', CASE WHEN b.rank IS NULL OR b.rank < 3 THEN '{pending}'
                            WHEN b.rank > 3 OR b.status = ANY($3::text[]) THEN '{delivered}'
                            ELSE '{undelivered}' END, count(*)
    FROM {results} s LEFT JOIN (
        SELECT DISTINCT ON (provider, message_id) provider, message_id, rank, status FROM {reports}
        WHERE run_id = $1 AND rank IS NOT NULL AND message_id <> ''
        ORDER BY provider, message_id, rank DESC, event_at DESC NULLS LAST, id DESC) b
      ON b.provider = s.provider AND b.message_id = s.message_id
    WHERE s.run_id = $1 AND s.status = 'sent' AND s.message_id IS NOT NULL AND s.provider = ANY($2::text[])
    GROUP BY 2"""


@dataclass(slots=True)
class Held:
    """A run's numbers as its PostgreSQL sink holds them, or why they could not be read."""

    table: str
    totals: dict[str, int] | None = None
    delivery: dict[str, int] | None = None  # None: the run did not listen for reports
    error: str | None = None


def _recorded(m: dict[str, Any]) -> tuple[str, str] | None:
    """(dsn_env, results table) of a run whose first sink is PostgreSQL."""
    r = (m.get("origin") or {}).get("results") or {}
    if r.get("type") == "postgres" and r.get("table") and r.get("dsn_env"):
        return str(r["dsn_env"]), str(r["table"])
    return None


def statement(m: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The run's one statement and its arguments: its totals, and its delivery when it listened."""
    _, table = _recorded(m) or ("", "")
    sql = _TOTALS.format(results=pg.qualified(table))
    reports = (m.get("origin") or {}).get("reports") or {}
    if not reports.get("table"):
        return sql, (m["run_id"],)
    sql += " UNION ALL " + _DELIVERY.format(results=pg.qualified(table), reports=pg.qualified(reports["table"]),
                                            pending=PENDING, delivered=DELIVERED, undelivered=UNDELIVERED)
    return sql, (m["run_id"], list(reports.get("asked") or ()), sorted(DELIVERED_WORDS))


def _numbers(m: dict[str, Any], rows: list[Any]) -> tuple[dict[str, int], dict[str, int] | None]:
    totals = dict.fromkeys(COUNTS, 0)
    listened = bool(((m.get("origin") or {}).get("reports") or {}).get("table"))
    delivery = dict.fromkeys((DELIVERED, UNDELIVERED, PENDING), 0) if listened else None
    for kind, word, n in rows:
        into = totals if kind == "status" else delivery
        if into is not None and word in into:
            into[word] += n
    return totals, delivery


async def _read(dsn: str, runs: list[dict[str, Any]], out: dict[str, Held]) -> None:
    try:
        conn = await pg.connect(dsn)
    except Exception as e:
        for m in runs:
            out[m["run_id"]].error = pg.explain(e, dsn)
        return
    try:
        for m in runs:
            held = out[m["run_id"]]
            sql, args = statement(m)
            try:
                held.totals, held.delivery = _numbers(m, await conn.fetch(sql, *args))
            except pg.PG_ERRORS as e:
                held.error = pg.explain(e, dsn)
    finally:
        await conn.close()


def read(runs: list[dict[str, Any]]) -> dict[str, Held]:
    """run id -> what its PostgreSQL sink holds, for the runs whose first sink is PostgreSQL."""
    out: dict[str, Held] = {}
    by_dsn: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in runs:
        got = _recorded(m)
        if got is None:
            continue
        env, table = got
        out[m["run_id"]] = Held(table)
        dsn = os.environ.get(env, "").strip()
        if dsn:
            by_dsn[dsn].append(m)
        else:
            out[m["run_id"]].error = f"environment variable {env} (the sink's dsn_env) is not set"
    if by_dsn:
        async def all_of() -> None:
            for dsn, theirs in by_dsn.items():
                await _read(dsn, theirs, out)
        pg.run_sync(all_of)
    return out


_FINAL = ("SELECT DISTINCT ON (seq) seq, status, run_id FROM {results} WHERE run_id = ANY($1::text[]) "
          "ORDER BY seq, array_position($1::text[], run_id) DESC")  # the latest run's result of each record


def table_of(runs: list[dict[str, Any]]) -> tuple[str, str, str] | None:
    """(DSN or "", results table, dsn_env) when a run and its retries all wrote to one PostgreSQL table."""
    found = {_recorded(m) for m in runs}
    if len(found) != 1 or None in found:
        return None
    env, table = found.pop()  # type: ignore[misc]
    return os.environ.get(env, "").strip(), table, env


def rolled_up(runs: list[dict[str, Any]]) -> dict[str, int] | None:
    """sent / failed / rejected of a run and its retries in one PostgreSQL table, each record counted once
    by its final outcome (the latest run's result); None when they are not there or cannot be read."""
    chain = table_of(runs)
    if chain is None or not chain[0]:
        return None
    dsn, table, _ = chain
    sql = f"SELECT status, count(*) FROM ({_FINAL.format(results=pg.qualified(table))}) f GROUP BY status"

    async def fetch() -> list[Any]:
        conn = await pg.connect(dsn)
        try:
            return await conn.fetch(sql, [m["run_id"] for m in runs])
        finally:
            await conn.close()
    try:
        rows = pg.run_sync(fetch)
    except pg.PG_ERRORS:
        return None
    got = dict.fromkeys(COUNTS, 0)
    for status, n in rows:
        if status in got:
            got[status] += n
    return got


def final_rows(runs: list[dict[str, Any]], write: Any) -> int | None:
    """Each record's final outcome across a run and its retries in one PostgreSQL table, `write(seq, status,
    run id)` a row in seq order, read through a cursor (a page at a time, not the whole run); the count
    written, or None when they are not there. Raises ConfigError when the database cannot be read."""
    chain = table_of(runs)
    if chain is None:
        return None
    dsn, table, env = chain
    if not dsn:
        raise ConfigError(f"postgres:{table}: environment variable {env} (the sink's dsn_env) is not set")

    async def stream() -> int:
        conn = await pg.connect(dsn)
        n = 0
        try:
            async with conn.transaction(readonly=True):
                async for seq, status, run_id in conn.cursor(_FINAL.format(results=pg.qualified(table)),
                                                             [m["run_id"] for m in runs], prefetch=10_000):
                    write(seq, status, run_id)
                    n += 1
        finally:
            await conn.close()
        return n
    try:
        return pg.run_sync(stream)
    except pg.PG_ERRORS as e:
        raise ConfigError(f"postgres:{table}: {pg.explain(e, dsn)}") from None
