"""PostgreSQL sink: results written with COPY, a chunk at a time, into a table the dispatcher owns.

```toml
[[sinks]]
type = "postgres"
dsn_env = "DISPATCHER_DSN"        # the variable holding postgresql://user:password@host:port/db
table = "dispatcher_results"      # default; may be schema-qualified
mark_sent = "status"              # optional: also set this column of the source table
```

Schema: `MIGRATIONS` below, the one copy of its DDL (version 1 creates the table, a column per
`Result` field plus `run_id` and `written_at`; `seq` is the record's key in its source).

Indexes: only the primary key (run_id, seq) (`run_id` compares bytewise, COLLATE "C", so the
index does not pay for the database's locale). It makes a result unique per record and run,
serves `done()` (an index-only scan of one run, in seq order) and the existence check
after a lost connection; every further index would slow each COPY, so lookups by
`message_id` (delivery reports) belong to a later migration when something needs them.

A new Result field needs a migration adding its column (COPY names every field).

Versions live in `dispatcher_schema` (name `results:<table>`, version): `MIGRATIONS[i]`
takes a table from version i to i+1, each in its own transaction (see `pg.migrate`), so a
later release appends a function and existing databases follow on their next run.

Writing: `copy_records_to_table` (binary COPY), one statement per chunk, atomic. When the
connection is lost the chunk is retried on a new connection (bounded backoff); since the
COPY either committed whole or not at all, the retry first asks which of the chunk's
seqs are already there and copies only the others: exactly one row per result, and the
common path pays nothing (COPY into a temporary table then INSERT ... ON CONFLICT DO
NOTHING would cost about half the throughput, measured).

`mark_sent`: in the same transaction as the COPY, one set-based statement
`UPDATE src SET col = r.status FROM unnest($1::bigint[], $2::text[]) r(seq, status)
WHERE src.key = r.seq`. The source table is the campaign's (when the config passes the
source) or written in full: `mark_sent = "audience.status"` (its integer primary key, or
the source's `key`, matches `seq`). It must live in the same database as the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

import asyncpg
import numpy as np
import orjson

from .. import pg
from ..errors import SinkError
from ..model import RESULT_FIELDS, Results
from .base import Sink

DEFAULT_TABLE = "dispatcher_results"
COLUMNS = ("run_id", *RESULT_FIELDS)
_SEQ, _STATUS = COLUMNS.index("seq"), COLUMNS.index("status")
DONE_PAGE = 100_000
WRITE_BATCH = 20_000
_MIN_SEQ = -(2 ** 63)


def _v1(table: str):
    async def create(conn: asyncpg.Connection) -> None:
        await conn.execute(f"""CREATE TABLE IF NOT EXISTS {table} (
            run_id         text COLLATE "C" NOT NULL,
            seq            bigint NOT NULL,  -- the record's key in its source (line, id)
            id             text NOT NULL,
            "to"           text NOT NULL,
            provider       text NOT NULL,
            status         text NOT NULL CHECK (status IN ('sent', 'failed', 'rejected')),
            message_id     text,
            parts          integer,
            encoding       text,
            code           text,
            error          text,
            attempts       integer NOT NULL DEFAULT 0,
            latency_ms     double precision,
            trace_id       text,
            channel        text,
            transliterated boolean NOT NULL DEFAULT false,
            meta           jsonb,
            written_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, seq))""")
    return create


MIGRATIONS = (_v1,)  # each takes the quoted table name and returns the migration for it
SCHEMA_VERSION = len(MIGRATIONS)


def _rows(results: Results, run_id: str) -> list[tuple]:
    """The COPY tuples, transposed from the result columns in one C-level zip."""
    return list(zip([run_id] * len(results), *results.columns, strict=True))


def _jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)  # jsonb's binary form: a version byte, then the text


def _from_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


class DoneSeqs:
    """The seqs of one run's results, compact: per page of the index a bitmap over its span
    (an eighth of a byte per key when keys are dense) or, when sparse, an int64 array.
    Ten million dense keys take about 1.3 MB; iterating yields plain ints, in order."""

    def __init__(self) -> None:
        self._pages: list[tuple[int, int, np.ndarray]] = []  # (lo, span or -1 for an array, data)
        self.count = 0

    def add_page(self, seqs: list[int]) -> None:
        a = np.asarray(seqs, dtype=np.int64)
        lo, hi = int(a[0]), int(a[-1])
        span = hi - lo + 1
        if span <= 64 * len(a):
            bits = np.zeros(span, dtype=np.bool_)
            bits[a - lo] = True
            self._pages.append((lo, span, np.packbits(bits)))
        else:
            self._pages.append((lo, -1, a))
        self.count += len(a)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        for lo, span, data in self._pages:
            if span < 0:
                yield from data.tolist()
            else:
                yield from (np.flatnonzero(np.unpackbits(data, count=span)) + lo).tolist()


class PostgresSink(Sink):
    def __init__(self, dsn: str, run_id: str, *, table: str = DEFAULT_TABLE, mark_sent: str | None = None,
                 source_table: str | None = None, source_key: str | None = None,
                 dsn_env: str = pg.DEFAULT_DSN_ENV, batch: int = WRITE_BATCH) -> None:
        self.dsn = dsn
        self.dsn_env = dsn_env
        self.run_id = run_id
        self.table = table
        self.name = f"postgres:{table}"
        self.batch = batch
        self.mark_column: str | None = None
        self.mark_table = source_table
        self.mark_key = source_key
        if mark_sent:
            if "." in mark_sent:
                self.mark_table, _, column = mark_sent.rpartition(".")
                if self.mark_table != source_table:
                    self.mark_key = None  # that table's primary key
            else:
                column = mark_sent
            self.mark_column = column.strip().strip('"')
            if not self.mark_table:
                raise SinkError(f"mark_sent = \"{mark_sent}\": which table? This sink was not told the "
                                f"campaign's source table: write mark_sent = \"TABLE.{mark_sent}\"")
        self.retries = 0  # statements tried again after a lost connection
        self.reconnects = 0  # connections replaced
        self._conn: asyncpg.Connection | None = None
        self._qt = ""  # quoted, qualified results table
        self._schema = ""
        self._relname = ""
        self._mark_sql: str | None = None

    @classmethod
    def from_config(cls, spec: dict[str, Any], run_id: str, source: dict[str, Any] | None = None) -> PostgresSink:
        """From a [[sinks]] table. `source` is the campaign's [source] table when the caller passes
        it: then `mark_sent = "column"` marks that table's rows (its `key` matches `seq`)."""
        table = spec.get("table", DEFAULT_TABLE)
        if not isinstance(table, str) or not table.strip():
            raise SinkError("postgres sink: `table` must be a non-empty string")
        mark = spec.get("mark_sent")
        if mark is not None and (not isinstance(mark, str) or not re.fullmatch(r'[\w."$ ]+', mark)):
            raise SinkError("postgres sink: `mark_sent` must name a column of the source table (or TABLE.COLUMN)")
        src_table = src_key = None
        if source is not None and source.get("type") == "postgres" and source.get("table"):
            src_table, src_key = source["table"], source.get("key", "id")
        dsn, env = pg.dsn_from_env(spec.get("dsn_env"), "postgres sink", SinkError)
        return cls(dsn, run_id, table=table, mark_sent=mark, source_table=src_table, source_key=src_key, dsn_env=env)

    # -- connection -----------------------------------------------------------------------------
    def _fail(self, what: str, e: BaseException) -> SinkError:
        return SinkError(f"{self.name}: {what}: {pg.explain(e, self.dsn)}")

    async def _connect(self) -> asyncpg.Connection:
        conn = await pg.connect(self.dsn)
        await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=_jsonb, decoder=_from_jsonb, format="binary")
        return conn

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            if self._conn is not None:
                self.reconnects += 1
            self._conn = None
            self._conn = await self._connect()
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()

    async def _retrying(self, what: str, op):
        """`op(conn)` on a live connection; a lost one is replaced (bounded backoff) and `op`
        called again with `again=True` so it can find out what the lost attempt did."""
        async def attempt(n: int) -> Any:
            return await op(await self._connection(), n > 0)

        async def failed(e: BaseException, n: int, final: bool) -> None:
            await self._drop()
            if not final:
                self.retries += 1
                self.reconnects += 1
            elif not isinstance(e, SinkError):
                extra = f" (gave up after {n + 1} attempts)" if n else ""
                raise self._fail(what + extra, e) from None

        return await pg.retrying(attempt, connection=lambda: self._conn, failed=failed)

    # -- opening --------------------------------------------------------------------------------
    async def open(self, resume: bool) -> None:
        try:
            conn = self._conn = await self._connect()
        except Exception as e:
            raise SinkError(f"{self.name}: cannot connect to {pg.where(self.dsn)} (from ${self.dsn_env}): "
                            f"{pg.explain(e, self.dsn)}") from None
        try:
            qt = pg.qualified(self.table)
            await self._check_shape(conn, qt)  # a table of that name that is not ours is left alone
            await pg.migrate(conn, f"results:{self.table}", [m(qt) for m in MIGRATIONS])
            row = await conn.fetchrow("""SELECT n.nspname, c.relname, c.oid::regclass::text AS qt FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)""", qt)
            if row is None:
                raise SinkError(f"{self.name}: table '{self.table}' was not created (is its schema there?)")
            self._schema, self._relname, self._qt = row["nspname"], row["relname"], row["qt"]
            await self._check_shape(conn, qt)
            if not resume and await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {self._qt} WHERE run_id = $1)",
                                                  self.run_id):
                raise SinkError(f"{self.name}: already holds results of run '{self.run_id}'; resume that run "
                                f"(the same --run-id, with its state directory), or choose another run id")
            if self.mark_column:
                await self._prepare_mark(conn)
        except SinkError:
            await self._drop()
            raise
        except Exception as e:
            await self._drop()
            raise self._fail("cannot prepare the results table", e) from None

    async def _check_shape(self, conn: asyncpg.Connection, qt: str) -> None:
        have = {r[0] for r in await conn.fetch(
            """SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0
               AND NOT attisdropped""", qt)}
        missing = [c for c in COLUMNS if c not in have]
        if have and missing:
            raise SinkError(f"{self.name}: table '{self.table}' exists but is not a results table "
                            f"(no column {', '.join(missing)}): choose another `table`")

    async def _prepare_mark(self, conn: asyncpg.Connection) -> None:
        assert self.mark_table and self.mark_column
        what = f"mark_sent: table '{self.mark_table}'"
        try:
            oid = await conn.fetchval("SELECT to_regclass($1)::oid", self.mark_table)
        except asyncpg.PostgresError as e:
            raise self._fail(what, e) from None
        if oid is None:
            raise SinkError(f"{self.name}: {what} does not exist in {pg.where(self.dsn)} "
                            f"(it must be in the same database as the results)")
        cols = {r["attname"]: r["t"] for r in await conn.fetch(
            """SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute
               WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped""", oid)}
        if self.mark_column not in cols:
            raise SinkError(f"{self.name}: {what} has no column '{self.mark_column}' (columns: {', '.join(cols)})")
        key = self.mark_key
        if key is None:
            key = await conn.fetchval(
                """SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                   AND a.attnum = i.indkey[0] WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1""", oid)
            if key is None:
                raise SinkError(f"{self.name}: {what} has no single-column primary key to match results' seq")
        if key not in cols:
            raise SinkError(f"{self.name}: {what} has no key column '{key}'")
        if cols[key] not in ("smallint", "integer", "bigint"):
            raise SinkError(f"{self.name}: {what}: key column '{key}' is {cols[key]}, not an integer")
        qt = await conn.fetchval("SELECT $1::oid::regclass::text", oid)
        ctype = cols[self.mark_column]
        cast = "" if ctype == "text" else f"::{ctype}"
        self._mark_sql = (f"UPDATE {qt} AS s SET {pg.ident(self.mark_column)} = r.status{cast} "
                          f"FROM unnest($1::bigint[], $2::text[]) AS r(seq, status) WHERE s.{pg.ident(key)} = r.seq")
        try:
            await conn.prepare(self._mark_sql)
        except asyncpg.PostgresError as e:
            raise self._fail(f"mark_sent: cannot update {qt}.{self.mark_column}", e) from None

    # -- resume ---------------------------------------------------------------------------------
    async def done(self) -> Iterable[int]:
        """Seqs with a result for this run, read page by page from the primary key into a
        compact set (see DoneSeqs): memory stays small at ten million."""
        out = DoneSeqs()
        sql = (f"SELECT array_agg(seq ORDER BY seq) FROM (SELECT seq FROM {self._qt} WHERE run_id = $1 "
               f"AND seq > $2 ORDER BY seq LIMIT {DONE_PAGE}) AS s")
        last = _MIN_SEQ
        while True:
            async def page(conn: asyncpg.Connection, again: bool, after: int = last) -> list[int] | None:
                return await conn.fetchval(sql, self.run_id, after)
            seqs = await self._retrying("reading finished records", page)
            if not seqs:
                return out
            out.add_page(seqs)
            last = seqs[-1]
            if len(seqs) < DONE_PAGE:
                return out

    async def failed(self) -> Iterable[int]:
        """Seqs whose result in this run is `failed`, for --retry-failed (read from a sink that is not
        opened: the earlier run's, so its table named as configured)."""
        sql = f"SELECT seq FROM {self._qt or pg.qualified(self.table)} WHERE run_id = $1 AND status = 'failed' ORDER BY seq"

        async def read(conn: asyncpg.Connection, again: bool) -> list[int]:
            return [r[0] for r in await conn.fetch(sql, self.run_id)]
        return await self._retrying("reading failed records", read)

    # -- writing --------------------------------------------------------------------------------
    async def write(self, results: Results) -> None:
        rows = _rows(results, self.run_id)
        for i in range(0, len(rows), self.batch):
            await self._write(rows[i:i + self.batch])

    async def _write(self, rows: list[tuple]) -> None:
        async def copy(conn: asyncpg.Connection, again: bool) -> None:
            todo = rows
            if again:  # the lost attempt may have committed: copy only what is not there
                there = {r[0] for r in await conn.fetch(
                    f"SELECT seq FROM {self._qt} WHERE run_id = $1 AND seq = ANY($2::bigint[])",
                    self.run_id, [t[_SEQ] for t in rows])}
                if there:
                    todo = [t for t in rows if t[_SEQ] not in there]
                    if not todo:
                        return
            try:
                if self._mark_sql is None:
                    await conn.copy_records_to_table(self._relname, schema_name=self._schema, records=todo,
                                                     columns=COLUMNS)
                    return
                async with conn.transaction():
                    await conn.copy_records_to_table(self._relname, schema_name=self._schema, records=todo,
                                                     columns=COLUMNS)
                    await conn.execute(self._mark_sql, [t[_SEQ] for t in todo], [t[_STATUS] for t in todo])
            except asyncpg.UniqueViolationError as e:
                raise SinkError(f"{self.name}: run '{self.run_id}' already has a result for one of these records "
                                f"({pg.explain(e, self.dsn)}): is another process writing this run, or is the "
                                f"source key not unique?") from None
        await self._retrying("writing results", copy)

    async def close(self) -> None:
        await self._drop()
