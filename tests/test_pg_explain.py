"""pg.explain names where a database connection failed to go, like blast/reach.py does for a provider
("connection refused on 127.0.0.1:5999"), and never the password: in a blast and in the daemon (issue 25)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
from blastkit import audience, campaign

from dispatcher import pg
from dispatcher.cli import main

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr%40t-pw"  # URL-encoded "s3cr@t-pw": neither form may show


def closed_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def failure(dsn: str) -> BaseException:
    async def connect() -> BaseException:
        try:
            await pg.connect(dsn, timeout=5)
        except Exception as e:
            return e
        raise AssertionError(f"{dsn} connected")
    return asyncio.run(connect())


def no_secret(text: str) -> None:
    assert SECRET not in text and "s3cr@t-pw" not in text and "s3cr" not in text, text


def test_a_refused_connection_names_the_address_it_tried():
    port = closed_port()
    for host, shown in (("127.0.0.1", "127.0.0.1"), ("localhost", None), ("[::1]", "[::1]")):
        dsn = f"postgresql://app:{SECRET}@{host}:{port}/db"
        e = failure(dsn)
        said = pg.explain(e, dsn)
        if shown is None:  # a name: the address it resolved to and tried
            assert said.startswith("connection refused on ") and said.split()[3].endswith(f":{port}"), said
        else:
            assert said.startswith(f"connection refused on {shown}:{port} "), said
        no_secret(said)


def test_without_the_sockets_address_the_dsns_is_named():
    bare = ConnectionRefusedError(111, "Connection refused")  # no "Connect call failed (...)" in it
    assert pg.explain(bare, f"postgresql://app:{SECRET}@db.example.org/x").startswith(
        "connection refused on db.example.org:5432 ")  # the default port
    assert pg.explain(bare, f"postgresql://app:{SECRET}@db.example.org:6432/x").startswith(
        "connection refused on db.example.org:6432 ")
    assert pg.address(bare, "postgresql://app@[2001:db8::1]:6000/x") == "[2001:db8::1]:6000"
    assert pg.address(bare, "not a url at all :::") == "the database"


def test_an_unknown_host_and_a_missing_socket_are_named():
    dsn = f"postgresql://app:{SECRET}@no-such-host.invalid:5999/db"
    said = pg.explain(failure(dsn), dsn)
    assert said.startswith("unknown host no-such-host.invalid ("), said
    no_secret(said)
    dsn = f"postgresql://app:{SECRET}@/db?host=/nonexistent/run&port=5999"
    said = pg.explain(failure(dsn), dsn)
    assert "/nonexistent/run/.s.PGSQL.5999" in said, said
    no_secret(said)


def test_the_servers_own_errors_are_kept(postgres_dsn):
    async def wrong_db() -> BaseException:
        try:
            await asyncpg.connect(postgres_dsn.rsplit("/", 1)[0] + "/no_such_database_here")
        except Exception as e:
            return e
        raise AssertionError("connected")
    said = pg.explain(asyncio.run(wrong_db()), postgres_dsn)
    assert "no_such_database_here" in said and "does not exist" in said, said


def test_a_blast_whose_sink_database_is_down_says_where_in_one_line(sim, tmp_path, capsys, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("EXPLAIN_TEST_DSN", f"postgresql://app:{SECRET}@127.0.0.1:{port}/db")
    audience(tmp_path / "audience.csv", 5)
    toml = campaign(tmp_path, sim.url("nrs360"),
                    sinks='[[sinks]]\ntype = "postgres"\ndsn_env = "EXPLAIN_TEST_DSN"\ntable = "t"\n')
    assert main(["blast", str(toml), "--run-id", "down", "--quiet"]) == 2
    out, err = capsys.readouterr()
    said = [x for x in err.splitlines() if x.strip()]
    assert len(said) == 1 and f"connection refused on 127.0.0.1:{port}" in said[0], err
    assert f"postgres:t: cannot connect to app@127.0.0.1:{port}/db" in said[0], err  # which sink, which database
    no_secret(out + err)


def test_the_daemon_whose_database_is_down_says_where_in_one_line(tmp_path):
    port = closed_port()
    path = tmp_path / "daemon.toml"
    path.write_text('[daemon]\ndsn_env = "DISPATCHER_DSN"\nregion = "ES"\n\n[http]\nlisten = "127.0.0.1:0"\n\n'
                    '[providers.sms]\ntype = "nrs360"\nurl = "http://127.0.0.1:1"\nusername_env = "NRS360_USER"\n'
                    'password_env = "NRS360_PASSWORD"\n\n[defaults]\nsender = "ACME"\n')
    env = {**os.environ, "DISPATCHER_DSN": f"postgresql://app:{SECRET}@127.0.0.1:{port}/db",
           "NRS360_USER": "u", "NRS360_PASSWORD": "p"}
    for args in ((), ("--init-db",)):
        done = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(path), *args], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=60)
        assert done.returncode == 2, done.stderr
        said = [x for x in done.stderr.splitlines() if x.strip()]
        assert len(said) == 1 and f"database: connection refused on 127.0.0.1:{port}" in said[0], done.stderr
        no_secret(done.stdout + done.stderr)
