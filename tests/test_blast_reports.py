"""Delivery reports heard by a blast (issue 25): `[reports] listen`, the providers told to report there,
matched by message id with the provider's own parsing, kept beside the results, counted in the summary,
`runs` and `status`, and picked up late by `dispatcher reports RUN --listen`."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
from blastkit import ROOT, audience, campaign, results

from dispatcher.cli import main


def blast(toml, *extra: str) -> int:
    return main(["blast", str(toml), "--quiet", *extra])


def summary(capsys) -> dict:
    return orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_blast_hears_the_360nrs_reports_of_everything_it_sent(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 300, bad_every=50)
    toml = campaign(tmp_path, sim.url("nrs360"), extra='[reports]\nlisten = "127.0.0.1:0"\nlinger = 5\n',
                    template="Hi {name|capitalize}, you owe {amount|formatDotComma} EUR. " * 3)  # 2-3 parts each
    assert blast(toml, "--run-id", "d") == 1  # some rows are rejected
    out = summary(capsys)
    assert out["sent"] > 0 and out["delivered"] + out["undelivered"] == out["sent"], out
    assert out["reports_pending"] == 0
    kept = [orjson.loads(x) for x in (tmp_path / "out" / "d.reports.jsonl").read_bytes().splitlines()]
    sent = {r["message_id"] for r in results(tmp_path / "out" / "d.jsonl") if r["status"] == "sent"}
    assert {r["message_id"] for r in kept} == sent and len(kept) >= len(sent)  # a report a part
    assert all(r["provider"] == "sms" and r["status"] == "delivered" for r in kept)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_late_reports_are_picked_up_by_dispatcher_reports_and_shown_by_runs_and_status(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 8)
    port = free_port()
    toml = campaign(tmp_path, sim.url("nrs360"), extra=f'[reports]\nlisten = "127.0.0.1:{port}"\nlinger = 0\n')
    sim.config("nrs360", dlr_delay_ms=2000)  # the reports come after the run ended (linger 0)
    assert blast(toml, "--run-id", "late") == 0
    out = summary(capsys)
    assert (out["sent"], out["delivered"], out["reports_pending"]) == (8, 0, 8), out

    assert main(["status", "late", str(toml)]) == 0
    said = capsys.readouterr().out
    assert "reports   delivered 0, undelivered 0, no final report yet 8 (of the sent records of sms;" in said
    assert f"dispatcher reports late {toml.resolve()} --listen 127.0.0.1:{port}" in said

    assert main(["reports", "late", str(toml), "--listen", f"127.0.0.1:{port}", "--linger", "30", "--quiet"]) == 0
    late = summary(capsys)
    assert (late["delivered"], late["undelivered"], late["reports_pending"], late["heard"]) == (8, 0, 0, 8), late

    assert main(["runs", str(toml)]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("late "))
    assert row.split()[6:8] == ["0", "8"], row  # failed, rejected ... delivered
    assert main(["status", "late", str(toml)]) == 0
    assert "reports   delivered 8, undelivered 0, no final report yet 0" in capsys.readouterr().out


def test_reports_need_the_runs_secret(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 3)
    port = free_port()
    toml = campaign(tmp_path, sim.url("nrs360"), extra=f'[reports]\nlisten = "127.0.0.1:{port}"\nlinger = 0\n')
    sim.config("nrs360", dlr_delay_ms=5000)  # they come once `dispatcher reports` listens
    assert blast(toml, "--run-id", "s") == 0
    assert summary(capsys)["reports_pending"] == 3
    secret = (tmp_path / ".dispatcher" / "runs" / "s" / "report-secret").read_text().strip()
    assert (tmp_path / ".dispatcher" / "runs" / "s" / "report-secret").stat().st_mode & 0o077 == 0
    for path in ("out/s.jsonl", "out/s.reports.jsonl", ".dispatcher/runs/s/run.json"):
        assert secret not in (tmp_path / path).read_text(), path
    late = subprocess.Popen([sys.executable, "-m", "dispatcher", "reports", "s", str(toml), "--listen",
                             f"127.0.0.1:{port}", "--linger", "30", "--quiet"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        codes = []
        deadline = time.monotonic() + 30
        while not codes and time.monotonic() < deadline and late.poll() is None:  # until it listens
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/dlr/sms/wrong-secret-000000?id=x&status=DELIVRD",
                                       timeout=2)
            except urllib.error.HTTPError as e:
                codes.append(e.code)
            except OSError:
                time.sleep(0.05)
        assert codes == [403]
        out, err = late.communicate(timeout=60)
    finally:
        late.kill()
    assert late.returncode == 0, err
    assert orjson.loads(out) == {"run_id": "s", "delivered": 3, "undelivered": 0, "reports_pending": 0, "heard": 3}
    assert main(["status", "s", str(toml)]) == 0 and "reports   delivered 3," in capsys.readouterr().out


def test_kaleyra_is_told_the_report_url_in_each_request(sim, tmp_path, capsys):
    with open(tmp_path / "audience.csv", "w") as f:
        f.write("id,phone,name\n" + "".join(f"r{i},+91987650{i:04d},n{i}\n" for i in range(30)))
    (tmp_path / "campaign.toml").write_text(f'''
[source]
path = "audience.csv"
recipient = "phone"

[message]
sender = "KLRHXA"
template = "Hello {{name}}"
options = {{type = "MKT"}}

[providers.sms]
type = "kaleyra"
url = "{sim.url('kaleyra')}"
sid_env = "KALEYRA_SID"
api_key_env = "KALEYRA_API_KEY"
rate = 50

[[sinks]]
type = "jsonl"
path = "out/{{run_id}}.jsonl"

[reports]
listen = "127.0.0.1:0"
linger = 5
''')
    assert blast(tmp_path / "campaign.toml", "--run-id", "k") == 0
    out = summary(capsys)
    assert out["sent"] == 30 and (out["delivered"], out["undelivered"], out["reports_pending"]) == (30, 0, 0), out


def test_with_a_postgresql_sink_the_reports_go_to_its_table(sim, tmp_path, capsys, postgres_dsn, monkeypatch):
    import asyncio
    import os

    import asyncpg
    monkeypatch.setenv("REPORTS_TEST_DSN", postgres_dsn)
    table = f"blast_reports_{os.getpid()}"
    audience(tmp_path / "audience.csv", 120)
    toml = campaign(tmp_path, sim.url("nrs360"), extra='[reports]\nlisten = "127.0.0.1:0"\nlinger = 5\n',
                    sinks=f'[[sinks]]\ntype = "postgres"\ndsn_env = "REPORTS_TEST_DSN"\ntable = "{table}"\n')
    assert blast(toml, "--run-id", "pg") == 0
    out = summary(capsys)
    assert (out["sent"], out["delivered"], out["undelivered"], out["reports_pending"]) == (120, 120, 0, 0), out
    # what the table holds is what a later `dispatcher reports` counts from
    assert main(["reports", "pg", str(toml), "--listen", "127.0.0.1:0", "--linger", "0", "--quiet"]) == 0
    assert summary(capsys) == {"run_id": "pg", "delivered": 120, "undelivered": 0, "reports_pending": 0, "heard": 0}

    async def rows() -> list:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            return await conn.fetch(f"SELECT r.message_id, r.status, s.seq FROM {table}_reports r "
                                    f"JOIN {table} s USING (run_id, message_id) WHERE run_id = 'pg'")
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table}_reports, {table}")
            await conn.close()
    got = asyncio.run(rows())
    assert len({r["seq"] for r in got}) == 120 and {r["status"] for r in got} == {"delivered"}


def test_a_run_shared_by_workers_hears_its_reports_in_the_owner(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 2000)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 100, "rate": 100},
                    extra='[engine]\nworkers = 2\n\n[reports]\nlisten = "127.0.0.1:0"\nlinger = 10\n')
    assert blast(toml, "--run-id", "w") == 0
    out = summary(capsys)
    assert (out["sent"], out["delivered"], out["undelivered"], out["reports_pending"]) == (2000, 2000, 0, 0), out
    assert main(["status", "w", str(toml)]) == 0
    assert "reports   delivered 2,000, undelivered 0, no final report yet 0" in capsys.readouterr().out


def test_the_linger_waits_for_reports_without_counting_as_sending_time(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 5)
    toml = campaign(tmp_path, sim.url("nrs360"), extra='[reports]\nlisten = "127.0.0.1:0"\nlinger = 2\n')
    sim.config("nrs360", dlr_delay_ms=3000)  # nothing reported within the linger
    t0 = time.monotonic()
    assert blast(toml, "--run-id", "slow") == 0
    waited = time.monotonic() - t0
    out = summary(capsys)
    assert (out["sent"], out["delivered"], out["reports_pending"]) == (5, 0, 5)
    assert waited >= 2 and out["elapsed_s"] < waited - 1.5, (waited, out["elapsed_s"])
    deadline = time.monotonic() + 60  # the simulator's report senders free again for the tests after this one
    while time.monotonic() < deadline:
        st = sim.stats("nrs360")
        if st["dlr_sent"] + st["dlr_failed"] >= 5:
            break
        time.sleep(0.2)


def test_ctrl_c_ends_the_linger_at_once_and_says_what_is_pending(sim, tmp_path):
    import signal
    audience(tmp_path / "audience.csv", 5)
    toml = campaign(tmp_path, sim.url("nrs360"), extra='[reports]\nlisten = "127.0.0.1:0"\nlinger = 60\n')
    sim.config("nrs360", dlr_delay_ms=3000)
    proc = subprocess.Popen([sys.executable, "-m", "dispatcher", "blast", str(toml), "--run-id", "c", "--json"],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(200):  # the lines it writes on stderr, until it says it listens (bounded)
            line = proc.stderr.readline()
            if not line or line.startswith("listening for delivery reports"):
                break
        assert line.startswith("listening for delivery reports for up to 60 s"), line
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0 and took < 3, (proc.returncode, took)
    got = orjson.loads(out.strip().splitlines()[-1])
    assert (got["sent"], got["delivered"], got["reports_pending"]) == (5, 0, 5)
    deadline = time.monotonic() + 60  # the simulator's report senders free again for the tests after this one
    while time.monotonic() < deadline and sum(sim.stats("nrs360")[k] for k in ("dlr_sent", "dlr_failed")) < 5:
        time.sleep(0.2)
