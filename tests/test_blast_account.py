"""A run's account a user can trust (issue 25): true unsent counts and states, one thread through
status, resume and retry, an unreachable provider deferred with its real cause, and runs / status /
results that count what the results file holds."""

from __future__ import annotations

import io
import shlex
import socket
from dataclasses import replace
from pathlib import Path

import orjson
from blastkit import audience, campaign, results, statuses
from test_progress import Clock, FakeEngine, FakeSource

from dispatcher.blast import account
from dispatcher.blast.progress import Progress
from dispatcher.cli import main
from dispatcher.engine import CIRCUIT_OPEN, HALTED, Stats
from dispatcher.sources.files import FileSource
from dispatcher.state import RunState


def blast(toml: Path, *extra: str) -> int:
    return main(["blast", str(toml), "--quiet", *extra])


def summary(capsys) -> dict:
    return orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_port_defers_every_record_and_a_resume_with_the_right_url_sends_them(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 5)
    port = closed_port()
    toml = campaign(tmp_path, f"http://127.0.0.1:{port}", provider={"max_attempts": 3})
    assert blast(toml, "--run-id", "c") == 3
    out = summary(capsys)
    assert (out["deferred"], out["failed"], out["sent"], out["unsent"], out["state"]) == (5, 0, 0, 5, "halted")
    assert out["halts"] == {"sms": ["unreachable", f"connection refused on 127.0.0.1:{port}"]}
    assert results(tmp_path / "out" / "c.jsonl") == []  # no record's fate: nothing written

    assert blast(toml, "--run-id", "c", "--url", sim.url("nrs360")) == 0
    out = summary(capsys)
    assert (out["sent"], out["failed"], out["unsent"], out["state"]) == (5, 0, 0, "finished")
    assert len(sim.ledger("nrs360")) == 5


def test_unsent_counts_every_record_without_a_result_read_or_not(tmp_path):
    audience(tmp_path / "big.csv", 20_000)
    source = FileSource(tmp_path / "big.csv")
    st = Stats(read=10_240, sent=700, failed=3, rejected=12)  # Ctrl-C: most of the file never read
    total = account.source_total(source, st)
    assert (total.records, total.exact) == (20_000, True)  # counted, not estimated
    assert account.unsent(total, st) == 20_000 - 700 - 3 - 12
    resumed = replace(st, skipped=715, read=19_285, sent=19_270, failed=0, rejected=15)
    assert account.unsent(account.source_total(source, resumed), resumed) == 0
    # a CSV whose quotes may hold line ends is not counted a line a record: the estimate stands, said so
    (tmp_path / "quoted.csv").write_text('id,phone,name\n1,+34600000001,"a\nb"\n')
    assert account.count_lines(tmp_path / "quoted.csv", csv=True) is None
    assert account.count_lines(tmp_path / "big.csv", csv=True) == 20_000


def test_the_live_view_shows_no_made_up_numbers():
    clock, engine = Clock(), FakeEngine()
    out = io.StringIO()
    p = Progress(FakeSource(10_000), out=out, clock=clock, interval=0)
    engine.stats.read = 2_000
    p(engine)  # the first frame: no rate is measured yet
    first = out.getvalue().splitlines()[0]
    assert "-- msg/s" in first and "ETA --:--" in first and " 0 msg/s" not in first
    assert "/ ~10,000 done" in first  # not read through: the total is an estimate
    assert " -- / 50 req/s" in out.getvalue().splitlines()[1] and "0.0 /" not in out.getvalue()
    clock.now += 1
    engine.stats.sent += 100
    for state in (HALTED, CIRCUIT_OPEN):  # nothing can be sent: no ETA, whatever the recent rate
        engine.lanes[0].state = state
        p(engine)
        assert p.view is not None and p.view.eta is None and p.view.blocked
        assert "ETA none: nothing can be sent now" in out.getvalue().splitlines()[-2]
    engine.stats.read = 10_000
    p(engine)
    assert "/ 10,000 done" in out.getvalue().splitlines()[-2]  # read through: a count


def test_retries_are_counted_as_requests_with_their_records(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 100)
    sim.config("nrs360", error_rate=1.0)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 100, "max_attempts": 2,
                                                            "circuit_failures": 1000})
    assert blast(toml, "--run-id", "r") == 1
    out = summary(capsys)
    assert (out["requests"], out["retries"], out["retried"], out["failed"]) == (2, 1, 100, 100)
    assert out["retry"] == f"dispatcher blast {toml} --retry-failed r"


def test_status_resumes_with_the_source_and_a_retry_reads_the_runs_own_source(sim, tmp_path, capsys):
    audience(tmp_path / "other.csv", 60)
    toml = campaign(tmp_path, sim.url("nrs360"), source="missing.csv",
                    provider={"batch_size": 10, "max_attempts": 1, "circuit_failures": 1000})
    sim.config("nrs360", error_rate=0.5)
    src = str(tmp_path / "other.csv")
    assert blast(toml, "--run-id", "h1", "--source", src, "--rate", "500") == 1
    first = results(tmp_path / "out" / "h1.jsonl")
    failed = {r["seq"] for r in first if r["status"] == "failed"}
    assert failed and len(first) == 60
    capsys.readouterr()

    assert main(["status", "h1", str(toml)]) == 0
    out = capsys.readouterr().out
    retry = next(x for x in out.splitlines() if x.startswith("  retry "))
    assert shlex.split(retry)[1:] == ["dispatcher", "blast", str(toml.resolve()), "--retry-failed", "h1",
                                      "--source", src, "--rate", "500"]

    sim.config("nrs360", error_rate=0.0)
    assert blast(toml, "--retry-failed", "h1") == 0  # no --source: the run's own
    retried = results(tmp_path / "out" / "h1-retry.jsonl")
    assert {r["seq"] for r in retried} == failed and statuses(retried) == {"sent": len(failed)}
    capsys.readouterr()

    assert main(["runs", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "h1 + 1 retry: 60 sent, 0 failed, 0 rejected" in out
    assert main(["results", "h1", str(toml), "--format", "jsonl"]) == 0
    final = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(final) == 60 and {r["status"] for r in final} == {"sent"}
    assert {r["seq"] for r in final if r["run_id"] == "h1-retry"} == failed


def test_a_resume_whose_failures_stand_exits_1_and_prints_the_retry(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 40)
    sim.config("nrs360", error_rate=1.0)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"max_attempts": 1, "circuit_failures": 1000})
    assert blast(toml, "--run-id", "f") == 1
    capsys.readouterr()
    sim.config("nrs360", error_rate=0.0)
    assert blast(toml, "--run-id", "f") == 1  # nothing left to send, but 40 records stand failed
    out = summary(capsys)
    assert out["skipped"] == 40 and out["retry"] == f"dispatcher blast {toml} --retry-failed f"


def test_runs_and_status_count_a_killed_attempt_from_the_results_file(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 50)
    toml = campaign(tmp_path, sim.url("nrs360"))
    assert blast(toml, "--run-id", "k") == 0
    capsys.readouterr()
    state = RunState(tmp_path / ".dispatcher", "k")
    m = state.manifest
    assert m is not None
    m["attempts"][-1]["counts"] = None  # as an attempt SIGKILLed before it wrote its counts leaves it
    (tmp_path / ".dispatcher" / "runs" / "k" / "run.json").write_bytes(orjson.dumps(m))
    assert main(["runs", str(toml)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("k "))
    assert " 50 " in line and "interrupted" in line
    assert main(["status", "k", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "total     sent 50, failed 0, rejected 0 (in the results file)" in out and "state     interrupted" in out


def test_version_flag(capsys):
    try:
        main(["-V"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.startswith("dispatcher ")


def test_progress_is_json_lines_with_log_format_json(sim, tmp_path):
    from blastkit import run_cli
    audience(tmp_path / "audience.csv", 30)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 4, "batch_size": 5, "concurrency": 1})
    done = run_cli("blast", str(toml), "--run-id", "j", "--log-format", "json")  # about 1.5 s: readings
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(x) for x in done.stderr.splitlines()]  # every stderr line is JSON
    progress = [x for x in lines if x["message"] == "progress"]
    assert progress and {"done", "total", "sent", "failed", "eta_s", "lanes"} <= set(progress[0])
    assert progress[0]["total"] == 30 and progress[0]["sent"] <= 30
