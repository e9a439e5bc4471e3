"""PostgreSQL source: a table (with an optional WHERE) or a query, streamed in key order.

```toml
[source]
type = "postgres"
dsn_env = "DISPATCHER_DSN"     # the variable holding postgresql://user:password@host:port/db
table = "audience"             # or: query = "SELECT id, phone, name FROM ... "
where = "status IS NULL"       # optional, with `table`
key = "id"                     # integer column: each record's `seq` (resume key); default "id"
fetch = 10000                  # rows per round trip
recipient = "phone"
id = "customer_ref"            # optional: the id results carry (default: the key)
```

How rows are read, never the whole result at once:
- a table whose key has a unique index: **keyset pages**, `WHERE key > $last ORDER BY key
  LIMIT fetch`, each page one short statement (no long transaction, no snapshot held);
- a query, or a table whose key is not unique-indexed: a **server-side cursor** over
  `SELECT ... FROM (query) q ORDER BY q.key`, fetched `fetch` rows at a time.
Either way records come in key order and `seq` is the key, so a resume is exact, and a
connection lost mid-run is reopened (bounded backoff) from the last key read: nothing is
lost or read twice. The next page is fetched while the current one is being turned into
records.

Fields are what a CSV would give: every column's value as text (the server converts
numbers, dates, booleans... with its own text output, so `numeric` keeps its exact
digits), NULL as None. The key column is a field too (as text). Keys must be unique and
not NULL: a duplicate or NULL key stops the read with an error naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from .. import pg
from ..errors import SourceError
from ..model import Chunk, Result
from .base import CHUNK_SIZE, Source

INTEGER_TYPES = frozenset({"int2", "int4", "int8"})
TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name"})
DEFAULT_FETCH = 10_000


@dataclass
class _Plan:
    """What describing the table or query found, and the statements that read it."""

    columns: list[str]
    keyset: bool  # keyset pages (unique key index) or one cursor in key order
    unique: bool  # keys known unique (else checked while reading)
    first: str  # the statement for the first page / the cursor from the start
    after: str  # the same from just after key $1
    statement: str  # every row read, in key order, as one plain statement (what the bench's raw cursor runs)
    bounds: str | None  # min(key), max(key) cheaply (an index leads with the key)
    estimate: str  # EXPLAIN of the whole read, for its row estimate (the planner's, from reltuples)


def _builder(columns: list[str], key: str) -> Callable[[list[Any]], Chunk]:
    """A function turning fetched rows (the key, then every other column) into columns: one C-level
    transposition (`zip(*rows)` over a chunk's slice of the page: measured cheaper than one `itemgetter`
    map a column, and than transposing the whole page at once). The key comes once, as an int (the
    seq); its field is that number as text, like every other field: `repr`, which for an int is its
    decimal text, without `str`'s type call (about a tenth of the builder's time, measured)."""
    others = [c for c in columns if c != key]

    def build(rows: list[Any]) -> Chunk:
        if not rows:
            return Chunk([], {name: [] for name in columns})
        cols = list(zip(*rows, strict=True))
        seqs = list(cols[0])
        by_name = dict(zip(others, map(list, cols[1:]), strict=True))
        if key in columns:
            by_name[key] = list(map(repr, seqs))
        return Chunk(seqs, {name: by_name[name] for name in columns})
    return build


class PostgresSource(Source):
    def __init__(self, dsn: str, *, table: str | None = None, where: str | None = None, query: str | None = None,
                 key: str = "id", fetch: int = DEFAULT_FETCH, recipient: str = "phone", id_column: str = "",
                 chunk_size: int = CHUNK_SIZE, dsn_env: str = pg.DEFAULT_DSN_ENV) -> None:
        if (table is None) == (query is None):
            raise SourceError("a postgres source needs either `table` or `query` (not both)")
        if where is not None and table is None:
            raise SourceError("`where` goes with `table`; with `query`, write the condition in the query")
        self.dsn = dsn
        self.dsn_env = dsn_env
        self.table = table
        self.where = where
        self.query = re.sub(r"[\s;]+$", "", query) if query is not None else None
        self.key = key
        self.fetch = fetch
        self.recipient = recipient
        self.id_column = id_column
        self.chunk_size = chunk_size
        self.name = f"postgres:{table}" if table is not None else "postgres:query"
        self.reconnects = 0  # connections lost and reopened while reading
        self._plan: _Plan | None = None
        self._conn: asyncpg.Connection | None = None
        self._tx: Any = None
        self._cursor: Any = None
        self._first: Any = None  # keyset statements: the first page, the pages after key $1
        self._after: Any = None
        self._last: int | None = None  # the key of the last row read
        self._read = 0
        self._lo: int | None = None
        self._hi: int | None = None
        self._estimate = 0
        self._finished = False
        self._pending: asyncio.Future[list[Any]] | None = None

    @classmethod
    def from_config(cls, src: dict[str, Any], chunk_size: int) -> PostgresSource:
        """Build from the campaign's [source] table and check it against the database now, so a
        bad DSN, a missing table or column, or a failing query is a configuration error."""
        for k in ("table", "where", "query", "key", "recipient", "id"):
            v = src.get(k)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise SourceError(f"`{k}` must be a non-empty string")
        fetch = src.get("fetch", DEFAULT_FETCH)
        if not isinstance(fetch, int) or isinstance(fetch, bool) or not 1 <= fetch <= 1_000_000:
            raise SourceError("`fetch` must be a whole number of rows from 1 to 1000000")
        dsn, env = pg.dsn_from_env(src.get("dsn_env"), "postgres source", SourceError)
        source = cls(dsn, table=src.get("table"), where=src.get("where"), query=src.get("query"),
                     key=src.get("key", "id"), fetch=fetch, recipient=src.get("recipient", "phone"),
                     id_column=src.get("id", ""), chunk_size=chunk_size, dsn_env=env)
        source.describe()
        return source

    # -- describing ---------------------------------------------------------------------------------
    def describe(self) -> _Plan:
        """Connect once and check everything (synchronously: campaign files are loaded before the loop)."""
        if self._plan is None:
            self._plan = pg.run_sync(self._describe_once)
        return self._plan

    async def _describe_once(self) -> _Plan:
        conn = await self._connect_first()
        try:
            return await self._describe(conn)
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _fail(self, what: str, e: BaseException) -> SourceError:
        return SourceError(f"{self.name}: {what}: {pg.explain(e, self.dsn)}")

    async def _connect_first(self) -> asyncpg.Connection:
        try:
            return await pg.connect(self.dsn)
        except Exception as e:
            raise SourceError(f"{self.name}: cannot connect to {pg.where(self.dsn)} (from ${self.dsn_env}): "
                              f"{pg.explain(e, self.dsn)}") from None

    async def _describe(self, conn: asyncpg.Connection) -> _Plan:
        if self.table is not None:
            return await self._describe_table(conn)
        return await self._describe_query(conn)

    def _check_columns(self, attrs: list[Any]) -> tuple[list[str], dict[str, str]]:
        names = [a.name for a in attrs]
        types = {a.name: a.type.name for a in attrs}
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise SourceError(f"{self.name}: column '{dup}' appears twice: give the columns distinct names")
        if self.key not in types:
            raise SourceError(f"{self.name}: no key column '{self.key}' (set `key` to an integer column; "
                              f"columns: {', '.join(names)})")
        if types[self.key] not in INTEGER_TYPES:
            raise SourceError(f"{self.name}: key column '{self.key}' is {types[self.key]}, not an integer: "
                              f"`key` must name a unique integer column (smallint, integer or bigint)")
        for needed, what in ((self.recipient, "recipient"), (self.id_column, "id")):
            if needed and needed not in types:
                raise SourceError(f"{self.name}: no column '{needed}' for the {what} (columns: {', '.join(names)})")
        return names, types

    def _select_list(self, alias: str, names: list[str], types: dict[str, str]) -> str:
        cols = [f"{alias}.{pg.ident(self.key)}"]
        for n in names:
            if n == self.key:
                continue
            c = f"{alias}.{pg.ident(n)}"
            cols.append(c if types[n] in TEXT_TYPES else f"{c}::text")
        return ", ".join(cols)

    async def _describe_table(self, conn: asyncpg.Connection) -> _Plan:
        assert self.table is not None
        try:
            oid = await conn.fetchval("SELECT to_regclass($1)::oid", self.table)
        except asyncpg.PostgresError as e:
            raise self._fail(f"bad table name '{self.table}'", e) from None
        if oid is None:
            raise SourceError(f"{self.name}: table '{self.table}' does not exist in {pg.where(self.dsn)}")
        qt = await conn.fetchval("SELECT $1::oid::regclass::text", oid)
        cond = f"({self.where})" if self.where else "true"
        try:
            stmt = await conn.prepare(f"SELECT * FROM {qt} WHERE {cond} LIMIT 0")
        except asyncpg.PostgresError as e:
            raise self._fail("where" if self.where else "cannot read the table", e) from None
        names, types = self._check_columns(list(stmt.get_attributes()))
        info = await conn.fetchrow(
            """SELECT a.attnotnull,
                      EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
                              AND i.indisvalid AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum
                              AND i.indpred IS NULL) AS unique_index,
                      EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                              JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = a.attrelid
                              AND am.amname = 'btree' AND i.indkey[0] = a.attnum AND i.indpred IS NULL) AS leading
               FROM pg_attribute a WHERE a.attrelid = $1 AND a.attname = $2""", oid, self.key)
        k = pg.ident(self.key)
        sel = self._select_list("t", names, types)
        keyset = bool(info["unique_index"])
        if keyset and not info["attnotnull"]:
            nulls = await conn.fetchval(f"SELECT count(*) FROM {qt} WHERE {k} IS NULL AND {cond}")
            if nulls:
                raise SourceError(f"{self.name}: {nulls} row(s) have no key (NULL in '{self.key}'): "
                                  f"every row needs a unique key")
        statement = f"SELECT {sel} FROM {qt} AS t WHERE {cond} ORDER BY t.{k}"
        first = statement
        after = f"SELECT {sel} FROM {qt} AS t WHERE t.{k} > $1 AND {cond} ORDER BY t.{k}"
        if keyset:
            first, after = f"{first} LIMIT {self.fetch}", f"{after} LIMIT {self.fetch}"
        bounds = f"SELECT min({k}), max({k}) FROM {qt}" if info["leading"] else None
        return _Plan(names, keyset, keyset, first, after, statement, bounds, f"SELECT * FROM {qt} WHERE {cond}")

    async def _describe_query(self, conn: asyncpg.Connection) -> _Plan:
        assert self.query is not None
        wrapped = f"SELECT * FROM ({self.query}\n) AS q"
        try:
            stmt = await conn.prepare(f"{wrapped} LIMIT 0")
        except asyncpg.PostgresError as e:
            raise self._fail("query", e) from None
        names, types = self._check_columns(list(stmt.get_attributes()))
        k = pg.ident(self.key)
        sel = self._select_list("q", names, types)
        first = f"SELECT {sel} FROM ({self.query}\n) AS q ORDER BY q.{k}"
        after = f"SELECT {sel} FROM ({self.query}\n) AS q WHERE q.{k} > $1 ORDER BY q.{k}"
        return _Plan(names, False, False, first, after, first, None, wrapped)

    def identity(self) -> dict[str, Any]:
        """The database (never its credentials) and the statement: another table or query is another audience."""
        what = self.query if self.query is not None else f"{self.table} WHERE {self.where or 'true'}"
        return {"statement": f"{pg.where(self.dsn)}: {what} (key {self.key})"}

    def columns(self) -> list[str] | None:
        return list(self.describe().columns)

    def progress(self) -> float | None:
        if self._finished:
            return 1.0
        if self._lo is not None and self._hi is not None and self._last is not None:
            span = self._hi - self._lo + 1
            return min(1.0, max(0.0, (self._last - self._lo + 1) / span)) if span > 0 else None
        if self._estimate > 0:
            return min(0.99, self._read / self._estimate)
        return None

    def estimate_total(self) -> int | None:
        """Exact once read; before, the rows read scaled by how far through the key range they are
        (keys of a table index), else the planner's row estimate (EXPLAIN: no scan, no count)."""
        if self._finished:
            return self._read
        if self._read and self._lo is not None:
            frac = self.progress()
            if frac:
                return max(self._read, round(self._read / frac))
        return max(self._read, self._estimate) if self._estimate > 0 else None

    # -- reading -------------------------------------------------------------------------------------
    async def _open(self) -> None:
        """A connection, the statements, and (cursor mode) a cursor from just after the last key read."""
        plan = self._plan
        assert plan is not None
        self._conn = conn = await pg.connect(self.dsn)
        if plan.keyset:
            self._first = await conn.prepare(plan.first) if self._last is None else None
            self._after = await conn.prepare(plan.after)
            return
        stmt = await conn.prepare(plan.first if self._last is None else plan.after)
        self._tx = conn.transaction(readonly=True)
        await self._tx.start()
        self._cursor = await (stmt.cursor() if self._last is None else stmt.cursor(self._last))

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._tx = self._cursor = self._first = self._after = None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()

    async def _fetch(self) -> list[Any]:
        plan = self._plan
        assert plan is not None
        if plan.keyset:
            if self._last is None:
                return await self._first.fetch()
            return await self._after.fetch(self._last)
        rows = await self._cursor.fetch(self.fetch)
        if not rows:
            await self._tx.commit()
            self._tx = None
        return rows

    async def _page(self) -> list[Any]:
        """The next rows, surviving lost connections: reopened from the last key read."""
        async def attempt(n: int) -> list[Any]:
            if self._conn is None:
                await self._open()
            return await self._fetch()

        async def failed(e: BaseException, n: int, final: bool) -> None:
            if isinstance(e, SourceError):
                return
            await self._drop()
            if not final:
                self.reconnects += 1
            else:
                lost = f" (gave up after {n + 1} attempts)" if n else ""
                raise self._fail("reading failed" + lost, e) from None

        rows = await pg.retrying(attempt, connection=lambda: self._conn, failed=failed)
        if rows:
            self._check_keys(rows)
            self._last = rows[-1][0]
            self._read += len(rows)
        return rows

    def _check_keys(self, rows: list[Any]) -> None:
        """Keys come in order: a NULL comes last, a duplicate next to its twin. A keyset page is checked
        for NULL too (a row inserted since describing, on a nullable unique key): its last key would be
        None, the next page the first one again, and its rows would carry no seq."""
        plan = self._plan
        assert plan is not None
        if rows[-1][0] is None:
            raise SourceError(f"{self.name}: rows with no key (NULL in '{self.key}'): every row needs a unique key")
        if plan.unique:
            return
        keys = [r[0] for r in rows]
        prev = self._last
        if len(set(keys)) != len(keys) or (prev is not None and keys[0] == prev):
            for k in keys:
                if k == prev:
                    raise SourceError(f"{self.name}: key '{self.key}' is not unique ({k} appears twice): "
                                      f"results are matched to rows by key, so it must be unique")
                prev = k

    async def _start(self) -> None:
        plan = await self.describe_async()
        self._last = None
        self._read = 0
        self._finished = False
        try:
            await self._open()
            assert self._conn is not None
            if plan.bounds:
                self._lo, self._hi = await self._conn.fetchrow(plan.bounds)  # type: ignore[misc]
            if plan.estimate:
                explained = await self._conn.fetchval(f"EXPLAIN (FORMAT JSON) {plan.estimate}")
                with contextlib.suppress(Exception):
                    import orjson
                    self._estimate = int(orjson.loads(explained)[0]["Plan"]["Plan Rows"])
        except SourceError:
            await self._drop()
            raise
        except Exception as e:
            await self._drop()
            raise self._fail("cannot start reading", e) from None

    async def describe_async(self) -> _Plan:
        """`describe()` from async code."""
        if self._plan is None:
            self._plan = await self._describe_once()
        return self._plan

    async def chunks(self, skip: Callable[[int], bool] | None = None) -> AsyncIterator[tuple[Chunk, list[Result]]]:
        await self._start()
        plan = self._plan
        assert plan is not None
        build = _builder(plan.columns, self.key)
        size = self.chunk_size
        buf: list[Any] = []
        try:
            self._pending = asyncio.ensure_future(self._page())
            while True:
                rows = await self._pending
                self._pending = None
                if not rows or (plan.keyset and len(rows) < self.fetch):
                    last_page = True
                else:
                    last_page = False
                    # the next page is asked for now and computed by the server while this one is used
                    self._pending = asyncio.ensure_future(self._page())
                    await asyncio.sleep(0)  # let the request go out
                if skip is not None:
                    rows = [r for r in rows if not skip(r[0])]
                if buf:
                    buf.extend(rows)
                    rows, buf = buf, []
                n = len(rows)
                start = 0
                while n - start >= size:
                    yield build(rows[start:start + size]), []
                    start += size
                if start < n:
                    buf = rows[start:] if start else rows
                if last_page:
                    break
            self._finished = True
            if buf:
                yield build(buf), []
        finally:
            await self.close()

    async def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        elif pending is not None and pending.done() and not pending.cancelled():
            pending.exception()  # retrieved: nothing to report once the reader has stopped
        await self._drop()
