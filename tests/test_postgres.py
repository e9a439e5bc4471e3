"""PostgreSQL source and sink against a real server (the `postgres_dsn` fixture), and whole
blasts Postgres -> 360nrs simulator -> Postgres: the invariant, exact resume, killed connections."""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import pytest

from dispatcher import cli, pg
from dispatcher.blast.preparer import CampaignPreparer
from dispatcher.config import Overrides, load_campaign
from dispatcher.engine import Engine
from dispatcher.errors import ConfigError, SinkError, SourceError
from dispatcher.model import Chunk, Result, Results
from dispatcher.sinks import postgres as pgsink
from dispatcher.sinks.postgres import PostgresSink
from dispatcher.sources.postgres import PostgresSource

ENV = "DISPATCHER_TEST_PG"
_names = itertools.count(1)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def sql(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def kill_ours(dsn: str) -> int:
    """pg_terminate_backend on every connection this test's dispatcher opened (its application_name)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 "
            "AND pid <> pg_backend_pid()", pg.APPLICATION_NAME)
    finally:
        await conn.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


@pytest.fixture
def dsn(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV, postgres_dsn)
    monkeypatch.setattr(pg, "RETRY", pg.Retry(attempts=8, base=0.02, cap=0.3))
    # our connections carry this name: kill_ours() ends them and nothing else on the server
    monkeypatch.setattr(pg, "APPLICATION_NAME", f"dispatcher-test-{os.getpid()}")
    return postgres_dsn


def audience(dsn: str, n: int, *, name: str | None = None, step: int = 1, bad_every: int = 0,
             key: str = "id bigint PRIMARY KEY") -> str:
    """A table of n recipients with ids 1, 1+step, ...; every bad_every-th phone is invalid."""
    table = name or unique("aud")
    bad = f"CASE WHEN g % {bad_every} = 0 THEN 'nope' || g ELSE " if bad_every else ""
    phone = f"{bad}'+3461' || lpad(g::text, 7, '0')" + (" END" if bad_every else "")
    run(sql(dsn, f"DROP TABLE IF EXISTS {table}",
            f"CREATE TABLE {table} ({key}, phone text, name text, amount numeric(10,2), active boolean, "
            f"born date, status text)",
            f"INSERT INTO {table} SELECT 1 + (g - 1) * {step}, {phone}, 'name' || g, g / 8.0, g % 2 = 0, "
            f"date '2000-01-01' + g, NULL FROM generate_series(1, {n}) g"))
    return table


class Row(NamedTuple):
    seq: int
    fields: dict[str, Any]


def records(c: Chunk) -> list[Row]:
    return [Row(seq, c.fields(i)) for i, seq in enumerate(c.seq)]


async def read_all(source: PostgresSource, skip: Any = None) -> list[tuple[list, list]]:
    return [(recs, bad) async for recs, bad in source.chunks(skip)]


def source(table: str | None = None, chunk: int = 100, **kw: Any) -> PostgresSource:
    spec = {"type": "postgres", "dsn_env": ENV, **({"table": table} if table else {}), **kw}
    return PostgresSource.from_config(spec, chunk)


# -- source -----------------------------------------------------------------------------------------

def test_source_keyset_chunks_fields_and_progress(dsn: str) -> None:
    t = audience(dsn, 1000, step=3)
    s = source(t, chunk=128, fetch=300)
    assert s.columns() == ["id", "phone", "name", "amount", "active", "born", "status"]
    assert s._plan is not None and s._plan.keyset
    assert s.progress() is None

    async def halfway() -> float | None:
        it = s.chunks()
        await it.__anext__()
        try:
            return s.progress()
        finally:
            await it.aclose()

    assert 0 < (run(halfway()) or 0) < 1
    chunks = run(read_all(s))
    sizes = [len(r) for r, _ in chunks]
    assert sizes == [128] * 7 + [104]
    assert all(not bad for _, bad in chunks)
    recs = [r for c, _ in chunks for r in records(c)]
    assert [r.seq for r in recs] == [1 + 3 * i for i in range(1000)]
    assert recs[0].fields == {"id": "1", "phone": "+34610000001", "name": "name1", "amount": "0.13",
                              "active": "false", "born": "2000-01-02", "status": None}
    assert s.progress() == 1.0


def test_source_where_skip_and_cursor_mode(dsn: str) -> None:
    t = audience(dsn, 500)
    s = source(t, where="id % 5 = 0 AND active")
    seqs = [seq for c, _ in run(read_all(s)) for seq in c.seq]
    assert seqs == list(range(10, 501, 10))
    s = source(t, chunk=64, fetch=50)
    seqs = [seq for c, _ in run(read_all(s, skip=lambda q: q % 2 == 1)) for seq in c.seq]
    assert seqs == list(range(2, 501, 2))
    # no unique index on the key: one cursor in key order instead of keyset pages
    t2 = audience(dsn, 300, key="id bigint")
    run(sql(dsn, f"UPDATE {t2} SET id = 301 - id"))
    s = source(t2, fetch=70)
    assert s._plan is not None and not s._plan.keyset
    assert [seq for c, _ in run(read_all(s)) for seq in c.seq] == list(range(1, 301))


def test_source_built_inside_a_running_loop(dsn: str) -> None:
    """Campaign files may be loaded from async code (the daemon): describing still works."""
    t = audience(dsn, 5)

    async def go() -> list[int]:
        s = source(t)
        return [seq for c, _ in await read_all(s) for seq in c.seq]

    assert run(go()) == [1, 2, 3, 4, 5]


def test_source_query_mode(dsn: str) -> None:
    t = audience(dsn, 400)
    q = f"SELECT a.id * 10 AS uid, a.phone, upper(a.name) AS name, a.amount * 2 AS twice FROM {t} a WHERE a.active;"
    s = source(query=q, key="uid", fetch=33, chunk=50)
    assert s.columns() == ["uid", "phone", "name", "twice"]
    recs = [r for c, _ in run(read_all(s)) for r in records(c)]
    assert [r.seq for r in recs] == list(range(20, 4001, 20))
    assert recs[0].fields == {"uid": "20", "phone": "+34610000002", "name": "NAME2", "twice": "0.50"}
    assert s.progress() == 1.0


def test_source_errors_are_one_clear_line(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = audience(dsn, 10)
    cases = [
        ({"table": "no_such_table"}, "table 'no_such_table' does not exist"),
        ({"table": t, "where": "nocol = 1"}, 'where: column "nocol" does not exist'),
        ({"table": t, "key": "phone"}, "key column 'phone' is text, not an integer"),
        ({"table": t, "key": "amount"}, "is numeric, not an integer"),
        ({"table": t, "key": "nokey"}, "no key column 'nokey'"),
        ({"table": t, "recipient": "tel"}, "no column 'tel' for the recipient"),
        ({"table": t, "id": "ref"}, "no column 'ref' for the id"),
        ({"query": "SELEC id FROM x"}, "query: syntax error"),
        ({"query": f"SELECT phone FROM {t}"}, "no key column 'id'"),
        ({"table": t, "query": "SELECT 1"}, "either `table` or `query`"),
        ({"table": t, "fetch": 0}, "`fetch` must be"),
    ]
    for spec, message in cases:
        with pytest.raises(SourceError, match=None) as e:
            source(**spec)
        assert message in str(e.value), (spec, str(e.value))
        assert "\n" not in str(e.value)
    with pytest.raises(SourceError, match="NO_SUCH_VAR"):
        source(t, dsn_env="NO_SUCH_VAR")
    # the password never shows, whatever fails
    secret = "s3cr3t-Pa55"
    for bad in (dsn.replace("postgres@", f"postgres:{secret}@").rsplit("/", 1)[0] + "/no_such_db",
                f"postgresql://postgres:{secret}@127.0.0.1:1/postgres",
                f"postgresql://nobody:{secret}@{dsn.split('@', 1)[1]}"):
        monkeypatch.setenv("BAD_DSN", bad)
        with pytest.raises(SourceError) as e:
            source(t, dsn_env="BAD_DSN")
        assert secret not in str(e.value) and "cannot connect" in str(e.value)
        with pytest.raises(SinkError) as e2:
            run(PostgresSink.from_config({"type": "postgres", "dsn_env": "BAD_DSN"}, "r").open(False))
        assert secret not in str(e2.value) and "cannot connect" in str(e2.value)


def test_source_bad_keys_and_failing_query(dsn: str) -> None:
    t = audience(dsn, 50, key="id bigint")
    run(sql(dsn, f"UPDATE {t} SET id = 7 WHERE id = 8"))
    with pytest.raises(SourceError, match=r"not unique \(7 appears twice\)"):
        run(read_all(source(t, fetch=5)))
    run(sql(dsn, f"UPDATE {t} SET id = NULL WHERE id = 7"))
    with pytest.raises(SourceError, match="NULL"):
        run(read_all(source(t)))
    t2 = audience(dsn, 50, key="id bigint PRIMARY KEY")
    with pytest.raises(SourceError, match="division by zero"):
        run(read_all(source(query=f"SELECT id, phone, 1 / (id - 40) AS x FROM {t2}", fetch=10)))


def test_source_null_key_inserted_after_describing_stops_the_read(dsn: str) -> None:
    """A nullable unique key, clean when described; a NULL key inserted before reading comes last on the
    first page: an error naming it, not a record without a seq (or, on a full page, the first page again)."""
    t = audience(dsn, 20, key="id bigint UNIQUE")
    s = source(t, fetch=50)
    assert s._plan is not None and s._plan.keyset
    run(sql(dsn, f"INSERT INTO {t} (id, phone) VALUES (NULL, '+34610000999')"))
    with pytest.raises(SourceError, match="NULL in 'id'"):
        run(read_all(s))


@pytest.mark.parametrize("spec", [{"where": "id % 3 <> 0"}, {"query": "SELECT id, phone, amount, born FROM {t}"}])
def test_source_statement_reads_what_the_source_reads(dsn: str, spec: dict[str, str]) -> None:
    """`statement` (what bench/postgres.py runs with a raw cursor beside the source) gives the same rows,
    fields and order as the source's pages."""
    t = audience(dsn, 700)
    kw = {k: v.format(t=t) for k, v in spec.items()}
    s = source(t if "where" in kw else None, chunk=64, fetch=150, **kw)
    plan = s.describe()
    recs = [r for c, _ in run(read_all(s)) for r in records(c)]
    rows = run(fetch(dsn, plan.statement))
    assert len(rows) == len(recs) > 400
    others = [c for c in plan.columns if c != s.key]
    assert [r[0] for r in rows] == [r.seq for r in recs]
    assert [dict(zip(others, r[1:], strict=True)) | {s.key: str(r[0])} for r in rows] == [r.fields for r in recs]


@pytest.mark.parametrize("mode", ["keyset", "cursor"])
def test_source_survives_killed_connection(dsn: str, mode: str) -> None:
    t = audience(dsn, 2000)
    spec: dict[str, Any] = {"table": t} if mode == "keyset" else {"query": f"SELECT * FROM {t}"}

    async def go() -> tuple[list[int], int]:
        s = source(chunk=100, fetch=150, **spec)
        seqs: list[int] = []
        kills = 0
        async for recs, _ in s.chunks():
            seqs.extend(recs.seq)
            if len(seqs) in (300, 1200):
                kills += await kill_ours(dsn)
        assert kills >= 2
        return seqs, s.reconnects

    seqs, reconnects = run(go())
    assert seqs == list(range(1, 2001))
    assert reconnects >= 2


# -- sink -------------------------------------------------------------------------------------------

def results(seqs: Any, status: str = "sent") -> list[Result]:
    return [Result(s, f"r{s}", f"+34{s}", "sms", status, f"M{s}", 1, "GSM-7", None, None, 1, 1.5, None, "sms",
                   False, {"n": s} if s % 7 == 0 else None) for s in seqs]


def sink(table: str, run_id: str, **spec: Any) -> PostgresSink:
    return PostgresSink.from_config({"type": "postgres", "dsn_env": ENV, "table": table, **spec}, run_id)


def test_sink_copy_schema_and_done(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = unique("res")

    async def go() -> None:
        s = sink(table, "run-a")
        await s.open(resume=False)
        await s.write(Results.of(results(range(1, 1001))))
        await s.write(Results.of(results(range(5000, 900_000, 4000), "failed")))
        await s.close()
        rows = await fetch(dsn, f"SELECT * FROM {table} ORDER BY seq")
        assert len(rows) == 1000 + len(range(5000, 900_000, 4000))
        r = rows[6]
        assert (r["run_id"], r["seq"], r["id"], r["to"], r["status"], r["message_id"], r["parts"], r["latency_ms"],
                r["transliterated"]) == ("run-a", 7, "r7", "+347", "sent", "M7", 1, 1.5, False)
        meta = await fetch(dsn, f"SELECT meta->>'n' AS n FROM {table} WHERE seq = 14")
        assert meta[0]["n"] == "14"
        assert (await fetch(dsn, "SELECT version FROM dispatcher_schema WHERE name = $1",
                            f"results:{table}"))[0]["version"] == pgsink.SCHEMA_VERSION
        pk = await fetch(dsn, "SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index WHERE indrelid = $1::regclass",
                         table)
        assert [p["d"] for p in pk] == [f"CREATE UNIQUE INDEX {table}_pkey ON public.{table} USING btree (run_id, seq)"]

        # a second run id in the same table; done() is per run, paged, dense and sparse
        other = sink(table, "run-b")
        await other.open(resume=False)
        await other.write(Results.of(results(range(1, 11))))
        await other.close()
        monkeypatch.setattr(pgsink, "DONE_PAGE", 128)
        again = sink(table, "run-a")
        with pytest.raises(SinkError, match=r"already holds results of run 'run-a'.*resume"):
            await again.open(resume=False)
        await again.open(resume=True)
        done = await again.done()
        assert list(done) == [*range(1, 1001), *range(5000, 900_000, 4000)]
        assert len(done) == len(rows)
        await again.close()
        fresh = sink(table, "run-c")
        await fresh.open(resume=True)
        assert list(await fresh.done()) == []
        await fresh.close()

    run(go())


def test_sink_migrations_are_versioned(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = unique("res")
    applied: list[str] = []

    def v2(qt: str):
        async def add(conn: asyncpg.Connection) -> None:
            applied.append(qt)
            await conn.execute(f"CREATE INDEX ON {qt} (message_id)")
        return add

    async def go() -> None:
        s = sink(table, "m")
        await s.open(resume=False)
        await s.close()
        monkeypatch.setattr(pgsink, "MIGRATIONS", (*pgsink.MIGRATIONS, v2))
        for i in range(2):
            s = sink(table, "m")
            await s.open(resume=True)
            await s.write(Results.of(results(range(10 * i + 1, 10 * i + 4))))
            await s.close()
        rows = await fetch(dsn, "SELECT version FROM dispatcher_schema WHERE name = $1", f"results:{table}")
        assert rows[0]["version"] == 2
        assert applied == [f'"{table}"']
        with pytest.raises(SinkError, match="already has a result"):
            s = sink(table, "m")
            await s.open(resume=True)
            await s.write(Results.of(results([12])))

    run(go())
    # a table of the same name that is not ours
    other = unique("notres")
    run(sql(dsn, f"CREATE TABLE {other} (a int)"))
    with pytest.raises(SinkError, match="not a results table"):
        run(sink(other, "x").open(False))


def test_sink_mark_sent(dsn: str) -> None:
    t = audience(dsn, 300)
    table = unique("res")
    run(sql(dsn, "DO $$ BEGIN CREATE TYPE delivery AS ENUM ('sent', 'failed', 'rejected'); "
                 "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            f"ALTER TABLE {t} ADD COLUMN state delivery"))

    async def go() -> None:
        # the source table from the campaign's [source] (when config passes it), or TABLE.COLUMN
        s = PostgresSink.from_config({"type": "postgres", "dsn_env": ENV, "table": table, "mark_sent": "status"},
                                     "mk", source={"type": "postgres", "table": t, "key": "id"})
        await s.open(resume=False)
        await s.write(Results.of(results(range(1, 101)) + results(range(101, 151), "failed")))
        await s.close()
        s = sink(table, "mk2", mark_sent=f"{t}.state")
        await s.open(resume=False)
        await s.write(Results.of(results(range(1, 51), "rejected")))
        await s.close()
        rows = await fetch(dsn, f"SELECT status, state::text AS state, count(*) FROM {t} GROUP BY 1, 2 ORDER BY 1, 2")
        assert [tuple(r) for r in rows] == [("failed", None, 50), ("sent", "rejected", 50), ("sent", None, 50),
                                           (None, None, 150)]
        for mark, message in ((f"{t}.nope", "has no column 'nope'"), ("no_table.status", "does not exist"),
                              ("status", "which table")):
            with pytest.raises(SinkError, match=message):
                s = sink(table, unique("mk"), mark_sent=mark)
                await s.open(resume=False)

    run(go())


def test_sink_retries_a_lost_connection_without_duplicates(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = unique("res")
    real_copy = asyncpg.Connection.copy_records_to_table
    lose_answer = [False]

    async def copy_then_lose(self: asyncpg.Connection, *args: Any, **kw: Any) -> str:
        """The COPY commits on the server, then the connection dies before its answer is read."""
        out = await real_copy(self, *args, **kw)
        if lose_answer[0]:
            lose_answer[0] = False
            await kill_ours(dsn)
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return out

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", copy_then_lose)

    async def go() -> None:
        s = sink(table, "lost")
        await s.open(resume=False)
        await s.write(Results.of(results(range(1, 501))))
        assert await kill_ours(dsn) == 1  # between two writes
        await s.write(Results.of(results(range(501, 1001))))
        assert s.reconnects >= 1
        lose_answer[0] = True  # committed, but the sink cannot know: it asks, and copies nothing twice
        await s.write(Results.of(results(range(1001, 1501))))
        assert s.retries >= 1 and not lose_answer[0]
        await kill_ours(dsn)  # while a COPY is running
        await asyncio.gather(s.write(Results.of(results(range(1501, 41_501)))), kill_soon())
        done = await s.done()
        await s.close()
        assert list(done) == list(range(1, 41_501))

    async def kill_soon() -> None:
        await asyncio.sleep(0.03)
        await kill_ours(dsn)

    run(go())


# -- whole blasts -----------------------------------------------------------------------------------

CAMPAIGN = """
[source]
type = "postgres"
dsn_env = "{env}"
table = "{table}"
recipient = "phone"
fetch = {fetch}

[message]
channel = "sms"
sender = "ACME"
region = "ES"
template = "Hola {{name|capitalize}}, tu factura de {{amount|formatDotComma}} EUR."

[providers.sms]
type = "nrs360"
url = "{url}"
username_env = "NRS360_USER"
password_env = "NRS360_PASSWORD"
rate = {rate}
batch_size = {batch}

[engine]
chunk_size = {chunk}
max_in_flight = {in_flight}

[[sinks]]
type = "postgres"
dsn_env = "{env}"
table = "{results}"
mark_sent = "{table}.status"
"""


def campaign(tmp_path: Path, sim: Any, table: str, results_table: str, *, rate: float = 1000, batch: int = 200,
             chunk: int = 256, in_flight: int = 0, fetch: int = 1000) -> Path:
    path = tmp_path / f"{table}.toml"
    path.write_text(CAMPAIGN.format(env=ENV, table=table, url=sim.url("nrs360"), rate=rate, batch=batch,
                                    chunk=chunk, in_flight=in_flight, results=results_table, fetch=fetch))
    return path


def check_invariant(dsn: str, sim: Any, table: str, results_table: str, run_id: str) -> list[asyncpg.Record]:
    """Exactly one result per source row; the sent ones are the simulator's ledger, each once."""
    src = run(fetch(dsn, f"SELECT id, phone, status FROM {table} ORDER BY id"))
    res = run(fetch(dsn, f"SELECT seq, \"to\", status, message_id FROM {results_table} WHERE run_id = $1 "
                         f"ORDER BY seq", run_id))
    assert [r["seq"] for r in res] == [r["id"] for r in src]
    assert all(r["status"] in ("sent", "rejected") for r in res)
    assert [s["status"] for s in src] == [r["status"] for r in res]  # mark_sent
    ledger = sim.ledger("nrs360")
    sent = {r["message_id"]: r["to"].lstrip("+") for r in res if r["status"] == "sent"}
    assert len(ledger) == len(sent)
    assert {e["id"]: e["to"] for e in ledger} == sent
    assert len({e["to"] for e in ledger}) == len(ledger)  # each recipient once
    return res


def test_blast_postgres_to_postgres(dsn: str, sim: Any, tmp_path: Path) -> None:
    table = audience(dsn, 3000, step=2, bad_every=250)
    results_table = unique("res")
    path = campaign(tmp_path, sim, table, results_table)
    code = cli.main(["blast", str(path), "--quiet", "--run-id", "pg-blast"])
    assert code == 1  # some rows are rejected on purpose
    res = check_invariant(dsn, sim, table, results_table, "pg-blast")
    assert sum(r["status"] == "rejected" for r in res) == 12
    # the same run id again: nothing is left to do, nothing is sent twice
    assert cli.main(["blast", str(path), "--quiet", "--run-id", "pg-blast"]) == 0
    check_invariant(dsn, sim, table, results_table, "pg-blast")
    # the same run id without its journal (a fresh start) is refused: its results are there
    (tmp_path / ".dispatcher").rename(tmp_path / "journals-elsewhere")
    assert cli.main(["blast", str(path), "--quiet", "--run-id", "pg-blast"]) == cli.EXIT_CONFIG
    # a new run id is fine in the same results table
    assert cli.main(["blast", str(path), "--quiet", "--run-id", "pg-blast-2"]) == 1
    assert run(fetch(dsn, f"SELECT count(*) FROM {results_table} WHERE run_id = 'pg-blast-2'"))[0][0] == 3000


def test_blast_resume_is_exact(dsn: str, sim: Any, tmp_path: Path) -> None:
    table = audience(dsn, 3000)
    results_table = unique("res")
    sim.config("nrs360", rate=20)
    path = campaign(tmp_path, sim, table, results_table, rate=20, batch=100, chunk=128, in_flight=600, fetch=200)
    c = load_campaign(path, Overrides(run_id="pg-resume"))

    async def interrupted() -> Engine:
        engine = Engine(c, preparer=CampaignPreparer(c))
        task = asyncio.create_task(engine.run())
        while engine.stats.done < 700:
            await asyncio.sleep(0.02)
        engine.stop()  # as the first Ctrl-C: reading stops, requests on the wire settle
        await task
        return engine

    engine = run(interrupted())
    assert engine.interrupted
    first = run(fetch(dsn, f"SELECT count(*) FROM {results_table} WHERE run_id = 'pg-resume'"))[0][0]
    assert 700 <= first < 3000
    assert len(sim.ledger("nrs360")) == first
    sim.config("nrs360", rate=0)
    assert cli.main(["blast", str(path), "--quiet", "--run-id", "pg-resume"]) == 0
    check_invariant(dsn, sim, table, results_table, "pg-resume")


def test_blast_survives_killed_connections(dsn: str, sim: Any, tmp_path: Path) -> None:
    table = audience(dsn, 3000)
    results_table = unique("res")
    sim.config("nrs360", rate=30)
    path = campaign(tmp_path, sim, table, results_table, rate=30, batch=100, chunk=128, in_flight=600, fetch=200)
    c = load_campaign(path, Overrides(run_id="pg-kill"))

    async def go() -> tuple[Engine, int]:
        engine = Engine(c, preparer=CampaignPreparer(c))
        task = asyncio.create_task(engine.run())
        kills = 0
        for at in (500, 1500):
            while engine.stats.done < at and not task.done():
                await asyncio.sleep(0.01)
            kills += await kill_ours(dsn)
        await task
        return engine, kills

    engine, kills = run(go())
    assert kills >= 3  # source and sink, twice
    assert not engine.interrupted and engine.stats.sent == 3000
    assert c.source.reconnects >= 1 and c.sinks[0].reconnects >= 1  # type: ignore[attr-defined]
    check_invariant(dsn, sim, table, results_table, "pg-kill")


def test_campaign_checks_template_variables_against_the_table(dsn: str, sim: Any, tmp_path: Path) -> None:
    table = audience(dsn, 20)
    path = campaign(tmp_path, sim, table, unique("res"))
    path.write_text(path.read_text().replace("{name|capitalize}", "{nombre|capitalize}"))
    with pytest.raises(ConfigError, match=r"unknown template variable 'nombre'.*columns: id, phone, name"):
        load_campaign(path, Overrides(run_id="x"))
    path.write_text(path.read_text().replace("{nombre|capitalize}", "{name|capitalize}")
                    .replace(f'table = "{table}"', 'table = "no_such_audience"', 1))
    with pytest.raises(ConfigError, match="table 'no_such_audience' does not exist"):
        load_campaign(path, Overrides(run_id="x"))
