"""What a resume may change (issue 25, README "Run identity"): how records are sent (a provider's retry
and pacing settings: max_attempts, backoff, rate, timeout...) is not part of a run's identity, so a
resume takes the file's settings as they are then and sends what is left with them; records that already
have a result keep it (a larger max_attempts does not resend failures: `--retry-failed` does). What is
sent (the messages) still is: a changed template is refused."""

from __future__ import annotations

import orjson
from blastkit import audience, campaign, results, statuses

from dispatcher.cli import main


def blast(toml, *extra: str) -> int:
    return main(["blast", str(toml), "--quiet", *extra])


def summary(capsys) -> dict:
    return orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_resume_sends_what_is_left_with_the_files_retry_settings_as_they_are_then(sim, tmp_path, capsys,
                                                                                     monkeypatch):
    audience(tmp_path / "audience.csv", 40)
    settings = {"max_attempts": 1, "circuit_failures": 1000, "backoff_base": 0.001, "backoff_max": 0.01}
    toml = campaign(tmp_path, sim.url("nrs360"), provider=settings)
    monkeypatch.setenv("NRS360_USER", "not-the-user")  # the provider halts: every record deferred
    assert blast(toml, "--run-id", "m") == 3
    assert summary(capsys)["deferred"] == 40
    monkeypatch.undo()

    sim.config("nrs360", error_rate=1.0)  # a 5xx to every request: each record tries max_attempts times
    campaign(tmp_path, sim.url("nrs360"), provider={**settings, "max_attempts": 3})
    assert blast(toml, "--run-id", "m") == 1  # not refused as another campaign (exit 2)
    out = summary(capsys)
    assert (out["sent"], out["failed"], out["deferred"]) == (0, 40, 0), out
    got = results(tmp_path / "out" / "m.jsonl")
    assert statuses(got) == {"failed": 40} and {r["attempts"] for r in got} == {3}  # the new max_attempts

    sim.config("nrs360", error_rate=0.0)
    campaign(tmp_path, sim.url("nrs360"), provider={**settings, "max_attempts": 5})
    assert blast(toml, "--run-id", "m") == 1  # the failures stand: a resume skips every record with a result
    out = summary(capsys)
    assert (out["sent"], out["skipped"]) == (0, 40) and out["retry"] == f"dispatcher blast {toml} --retry-failed m"
    assert blast(toml, "--retry-failed", "m") == 0  # ... and the retry sends them
    assert summary(capsys)["sent"] == 40

    campaign(tmp_path, sim.url("nrs360"), provider={**settings, "max_attempts": 5}, template="Another {name}")
    assert blast(toml, "--run-id", "m") == 2  # what is sent is the run's identity: refused
    assert "--allow-changed" in capsys.readouterr().err
