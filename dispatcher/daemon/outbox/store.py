"""Every statement the daemon runs on the outbox, one method per named query of queries.sql (the way
River's driver keeps its queries): each one round trip, set-based. The SQL lives in the file; the
methods say what each answers and pass its parameters."""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg

from ...pg import migrate
from ..config import DaemonConfig
from .names import TableNames
from .schema import migrations

HERE = Path(__file__).parent


@cache
def named_queries(file: str = "queries.sql") -> dict[str, str]:
    """The statements of a .sql file beside this one by name: each `-- name: X` line starts X."""
    parts = re.split(r"^-- name: (\w+)\n", (HERE / file).read_text(encoding="utf-8"), flags=re.M)
    return {name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=True)}


class OutboxQueries:
    """The outbox's named queries, filled with this daemon's table names once."""

    def __init__(self, cfg: DaemonConfig, names: TableNames) -> None:
        self.cfg = cfg
        self.names = names
        self.sql = {name: names.fill(q) for name, q in named_queries().items()}

    async def migrate(self, conn: asyncpg.Connection) -> int:
        return await migrate(conn, self.names.migration, migrations(self.names))

    async def claim(self, conn: asyncpg.Connection, limit: int, closed: list[str], fair: list[str],
                    urgent: int = 1) -> list[asyncpg.Record]:
        """Up to about `limit` due rows leased to this worker: rows of priority >= `urgent` first, then each
        campaign of `fair` ('' for rows without one) its weighted share; paused, cancelled and `closed`
        campaigns (sending window shut) left alone. With `fair` empty and `urgent` the lowest priority, the
        `limit` due rows of highest priority, whatever their campaign (the claim that fills what shares left)."""
        return await conn.fetch(self.sql["claim"], self.cfg.worker, float(self.cfg.lease), limit, closed, fair, urgent)

    async def cancel_message(self, conn: asyncpg.Connection, oid: int) -> bool:
        """A queued row into `cancelled`; False when it is not queued (claimed, finished or absent)."""
        return await conn.fetchval(self.sql["cancel_message"], oid) is not None

    async def set_campaign(self, conn: asyncpg.Connection, name: str, state: str, weight: int | None = None
                           ) -> asyncpg.Record:
        """A campaign's state (active, paused, cancelled) and weight, as the campaigns table holds it."""
        return await conn.fetchrow(self.sql["set_campaign"], name, state, weight)

    async def give_back(self, conn: asyncpg.Connection, ids: list[int], campaigns: list[str]) -> int:
        """Claimed rows of paused or cancelled `campaigns` taken back before they went on the wire: cancelled
        when their campaign is cancelled, else queued again. Returns how many."""
        return int(await conn.fetchval(self.sql["give_back"], ids, self.cfg.worker, campaigns) or 0)

    async def sweep_cancelled(self, conn: asyncpg.Connection, campaigns: list[str]) -> int:
        """Queued rows of cancelled `campaigns` (put back after their cancel, or inserted since) cancelled."""
        return int(await conn.fetchval(self.sql["sweep_cancelled"], campaigns) or 0)

    async def running(self, conn: asyncpg.Connection) -> list[Any]:
        """The transactions running now (a snapshot's xip): what a change must outlast to be seen by all."""
        return await conn.fetchval("SELECT array(SELECT pg_snapshot_xip(pg_current_snapshot())::text)")

    async def settling(self, conn: asyncpg.Connection, running: list[Any], campaign: str) -> int:
        return int(await conn.fetchval(self.sql["settling"], running, campaign))

    async def set_weight(self, conn: asyncpg.Connection, name: str, weight: int) -> asyncpg.Record:
        return await conn.fetchrow(self.sql["set_weight"], name, weight)

    async def campaign_states(self, conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
        return {r["name"]: r for r in await conn.fetch(self.sql["campaign_states"])}

    async def campaign_counts(self, conn: asyncpg.Connection, name: str | None, window: float
                              ) -> list[asyncpg.Record]:
        """(campaign, status, n, delivered, undelivered, recent: sent in the last `window` s) rows; one
        campaign's, or every one's."""
        return await conn.fetch(self.sql["campaign_counts"], name, float(window))

    async def list_messages(self, conn: asyncpg.Connection, after: int, campaign: str | None,
                            statuses: list[str] | None, since: dt.datetime | None, limit: int,
                            desc: bool = False, after_xid: str | None = None) -> list[asyncpg.Record]:
        """A page after (`after_xid`, `after`) in insert order (queries.sql says why), or with `desc` by id
        before `after` (newest first)."""
        if desc:
            return await conn.fetch(self.sql["list_messages_desc"], after, campaign, statuses, since, limit)
        return await conn.fetch(self.sql["list_messages"], after, campaign, statuses, since, limit, after_xid)

    async def release(self, conn: asyncpg.Connection) -> int:
        """This worker's unfinished claims back to pending (a graceful stop)."""
        count = await conn.fetchval(self.sql["release"], self.cfg.worker)
        if count:
            await conn.execute("SELECT pg_notify($1, '')", self.names.channel)
        return int(count or 0)

    async def reap(self, conn: asyncpg.Connection) -> tuple[int, int]:
        """Claims of dead workers whose lease ended: back to pending, or failed when claimed too often."""
        dead = float(self.cfg.dead_after)
        async with conn.transaction():
            failed = await conn.fetchval(self.sql["reap_abandoned"], dead, self.cfg.max_claims)
            released = await conn.fetchval(self.sql["reap_released"], dead)
            if released:
                await conn.execute("SELECT pg_notify($1, '')", self.names.channel)
        return int(released or 0), int(failed or 0)

    async def defer(self, conn: asyncpg.Connection, ids: list[int], seconds: float) -> int:
        """Claimed rows back to pending, due again in `seconds` (their provider halted)."""
        return int(await conn.fetchval(self.sql["defer"], ids, self.cfg.worker, float(seconds)) or 0)

    async def reschedule(self, conn: asyncpg.Connection, ids: list[int], code: str | None, error: str | None
                         ) -> tuple[int, int]:
        """Rows whose send failed for now (5xx, timeouts, 429s past the lane's own attempts): back to pending
        with exponential backoff and jitter, holding no claim meanwhile; a row older than its campaign's
        `retry_for` fails instead, with the last code. Returns (rescheduled, failed)."""
        cfg = self.cfg
        names = [name for name, c in cfg.campaigns.items() if c.retry_for is not None]
        secs = [float(cfg.campaigns[name].retry_for or 0) for name in names]
        default = float(cfg.defaults.retry_for if cfg.defaults.retry_for is not None else cfg.retry_for)
        row = await conn.fetchrow(self.sql["reschedule"], ids, cfg.worker, names, secs, default, code, error,
                                  float(cfg.retry_base), float(cfg.retry_max))
        return int(row["rescheduled"] or 0), int(row["failed"] or 0)

    async def retry_failed(self, conn: asyncpg.Connection, campaign: str | None = None, code: str | None = None,
                           since: dt.datetime | None = None) -> int:
        """Failed rows back to pending, to be sent again (by campaign, by the provider's code, failed since a
        time). Rejected rows stay: they are bad input. Returns how many."""
        return int(await conn.fetchval(self.sql["retry_failed"], campaign, code, since) or 0)

    async def suppressed(self, conn: asyncpg.Connection, addresses: list[str]) -> dict[str, set[str]]:
        """The channels each of `addresses` opted out of ('*': all)."""
        out: dict[str, set[str]] = {}
        for r in await conn.fetch(self.sql["suppressed"], addresses):
            out.setdefault(r["address"], set()).add(r["channel"])
        return out

    async def depth(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Rows pending, pending and due, and claimed (the first two counted up to a million)."""
        row = await conn.fetchrow(self.sql["depth"])
        return {"pending": row["pending"], "due": row["due"], "claimed": row["claimed"]}

    async def purge(self, conn: asyncpg.Connection, days: float, limit: int = 10000) -> int:
        """Rows created and reports received more than `days` ago (finished rows only): a bounded batch a call.
        Ids grow with time, so the first id past the cutoff bounds the scan: a purge that finds nothing
        reads a few index pages, not the table."""
        gone = await conn.fetchval(self.sql["purge_outbox"], days * 86400.0, limit)
        gone += await conn.fetchval(self.sql["purge_reports"], days * 86400.0, limit)
        return int(gone)

    async def purge_events(self, conn: asyncpg.Connection, days: float, limit: int = 10000) -> int:
        """Events older than `days`: delivered or given up ones when webhooks are on, all of them when off."""
        return int(await conn.fetchval(self.sql["purge_events"], days * 86400.0, limit,
                                       self.cfg.webhooks is not None) or 0)
