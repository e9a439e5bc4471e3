"""A record's life across runs, end to end through the 360nrs simulator: retrying failed records,
refusing to resume something else, and the bad input of these commands (exit 2, nothing sent)."""

from __future__ import annotations

from collections import Counter

import orjson
from blastkit import audience, campaign, results, statuses

from dispatcher.cli import main


def blast(toml, *extra: str) -> int:
    return main(["blast", str(toml), "--quiet", *extra])


def summary(capsys) -> dict:
    return orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_retry_failed_sends_exactly_the_failed_records_once(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 600)
    sim.config("nrs360", error_rate=0.3)  # 5xx on 30% of requests; one attempt each: they fail
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 20, "max_attempts": 1,
                                                            "circuit_failures": 1000})
    assert blast(toml, "--run-id", "first") == 1
    first = results(tmp_path / "out" / "first.jsonl")
    failed = {r["seq"] for r in first if r["status"] == "failed"}
    assert failed and len(first) == 600
    sent_before = Counter(e["to"] for e in sim.ledger("nrs360"))
    capsys.readouterr()

    sim.config("nrs360", error_rate=0.0)
    assert blast(toml, "--retry-failed", "first") == 0
    out = summary(capsys)
    assert out["run_id"] == "first-retry"
    retried = results(tmp_path / "out" / "first-retry.jsonl")
    assert {r["seq"] for r in retried} == failed and statuses(retried) == {"sent": len(failed)}
    per_number = Counter(e["to"] for e in sim.ledger("nrs360"))
    assert len(per_number) == 600 and max(per_number.values()) == 1  # every recipient exactly once
    assert sum(per_number.values()) - sum(sent_before.values()) == len(failed)

    # the retry run has nothing failed of its own: retrying it is refused, nothing sent
    assert blast(toml, "--retry-failed", "first-retry") == 2
    assert "no failed records" in capsys.readouterr().err
    assert len(sim.ledger("nrs360")) == 600


def test_retry_failed_of_an_unknown_run_is_refused(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 10)
    toml = campaign(tmp_path, sim.url("nrs360"))
    assert blast(toml, "--retry-failed", "nope") == 2
    err = capsys.readouterr().err
    assert "unknown run id 'nope'" in err and len(err.strip().splitlines()) == 1
    assert sim.ledger("nrs360") == []


def test_resume_with_another_source_is_refused_before_sending(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 100)
    audience(tmp_path / "b.csv", 100, start=5000)
    toml = campaign(tmp_path, sim.url("nrs360"))
    assert blast(toml, "--run-id", "spring") == 0
    capsys.readouterr()
    assert blast(toml, "--run-id", "spring", "--source", str(tmp_path / "b.csv")) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to resume" in err and "b.csv" in err and len(err.splitlines()) == 1
    assert len(sim.ledger("nrs360")) == 100
    # the rare legitimate case: say so explicitly
    assert blast(toml, "--run-id", "spring", "--source", str(tmp_path / "b.csv"), "--allow-changed") == 0
    assert len(sim.ledger("nrs360")) == 100 + 0  # same line numbers, already done: nothing new is sent


def test_resume_with_a_changed_message_is_refused(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 50)
    toml = campaign(tmp_path, sim.url("nrs360"))
    assert blast(toml, "--run-id", "m") == 0
    changed = campaign(tmp_path, sim.url("nrs360"), template="Other text {name}")
    capsys.readouterr()
    assert blast(changed, "--run-id", "m") == 2
    assert "other messages or providers" in capsys.readouterr().err
    assert len(sim.ledger("nrs360")) == 50


def test_bad_rate_and_concurrency_are_refused(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 10)
    toml = campaign(tmp_path, sim.url("nrs360"))
    for flags in (["--rate", "0"], ["--rate", "-5"], ["--concurrency", "0"], ["--rate", "fast"]):
        try:
            code = blast(toml, "--run-id", "x", *flags)
        except SystemExit as e:  # argparse's own exit for a bad value
            code = e.code
        assert code == 2, flags
        assert "--" + flags[0].lstrip("-") in capsys.readouterr().err
    assert sim.ledger("nrs360") == []


def test_runs_and_status_tell_what_is_left_and_add_up_attempts(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 200)
    sim.config("nrs360", credits=50)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 10, "concurrency": 1})
    assert blast(toml, "--run-id", "autumn") == 3
    capsys.readouterr()
    assert main(["runs", str(toml)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("autumn"))
    assert "resumable: 150 deferred" in line and "111" in line

    sim.config("nrs360", credits=-1)
    assert blast(toml, "--run-id", "autumn") == 0
    capsys.readouterr()
    assert main(["status", "autumn", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "attempt 1" in out and "attempt 2" in out and "total     sent 200, failed 0, rejected 0" in out
    assert "state     finished" in out and "audience.csv" in out
    assert main(["status", "nope", str(toml)]) == 2
