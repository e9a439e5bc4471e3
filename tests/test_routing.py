"""Routing records between providers, and failover while a provider's circuit is open."""

from __future__ import annotations

import socket
from collections import Counter

import orjson
from blastkit import results

from dispatcher.cli import main

NRS = 'type = "nrs360"\nusername_env = "NRS360_USER"\npassword_env = "NRS360_PASSWORD"\n'


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket closes


def write(tmp, body: str, rows: list[str]) -> str:
    (tmp / "a.csv").write_text("phone,name,route\n" + "\n".join(rows) + "\n")
    toml = tmp / "c.toml"
    toml.write_text(f"""
[source]
path = "a.csv"

[message]
sender = "ACME"
region = "ES"
template = "Hi {{name}}"

[[sinks]]
type = "jsonl"
path = "out/{{run_id}}.jsonl"
{body}
""")
    return str(toml)


def test_route_by_prefix(sim, tmp_path):
    url = sim.url("nrs360")
    rows = [f"+3460000{i:04d},n{i},x" for i in range(30)] + [f"+3361234{i:04d},n{i},x" for i in range(20)]
    toml = write(tmp_path, f"""
[providers.spain]
{NRS}url = "{url}"
[providers.france]
{NRS}url = "{url}"
[routing]
by = "prefix"
prefixes = {{ "+34" = "spain", "+33" = "france" }}
""", rows)
    assert main(["blast", toml, "--quiet", "--run-id", "p"]) == 0
    out = results(tmp_path / "out" / "p.jsonl")
    assert Counter(r["provider"] for r in out) == {"spain": 30, "france": 20}
    assert all(r["to"].startswith("+34") == (r["provider"] == "spain") for r in out)
    assert len(sim.ledger("nrs360")) == 50


def test_route_by_column_with_unroutable_rows_rejected(sim, tmp_path):
    url = sim.url("nrs360")
    rows = [f"+3460000{i:04d},n{i},{'a' if i % 2 else 'b'}" for i in range(20)] + ["+34600009999,z,nowhere"]
    toml = write(tmp_path, f"""
[providers.a]
{NRS}url = "{url}"
[providers.b]
{NRS}url = "{url}"
[routing]
by = "column"
column = "route"
""", rows)
    assert main(["blast", toml, "--quiet", "--run-id", "c"]) == 1
    out = results(tmp_path / "out" / "c.jsonl")
    assert Counter((r["provider"], r["status"]) for r in out) == {("a", "sent"): 10, ("b", "sent"): 10,
                                                                   ("", "rejected"): 1}
    assert [r["code"] for r in out if r["status"] == "rejected"] == ["no_route"]


def test_failover_while_the_first_provider_is_down(sim, tmp_path):
    """The primary refuses connections: its circuit opens and the standby sends; nothing is lost,
    nothing is sent twice, and every result names the provider that sent it."""
    rows = [f"+3460000{i:04d},n{i},x" for i in range(200)]
    toml = write(tmp_path, f"""
[providers.primary]
{NRS}url = "http://127.0.0.1:{_closed_port()}"
failover = "standby"
batch_size = 10
backoff_base = 0.01
backoff_max = 0.05
circuit_failures = 3
circuit_cooldown = 5
[providers.standby]
{NRS}url = "{sim.url('nrs360')}"
batch_size = 10
""", rows)
    assert main(["blast", toml, "--quiet", "--run-id", "f"]) == 0
    out = results(tmp_path / "out" / "f.jsonl")
    assert len(out) == 200 and {r["status"] for r in out} == {"sent"}
    assert {r["provider"] for r in out} == {"standby"}
    assert all(r["meta"]["failover_from"] == "primary" for r in out)
    assert Counter(Counter(e["to"] for e in sim.ledger("nrs360")).values()) == {1: 200}


def test_failover_must_name_a_provider_of_the_same_channel(sim, tmp_path, capsys):
    toml = write(tmp_path, f"""
[providers.primary]
{NRS}url = "{sim.url('nrs360')}"
failover = "ghost"
""", ["+34600000001,a,x"])
    assert main(["blast", toml, "--quiet", "--run-id", "g"]) == 2
    err = capsys.readouterr().err
    assert "c.toml:" in err and "providers.primary.failover" in err and "ghost" in err
    assert sim.stats("nrs360")["requests"] == 0


def test_dead_provider_without_failover_pauses_then_gives_up(sim, tmp_path, capsys):
    rows = [f"+3460000{i:04d},n{i},x" for i in range(30)]
    toml = write(tmp_path, f"""
[providers.only]
{NRS}url = "http://127.0.0.1:{_closed_port()}"
batch_size = 10
backoff_base = 0.01
backoff_max = 0.02
max_attempts = 100
circuit_failures = 2
circuit_cooldown = 0.2
give_up_after = 1
""", rows)
    assert main(["blast", toml, "--quiet", "--run-id", "d"]) == 3  # deferred, not failed: a resume sends them
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results(tmp_path / "out" / "d.jsonl") == []
    assert summary["deferred"] == 30 and summary["halts"]["only"][0] == "unreachable"
    assert summary["requests"] < 3 * 100  # the circuit paused sending instead of burning every attempt
