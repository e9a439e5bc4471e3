"""What the PostgreSQL source and sink share: the DSN, errors without secrets, reconnects, migrations.

- The DSN comes from an environment variable (named by `dsn_env` in the campaign); the
  password in it never appears in a message: errors name `user@host:port/db` instead.
- `transient()` says which failures a reconnect can cure (the server went away, the
  connection was terminated, a deadlock); `Retry` spaces the attempts (exponential, full
  jitter, bounded) so a restarting server or a killed backend does not end a run.
- `migrate()` brings a set of tables to the newest schema version, one migration at a
  time, each in its own transaction under an advisory lock, and records the version in
  `dispatcher_schema (name text primary key, version int, migrated_at timestamptz)`, so
  a later release adds migration N+1 and existing databases follow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")

DEFAULT_DSN_ENV = "DISPATCHER_DSN"
CONNECT_TIMEOUT = 10.0
SCHEMA_TABLE = "dispatcher_schema"


def dsn_from_env(name: Any, what: str, error: type[Exception]) -> tuple[str, str]:
    """The DSN held by the variable `name`, and the variable's name."""
    env = DEFAULT_DSN_ENV if name is None else name
    if not isinstance(env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise error(f"{what}: dsn_env must name an environment variable, not {env!r}")
    dsn = os.environ.get(env, "").strip()
    if not dsn:
        raise error(f"{what}: environment variable {env} (dsn_env) is not set: "
                    f"it must hold the database URL, postgresql://user:password@host:port/db")
    return dsn, env


def where(dsn: str) -> str:
    """`user@host:port/db`: which database, without the password."""
    try:
        u = urllib.parse.urlsplit(dsn)
        host = u.hostname or "localhost"
        port = f":{u.port}" if u.port else ""
        user = f"{urllib.parse.unquote(u.username)}@" if u.username else ""
        db = u.path.lstrip("/")
        return f"{user}{host}{port}/{db}" if db else f"{user}{host}{port}"
    except ValueError:
        return "the database"


def redact(text: str, dsn: str) -> str:
    """`text` with the DSN's password (raw or URL-encoded) and any `password=...` masked."""
    secrets: list[str] = []
    try:
        pw = urllib.parse.urlsplit(dsn).password
    except ValueError:
        pw = None
    if pw:
        secrets += [pw, urllib.parse.unquote(pw), urllib.parse.quote(pw, safe="")]
    for m in re.finditer(r"password=([^&\s]+)", dsn):
        secrets.append(m.group(1))
    if dsn:
        text = text.replace(dsn, "<dsn>")
    for s in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(s, "***")
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.I)


_TRIED = re.compile(r"Connect call failed \('([^']*)', (\d+)")  # asyncio's text: the address it tried


def address(exc: BaseException | None, dsn: str) -> str:
    """host:port a connection failed to reach: the address the socket tried (after name resolution, the
    last of several hosts), else the DSN's (port 5432 when it names none; a Unix socket's path), else
    "the database". Never the user or the password."""
    found = _TRIED.search(str(exc)) if exc is not None else None
    if found:
        host = found.group(1)
        return f"[{host}]:{found.group(2)}" if ":" in host else f"{host}:{found.group(2)}"
    try:
        u = urllib.parse.urlsplit(dsn)
        query = urllib.parse.parse_qs(u.query)
        host = u.hostname or (query.get("host") or [""])[0] or os.environ.get("PGHOST", "")
        port = u.port or int((query.get("port") or [0])[0]) or int(os.environ.get("PGPORT") or 5432)
    except ValueError:
        return "the database"
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    if not host:
        return "the database"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def explain(exc: BaseException, dsn: str) -> str:
    """One line saying what went wrong, never the password; a connection that failed names where it was
    going ("connection refused on 127.0.0.1:5999"), as blast/reach.py does for a provider."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        text = "timed out"
    elif isinstance(exc, socket.gaierror):
        host = address(None, dsn).rpartition(":")[0] or "the database's host"
        text = f"unknown host {host} ({exc.strerror or exc})"
    elif isinstance(exc, ConnectionRefusedError):
        text = f"connection refused on {address(exc, dsn)} (is the server running, on that host and port?)"
    elif isinstance(exc, OSError):
        why = exc.strerror or str(exc) or type(exc).__name__
        text = f"{why[:1].lower() + why[1:]} on {address(exc, dsn)}" if exc.strerror else why
    elif isinstance(exc, asyncpg.PostgresError):
        text = exc.args[0] if exc.args else type(exc).__name__
        detail = getattr(exc, "detail", None)
        if detail:
            text += f" ({detail})"
    else:
        text = str(exc) or type(exc).__name__
    return redact(" ".join(str(text).split()), dsn)


_TRANSIENT_PG = (
    asyncpg.PostgresConnectionError,  # class 08 and "connection was closed in the middle of operation"
    asyncpg.exceptions.AdminShutdownError,  # pg_terminate_backend, fast shutdown
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
)


def transient(exc: BaseException, conn: asyncpg.Connection | None = None) -> bool:
    """True when a new connection (and the same statement again) may well succeed."""
    if isinstance(exc, _TRANSIENT_PG):
        return True
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError | socket.gaierror):
        return True
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return False
    # "connection is closed", "another operation is in progress", "cannot switch to state ...": seen on a
    # connection whose backend was terminated between statements; that connection is unusable, a new one is not
    return isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError)


@dataclass
class Retry:
    """Bounded reconnects: `attempts` tries, waits growing from `base` to `cap` (full jitter)."""

    attempts: int = 8
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(self.base / 2, min(self.cap, self.base * 2 ** attempt))


RETRY = Retry()  # tests make it quicker


async def retrying(op: Callable[[int], Awaitable[T]], *, retry: Retry | None = None,
                   connection: Callable[[], asyncpg.Connection | None] = lambda: None,
                   failed: Callable[[BaseException, int, bool], Awaitable[None]] | None = None) -> T:
    """The one retry loop for PostgreSQL work: `op(attempt)` until it succeeds.

    A transient failure (see `transient`, judged on `connection()` too) waits `retry.delay` and tries
    again, at most `retry.attempts` more times; anything else re-raises at once. `failed(exc, attempt,
    final)` runs after every failure (drop a dead connection, log, count), so each caller keeps only
    what is its own: which connection, what to say, when to give up on the whole run.
    """
    budget = retry or RETRY  # read at call time: tests shorten RETRY
    attempt = 0
    while True:
        try:
            return await op(attempt)
        except Exception as e:
            final = not transient(e, connection()) or attempt >= budget.attempts
            if failed is not None:
                await failed(e, attempt, final)
            if final:
                raise
            await asyncio.sleep(budget.delay(attempt))
            attempt += 1


APPLICATION_NAME = "dispatcher"  # what pg_stat_activity shows for our connections


# What "the database failed" means to a caller that carries on (logs, counts, tries again later): the
# server's errors, the socket's, the driver's own, and a statement or connect that timed out.
PG_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError)


async def connect(dsn: str, timeout: float = CONNECT_TIMEOUT) -> asyncpg.Connection:
    """One connection, named in pg_stat_activity, with a statement cache."""
    return await asyncpg.connect(dsn, timeout=timeout, statement_cache_size=64,
                                 server_settings={"application_name": APPLICATION_NAME})


async def pool(dsn: str, *, timeout: float = CONNECT_TIMEOUT, **kw: Any) -> asyncpg.Pool:
    """A pool of connections made as `connect` makes one (named, with a statement cache); `kw` goes to
    asyncpg.create_pool (min_size, max_size, init, ...)."""
    return await asyncpg.create_pool(dsn, timeout=timeout, statement_cache_size=64,
                                     server_settings={"application_name": APPLICATION_NAME}, **kw)


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code (config loading), even when an
    event loop is already running in this thread: then in a helper thread with its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dispatcher-pg") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str) -> str:
    """`schema.table` or `table` as quoted identifiers; names already quoted are kept."""
    parts = re.findall(r'"(?:[^"]|"")*"|[^.]+', name)
    return ".".join(p if p.startswith('"') else ident(p) for p in parts)


Migration = Callable[[asyncpg.Connection], Awaitable[None]]


async def migrate(conn: asyncpg.Connection, name: str, migrations: Sequence[Migration]) -> int:
    """Apply the migrations of `name` that this database has not had yet, in order.

    Migration i (1-based) runs in its own transaction together with the version bump to i,
    under a transaction-level advisory lock, so concurrent runs never apply one twice.
    Returns the version reached. A database newer than this release is left alone.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", SCHEMA_TABLE)
        await conn.execute(f"""CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
            name text PRIMARY KEY,
            version integer NOT NULL,
            migrated_at timestamptz NOT NULL DEFAULT now())""")
    version = await conn.fetchval(f"SELECT version FROM {SCHEMA_TABLE} WHERE name = $1", name) or 0
    for target in range(version + 1, len(migrations) + 1):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{SCHEMA_TABLE}:{name}")
            version = await conn.fetchval(f"SELECT version FROM {SCHEMA_TABLE} WHERE name = $1", name) or 0
            if version >= target:
                continue
            await migrations[target - 1](conn)
            await conn.execute(f"""INSERT INTO {SCHEMA_TABLE} (name, version) VALUES ($1, $2)
                ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()""", name, target)
            version = target
    return version
