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
