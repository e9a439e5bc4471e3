"""`--limit N` (issue 25): a test send to the first N sendable records of the source, as a run of its own."""

from __future__ import annotations

import orjson
from blastkit import audience, campaign, results, statuses

from dispatcher.cli import main
from dispatcher.state import RunState, run_ids


def blast(toml, *extra: str) -> int:
    return main(["blast", str(toml), "--quiet", *extra])


def summary(capsys) -> dict:
    return orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_limit_sends_the_first_n_sendable_records_as_a_run_of_its_own(sim, tmp_path, capsys):
    expected = audience(tmp_path / "audience.csv", 60, bad_every=4)  # rows 4, 8, 12... are rejected
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 7})
    sendable = [line for line, status in sorted(expected.items()) if status == "sent"]
    assert blast(toml, "--limit", "10") == 1  # the rejected rows before the 10th sendable one count
    out = summary(capsys)
    run_id = out["run_id"]
    assert run_id.startswith("campaign-limit10-") and run_ids(tmp_path / ".dispatcher") == [run_id]
    rows = results(tmp_path / "out" / f"{run_id}.jsonl")
    assert statuses(rows)["sent"] == 10 == out["sent"] == len(sim.ledger("nrs360"))
    assert sorted(r["seq"] for r in rows if r["status"] == "sent") == sendable[:10]
    last = sendable[9]  # nothing after the 10th sendable record was read
    assert sorted(r["seq"] for r in rows) == [s for s in sorted(expected) if s <= last]
    assert (out["unsent"], out["deferred"], out["state"], out["resume"]) == (0, 0, "finished", None)
    assert (RunState(tmp_path / ".dispatcher", run_id).manifest or {})["origin"]["overrides"]["limit"] == 10

    # a resume of it sends nothing more (its 10 are done), even without --limit: it never becomes the whole run
    assert blast(toml, "--run-id", run_id) == 0
    out = summary(capsys)
    assert (out["sent"], out["read"], len(sim.ledger("nrs360"))) == (0, 0, 10)

    # the whole campaign afterwards is another run: the test send took nothing from it
    assert blast(toml, "--run-id", "all") == 1
    assert summary(capsys)["sent"] == len(sendable) and len(sim.ledger("nrs360")) == 10 + len(sendable)


def test_a_stopped_test_send_resumes_to_its_limit(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 40)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 5, "max_attempts": 2})
    code = blast(toml, "--limit", "12", "--run-id", "t", "--url", "http://127.0.0.1:1")  # nobody there: halted
    out = summary(capsys)
    assert code == 3 and out["sent"] == 0 and out["resume"] and "--limit 12" in out["resume"], out
    assert blast(toml, "--run-id", "t", "--url", sim.url("nrs360")) == 0
    out = summary(capsys)
    assert out["sent"] == 12 == len(sim.ledger("nrs360")) and out["unsent"] == 0, out
