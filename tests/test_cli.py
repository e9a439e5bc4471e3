"""The command line's conventions: --version, logging flags on every command, resume hints that
repeat the overrides, a second signal that still settles, config errors without a resume hint,
--print-schema without secrets, `segment -`, and --dry-run's samples and --rejects."""

from __future__ import annotations

import argparse
import io
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import orjson
import pytest
from blastkit import ROOT, audience, campaign, read_csv, results, run_cli

from dispatcher import logs
from dispatcher.cli import main


def test_version_is_the_package_version():
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.stdout.strip() == f"dispatcher {version}"


@pytest.mark.parametrize("command", ["segment", "simulate", "blast", "daemon"])
def test_every_command_takes_the_logging_flags(command, tmp_path):
    audience(tmp_path / "audience.csv", 3)
    toml = campaign(tmp_path, "http://127.0.0.1:9")
    head, tail = {"segment": (["segment", "hola"], []),
                  "simulate": (["simulate"], ["--help"]),  # flags before --help are parsed (and checked) first
                  "blast": (["blast", str(toml), "--dry-run"], []),
                  "daemon": (["daemon", "examples/daemon.toml", "--print-schema"], [])}[command]
    for flags in (["-v"], ["-vv"], ["--log-level", "debug"], ["--log-format", "json", "--log-level", "info"]):
        done = run_cli(*head, *flags, *tail)
        assert done.returncode == 0, (command, flags, done.stderr)
    bad = run_cli(*head, "--log-level", "loud", *tail)
    assert bad.returncode == 2 and "--log-level" in bad.stderr and "invalid choice" in bad.stderr


def test_json_log_format_is_one_object_per_line():
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup_logging("info", "json", stream=out)
        logging.getLogger("dispatcher.test").info("lane %s halted", "sms")
        logging.getLogger("dispatcher.test").debug("not shown at info")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("dispatcher.test").exception("failed")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(x) for x in lines)
    assert first["message"] == "lane sms halted" and first["level"] == "info" and first["logger"] == "dispatcher.test"
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


def test_log_level_flags():
    p = argparse.ArgumentParser()
    logs.add_arguments(p)
    assert logs.level_of(p.parse_args([])) == "warning"
    assert logs.level_of(p.parse_args([]), default="info") == "info"
    assert logs.level_of(p.parse_args(["-v"])) == "info"
    assert logs.level_of(p.parse_args(["-vv"])) == "debug"
    assert logs.level_of(p.parse_args(["-vv", "--log-level", "error"])) == "error"


def test_print_schema_needs_no_secrets():
    bare = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}  # no secret of any kind
    done = subprocess.run([sys.executable, "-m", "dispatcher", "daemon", "examples/daemon.toml", "--print-schema"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, env=bare)
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE" in done.stdout
    for version in ("outbox_events", "outbox_campaigns", "outbox_failures"):  # every schema version, not two
        assert version in done.stdout, version
    check = run_cli("daemon", "examples/daemon.toml", "--check", env={"DISPATCHER_DSN": ""})
    assert check.returncode == 2 and "DISPATCHER_DSN" in check.stderr  # a real start still needs them


def test_print_schema_still_checks_the_file(tmp_path):
    bad = tmp_path / "d.toml"
    bad.write_text('[daemon]\ntable = "Not A Name"\n')
    done = run_cli("daemon", str(bad), "--print-schema")
    assert done.returncode == 2 and "d.toml" in done.stderr and "table" in done.stderr


def test_segment_from_stdin_strips_one_trailing_newline():
    def chars(stdin: str) -> int:
        done = subprocess.run([sys.executable, "-m", "dispatcher", "segment", "-", "--json"], input=stdin,
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        return orjson.loads(done.stdout)["characters"]

    assert chars("hola") == 4
    assert chars("hola\n") == 4
    assert chars("hola\r\n") == 4
    assert chars("hola\n\n") == 5  # only one: a blank last line the author typed stays


# -- blast ----------------------------------------------------------------------------------------

def _wait_for(path: Path, n: int, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(results(path)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} results in {path} after {timeout} s")


def test_second_signal_settles_sinks_prints_summary_and_resume_repeats_overrides(sim, tmp_path):
    audience(tmp_path / "audience.csv", 200)
    sim.config("nrs360", latency_ms=1500)  # requests stay on the wire long enough to be abandoned
    toml = campaign(tmp_path, "http://127.0.0.1:9", provider={"batch_size": 1})
    state = tmp_path / "journals"
    overrides = ["--rate", "50", "--concurrency", "4", "--url", sim.url("nrs360"), "--on-doubt", "resend",
                 "--state-dir", str(state)]
    proc = subprocess.Popen([sys.executable, "-m", "dispatcher", "blast", str(toml), "--run-id", "two", "--quiet",
                             *overrides], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_file = tmp_path / "out" / "two.jsonl"
    _wait_for(out_file, 4, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    first = ""
    while "stopping" not in first:  # the first signal was handled (two at once would merge into one)
        line = proc.stderr.readline()
        assert line, "exited before announcing the stop"
        first += line
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Unclosed" not in stderr and "Traceback" not in stderr, stderr
    assert "abandoning" in stderr
    summary = orjson.loads(stdout.strip().splitlines()[-1])
    assert summary["interrupted"]
    assert summary["sent"] == len(results(out_file)) >= 4  # every settled result reached the sink
    assert summary["sent"] + summary["unsent"] == summary["read"]
    hint = shlex.split(summary["resume"])
    assert hint[:5] == ["dispatcher", "blast", str(toml), "--run-id", "two"]
    assert hint[5:] == overrides  # the overrides in force, in a form the shell takes back

    sim.config("nrs360", latency_ms=0)
    done = run_cli(*hint[1:], "--quiet")  # the hint, as printed, finishes the run
    assert done.returncode == 0, done.stderr
    final = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert final["in_doubt"] >= 1  # the abandoned requests: resent, and said so
    rows = results(out_file)
    assert sorted(r["seq"] for r in rows) == list(range(2, 202))
    dupes = sum(n - 1 for n in Counter(e["to"] for e in sim.ledger("nrs360")).values())
    assert dupes <= 4  # at most what was on the wire (concurrency 4, one recipient a request)


@pytest.mark.parametrize("case", ["sink_under_a_file", "state_dir_under_a_file", "unreachable_database"])
def test_errors_before_the_run_starts_print_no_resume_hint(sim, tmp_path, monkeypatch, capsys, case):
    audience(tmp_path / "audience.csv", 20)
    extra: list[str] = []
    sinks = None
    if case == "sink_under_a_file":
        sinks = '\n[[sinks]]\ntype = "jsonl"\npath = "audience.csv/out/{run_id}.jsonl"\n'
    elif case == "state_dir_under_a_file":
        extra = ["--state-dir", str(tmp_path / "audience.csv" / "state")]
    else:
        monkeypatch.setenv("BAD_DSN", "postgresql://nobody:hunter2@127.0.0.1:9/x")
        sinks = '\n[[sinks]]\ntype = "jsonl"\npath = "out/{run_id}.jsonl"\n\n[[sinks]]\ntype = "postgres"\ndsn_env = "BAD_DSN"\n'
    toml = campaign(tmp_path, sim.url("nrs360"), sinks=sinks)
    code = main(["blast", str(toml), "--quiet", "--run-id", "cfg", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Resume with" not in err
    assert "hunter2" not in err
    assert sim.stats("nrs360")["requests"] == 0


def test_dry_run_shows_samples_per_channel_and_writes_rejects(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 40, bad_every=10)  # 4 bad rows of three kinds
    toml = campaign(tmp_path, sim.url("nrs360"), template="Olá {name|capitalize}")
    for name, read in (("rejects.csv", read_csv), ("rejects.jsonl", results)):
        assert main(["blast", str(toml), "--dry-run", "--json", "--rejects", str(tmp_path / name)]) == 1
        report = orjson.loads(capsys.readouterr().out)
        rows = read(tmp_path / name)
        assert len(rows) == report["rejected"] == 4
        assert {r["code"] for r in rows} == {"bad_row", "invalid_number"}
        assert all(r["status"] == "rejected" and r["error"] for r in rows)
        samples = report["samples"]["sms"]
        assert len(samples) == 3
        assert samples[0]["text"] == "Olá Name1" and samples[0]["encoding"] == "UCS-2" and samples[0]["parts"] == 1
    assert main(["blast", str(toml), "--dry-run", "--rejects", str(tmp_path / "rejects.csv")]) == 1
    text = capsys.readouterr().out
    assert "samples of sms:" in text and '"Olá Name2"' in text and "(UCS-2, 1 part)" in text
    assert len(read_csv(tmp_path / "rejects.csv")) == 4  # written afresh, not appended
    assert sim.stats("nrs360")["requests"] == 0


def test_rejects_needs_dry_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["blast", str(tmp_path / "c.toml"), "--rejects", str(tmp_path / "r.csv")])
    assert e.value.code == 2 and "--rejects goes with --dry-run" in capsys.readouterr().err


def test_blast_logs_its_lifecycle_as_json_with_v(sim, tmp_path):
    audience(tmp_path / "audience.csv", 10)
    toml = campaign(tmp_path, sim.url("nrs360"))
    done = run_cli("blast", str(toml), "--run-id", "logs", "--quiet", "-v", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    events = [orjson.loads(line) for line in done.stderr.splitlines()]  # every stderr line is one JSON object
    assert [e["message"].split(":")[0] for e in events] == ["run logs", "run logs finished"]
    assert "10 sent" in events[1]["message"] and events[0]["logger"] == "dispatcher.blast"
    assert "demo-secret" not in done.stderr
    quiet = run_cli("blast", str(toml), "--run-id", "logs2", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""  # warnings only by default


def test_simulate_on_a_taken_port_is_one_line_and_exit_2():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "dispatcher", "simulate", "--only", "nrs360", "--base-port",
                               str(port)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "Traceback" not in done.stderr
