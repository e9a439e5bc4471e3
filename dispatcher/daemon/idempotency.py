"""The `Idempotency-Key` request header, with Stripe's semantics, kept in PostgreSQL so every daemon agrees.

A POST carrying the header claims the key (one row, the request's body hash, no answer yet) before it
is handled, and stores its answer (status, headers that matter, the body's bytes) after. Then, for 24 h:

- the same key with the same body replays the stored answer byte for byte, with `Idempotent-Replayed: true`;
- the same key with another body is a 422 `idempotency_key_reused` (nothing is done);
- the same key while the first request is still being handled is a 409 `idempotency_key_in_flight`
  with `Retry-After` (a claim older than `STALE` seconds with no answer is taken as abandoned, as when a
  daemon died mid-request, and claimed afresh).

A 5xx is not stored (the claim is dropped): the client may try again with the same key. Keys are
forgotten after `TTL`: expired rows are deleted now and then, and an expired key is claimed afresh.
The table is created on first use, as version 1 of its own `pg.migrate` set: under that advisory lock,
so the first requests of racing daemons (or of one daemon's concurrent requests) create it once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import asyncpg

from ..pg import ident, migrate
from .database import Connections

TTL = 24 * 3600  # seconds a key is remembered
STALE = 60  # seconds after which a claim with no answer counts as abandoned
PURGE_EVERY = 60.0  # seconds between deletions of expired keys
KEPT_HEADERS = ("Location",)  # the answer's headers replayed with its body
MAX_KEY = 190  # as a message's key it may gain /N (a message key is at most 200)


@dataclass(frozen=True)
class Stored:
    """What a claim found: None fields while the first request is in flight."""

    request_hash: str
    status: int | None
    content_type: str | None
    location: str | None
    body: bytes | None


def request_hash(method: str, path: str, body: bytes) -> str:
    """What a key stands for: the method, path and exact body bytes."""
    return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()


class Keys:
    """The claims and answers of `Idempotency-Key`s in table `<outbox>_idempotency`."""

    def __init__(self, pool: Connections, table: str) -> None:
        self.pool = pool
        schema, _, base = table.rpartition(".")
        t = (f"{ident(schema)}." if schema else "") + ident(base + "_idempotency")
        self.ready = False
        self.last_purge = 0.0
        self.migration = f"idempotency:{t}"
        self.create_sql = f"""
            CREATE TABLE IF NOT EXISTS {t} (
                key          text PRIMARY KEY,
                request_hash text NOT NULL,
                status       integer,
                content_type text,
                location     text,
                body         bytea,
                created_at   timestamptz NOT NULL DEFAULT now());
            CREATE INDEX IF NOT EXISTS {ident(base + "_idempotency_created")} ON {t} (created_at)"""
        # a fresh key, an expired one or an abandoned claim becomes this request's claim; RETURNING says so
        self.claim_sql = f"""
            INSERT INTO {t} AS i (key, request_hash) VALUES ($1, $2)
            ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, status = NULL, content_type = NULL,
                                            location = NULL, body = NULL, created_at = now()
                WHERE i.created_at < now() - make_interval(secs => {TTL})
                   OR (i.status IS NULL AND i.created_at < now() - make_interval(secs => {STALE}))
            RETURNING true"""
        self.find_sql = f"SELECT request_hash, status, content_type, location, body FROM {t} WHERE key = $1"
        self.answer_sql = f"UPDATE {t} SET status = $2, content_type = $3, location = $4, body = $5 WHERE key = $1"
        self.drop_sql = f"DELETE FROM {t} WHERE key = $1 AND status IS NULL"
        self.purge_sql = f"DELETE FROM {t} WHERE created_at < now() - make_interval(secs => {TTL})"

    async def claim(self, key: str, digest: str) -> Stored | None:
        """None when this request now holds the key (handle it, then `answer` or `drop`), else what is stored."""
        async with self.pool.acquire() as conn:
            if not self.ready:
                await migrate(conn, self.migration, [self.create])
                self.ready = True
            if time.monotonic() - self.last_purge >= PURGE_EVERY:
                self.last_purge = time.monotonic()
                await conn.execute(self.purge_sql)
            for _ in range(2):  # the row may be deleted (a dropped claim) between the insert and the look-up
                if await conn.fetchval(self.claim_sql, key, digest):
                    return None
                row = await conn.fetchrow(self.find_sql, key)
                if row is not None:
                    return Stored(row["request_hash"], row["status"], row["content_type"], row["location"],
                                  row["body"])
        return Stored(digest, None, None, None, None)  # claimed and dropped twice meanwhile: say in flight

    async def create(self, conn: asyncpg.Connection) -> None:
        await conn.execute(self.create_sql)

    async def answer(self, key: str, status: int, content_type: str, location: str | None, body: bytes) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.answer_sql, key, status, content_type, location, body)

    async def drop(self, key: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.drop_sql, key)
