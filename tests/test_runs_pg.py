"""`dispatcher runs` and `dispatcher status` of a run whose results are in PostgreSQL (issue 25): its totals
from the results table (a killed attempt counts), its delivery from `<table>_reports` matched to its sent
rows by the file case's rule (blast/delivery.py), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import asyncpg
import orjson
from blastkit import audience, campaign

from dispatcher.blast.heard import Tally, count
from dispatcher.cli import main
from dispatcher.state import RunState


def blast(toml, *extra: str) -> int:
    return main(["blast", str(toml), "--quiet", *extra])


def summary(capsys) -> dict:
    return orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])


async def _sql(dsn: str, *statements: tuple) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        out = []
        for sql, *args in statements:
            out.append(await conn.fetch(sql, *args))
        return out
    finally:
        await conn.close()


def sql(dsn: str, *statements: tuple) -> list:
    return asyncio.run(_sql(dsn, *statements))


def test_runs_and_status_read_a_postgresql_runs_totals_and_delivery(sim, tmp_path, capsys, postgres_dsn, monkeypatch):
    monkeypatch.setenv("RUNS_PG_DSN", postgres_dsn)
    table = f"runs_pg_{os.getpid()}"
    audience(tmp_path / "audience.csv", 60)
    toml = campaign(tmp_path, sim.url("nrs360"), extra='[reports]\nlisten = "127.0.0.1:0"\nlinger = 5\n',
                    sinks=f'[[sinks]]\ntype = "postgres"\ndsn_env = "RUNS_PG_DSN"\ntable = "{table}"\n')
    try:
        assert blast(toml, "--run-id", "p") == 0
        out = summary(capsys)
        assert (out["sent"], out["delivered"], out["reports_pending"]) == (60, 60, 0), out
        [sent] = sql(postgres_dsn, (f"SELECT seq, provider, message_id FROM {table} WHERE run_id = 'p' ORDER BY seq",))
        assert len(sent) == 60
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        rows = [("p", r["provider"], r["message_id"], status, rank, later) for r, status, rank in
                [*((r, "undelivered", 3) for r in sent[:4]),   # a later final report: undelivered now
                 *((r, "accepted", 1) for r in sent[4:10]),   # a lower rank, later: changes nothing
                 *((r, "read", 4) for r in sent[10:12])]]     # an engagement: delivered
        rows.append(("p", "sms", "not-one-of-ours", "undelivered", 3, later))  # a stranger: not counted
        sql(postgres_dsn, (f"INSERT INTO {table}_reports (run_id, provider, message_id, status, rank, event_at, "
                           "payload) SELECT r.*, '{}'::jsonb FROM unnest($1::text[], $2::text[], $3::text[], "
                           "$4::text[], $5::smallint[], $6::timestamptz[]) r", *map(list, zip(*rows, strict=True))))

        state = RunState(tmp_path / ".dispatcher", "p")
        m = state.manifest
        assert m is not None and m["origin"]["results"] == {"type": "postgres", "table": table,
                                                            "dsn_env": "RUNS_PG_DSN"}
        assert postgres_dsn not in (tmp_path / ".dispatcher" / "runs" / "p" / "run.json").read_text()
        m["attempts"][-1]["counts"] = None  # as an attempt SIGKILLed before it wrote its counts leaves it
        (tmp_path / ".dispatcher" / "runs" / "p" / "run.json").write_bytes(orjson.dumps(m))

        assert main(["runs", str(toml)]) == 0
        row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("p "))
        assert row.split()[4:8] == ["60", "0", "0", "56"], row  # sent, failed, rejected, delivered
        assert main(["status", "p", str(toml)]) == 0
        said = capsys.readouterr().out
        assert f"total     sent 60, failed 0, rejected 0 (in the PostgreSQL table {table})" in said, said
        assert "reports   delivered 56, undelivered 4, no final report yet 0 (of the sent records of sms;" in said

        # the same rule as the file case: the Python tally over the same rows says the same
        [kept] = sql(postgres_dsn, (f"SELECT provider, message_id, status, rank, event_at FROM {table}_reports "
                                    "WHERE run_id = 'p' ORDER BY id",))
        tally = Tally()
        for r in kept:
            tally.add(r[0], r[1], r[2], r[3], r[4].isoformat() if r[4] else "")
        assert count([(r["provider"], r["message_id"]) for r in sent], tally, ["sms"]) == \
            {"delivered": 56, "undelivered": 4, "reports_pending": 0}

        monkeypatch.delenv("RUNS_PG_DSN")  # the numbers cannot be read: said, never made up
        assert main(["status", "p", str(toml)]) == 0
        said = capsys.readouterr().out
        assert "reports   not read: environment variable RUNS_PG_DSN (the sink's dsn_env) is not set" in said
        assert f"(as the attempts counted them: the PostgreSQL table {table} was not read:" in said
        assert main(["runs", str(toml)]) == 0
        row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("p "))
        assert row.split()[4:8] == ["0", "0", "0", "?"], row
    finally:
        sql(postgres_dsn, (f"DROP TABLE IF EXISTS {table}_reports, {table}",))


def test_status_of_a_postgresql_run_without_reports_counts_its_table(sim, tmp_path, capsys, postgres_dsn,
                                                                      monkeypatch):
    monkeypatch.setenv("RUNS_PG_DSN", postgres_dsn)
    table = f"runs_pg_plain_{os.getpid()}"
    audience(tmp_path / "audience.csv", 30, bad_every=10)
    toml = campaign(tmp_path, sim.url("nrs360"),
                    sinks=f'[[sinks]]\ntype = "postgres"\ndsn_env = "RUNS_PG_DSN"\ntable = "{table}"\n')
    try:
        assert blast(toml, "--run-id", "q") == 1  # 3 rejected
        capsys.readouterr()
        assert main(["status", "q", str(toml)]) == 0
        said = capsys.readouterr().out
        assert f"total     sent 27, failed 0, rejected 3 (in the PostgreSQL table {table})" in said, said
        assert "reports " not in said
        assert main(["runs", str(toml)]) == 0
        row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("q "))
        assert row.split()[4:8] == ["27", "0", "3", "-"], row
    finally:
        sql(postgres_dsn, (f"DROP TABLE IF EXISTS {table}",))


def test_a_postgresql_run_and_its_retry_roll_up_and_give_each_records_final_outcome(sim, tmp_path, capsys,
                                                                                    postgres_dsn, monkeypatch):
    monkeypatch.setenv("RUNS_PG_DSN", postgres_dsn)
    table = f"runs_pg_retry_{os.getpid()}"
    audience(tmp_path / "audience.csv", 60)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 10, "max_attempts": 1,
                                                           "circuit_failures": 1000},
                    sinks=f'[[sinks]]\ntype = "postgres"\ndsn_env = "RUNS_PG_DSN"\ntable = "{table}"\n')
    try:
        sim.config("nrs360", error_rate=0.5)
        assert blast(toml, "--run-id", "h1") == 1
        failed = summary(capsys)["failed"]
        assert 0 < failed < 60
        sim.config("nrs360", error_rate=0.0)
        assert blast(toml, "--retry-failed", "h1") == 0
        assert summary(capsys)["sent"] == failed

        assert main(["runs", str(toml)]) == 0
        assert "h1 + 1 retry: 60 sent, 0 failed, 0 rejected" in capsys.readouterr().out
        assert main(["status", "h1", str(toml)]) == 0
        assert "  with 1 retry (h1-retry): sent 60, failed 0, rejected 0" in capsys.readouterr().out
        assert main(["results", "h1", str(toml), "--format", "jsonl"]) == 0
        final = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [r["seq"] for r in final] == sorted(r["seq"] for r in final) and len(final) == 60
        assert {r["status"] for r in final} == {"sent"}
        assert sum(r["run_id"] == "h1-retry" for r in final) == failed
        assert main(["results", "h1", str(toml), "--format", "csv"]) == 0
        rows = capsys.readouterr().out.splitlines()
        assert rows[0] == "seq,status,run_id" and len(rows) == 61

        monkeypatch.setenv("RUNS_PG_DSN", postgres_dsn.rsplit("/", 1)[0] + "/no_such_database_here")
        assert main(["results", "h1", str(toml)]) == 2  # said in one line, not a traceback
        err = capsys.readouterr().err
        assert err.startswith(f"dispatcher: postgres:{table}: ") and "no_such_database_here" in err, err
    finally:
        sql(postgres_dsn, (f"DROP TABLE IF EXISTS {table}",))
