"""The one-shot blast end to end against the 360nrs simulator over local HTTP."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from blastkit import (
    audience,
    blast_in_background,
    campaign,
    read_csv,
    results,
    run_cli,
    statuses,
    wait_for_results,
)

from dispatcher.cli import main


def blast(toml: Path, run_id: str = "r1", *extra: str) -> int:
    return main(["blast", str(toml), "--quiet", "--run-id", run_id, *extra])


def test_every_record_gets_exactly_one_result_under_faults(sim, tmp_path, capsys):
    """Good rows, malformed rows, 5xx, dropped connections and a tight rate limit: one result each."""
    expected = audience(tmp_path / "audience.csv", 3000, bad_every=97)
    sim.config("nrs360", rate=40, error_rate=0.15, drop_rate=0.05)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 60, "burst": 1})
    code = blast(toml)
    said = capsys.readouterr()
    assert "providers.sms.burst is ignored" in said.err  # an old setting is said, not silently kept
    out = orjson.loads(said.out.strip().splitlines()[-1])

    rows = results(tmp_path / "out" / "r1.jsonl")
    by_seq = Counter(r["seq"] for r in rows)
    assert set(by_seq) == set(expected), "a record without a result, or a result for no record"
    assert max(by_seq.values()) == 1, "a record with two results"
    for r in rows:
        assert r["status"] == expected[r["seq"]], r
    assert code == 1  # some rows were rejected

    ledger = sim.ledger("nrs360")
    sent = {r["message_id"]: r for r in rows if r["status"] == "sent"}
    assert len(ledger) == len(sent) == Counter(expected.values())["sent"]
    for entry in ledger:  # the text the provider built from template + sub is the text we counted
        r = sent[entry["id"]]
        assert "+" + entry["to"] == r["to"]
        assert entry["parts"] == r["parts"]
    assert {e["text"] for e in ledger} >= {"Hi Name5, you owe 5,50 EUR"}
    stats = sim.stats("nrs360")
    assert stats["errors_injected"] > 0 and stats["dropped"] > 0  # the faults really happened
    assert stats["max_window"] <= 40
    assert out["retries"] > 0
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert {r["code"] for r in rejected} == {"bad_row", "invalid_number"}
    assert all(f":{r['seq']}:" in r["error"] for r in rejected if r["code"] == "bad_row")


def test_unanswered_requests_are_counted_as_possible_duplicates(sim, tmp_path, capsys):
    """Accepted, then the connection drops: a resend may duplicate; the run says how many at most."""
    audience(tmp_path / "audience.csv", 1000)
    sim.config("nrs360", drop_after_rate=0.2)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 20})
    assert blast(toml) == 0
    out = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = results(tmp_path / "out" / "r1.jsonl")
    assert len(rows) == 1000 and statuses(rows) == {"sent": 1000}
    per_number = Counter(e["to"] for e in sim.ledger("nrs360"))
    duplicates = sum(n - 1 for n in per_number.values())
    assert len(per_number) == 1000  # nothing lost
    assert 0 < duplicates <= out["ambiguous"]
    flagged = {r["to"].lstrip("+") for r in rows if (r["meta"] or {}).get("unanswered_attempts")}
    assert {n for n, c in per_number.items() if c > 1} <= flagged


def test_out_of_credit_defers_and_a_resume_sends_each_record_once(sim, tmp_path, capsys):
    """A halt is not a mass failure: the records the provider could not take get no result (exit 3, the
    reason and the resume command in the summary); once credit is topped up, a resume sends exactly them."""
    audience(tmp_path / "audience.csv", 500)
    sim.config("nrs360", credits=100)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 25, "concurrency": 1})
    assert blast(toml) == 3
    out = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["deferred"] == 400 and out["failed"] == 0 and out["halts"]["sms"][0] == "111"
    assert out["resume"] and "--run-id r1" in out["resume"]
    rows = results(tmp_path / "out" / "r1.jsonl")
    assert statuses(rows) == {"sent": 100} == {"sent": len(sim.ledger("nrs360"))}
    assert sim.stats("nrs360")["requests"] <= 100 // 25 + 1  # no request after the halt

    sim.config("nrs360", credits=-1)  # topped up
    assert blast(toml) == 0
    rows = results(tmp_path / "out" / "r1.jsonl")
    assert sorted(r["seq"] for r in rows) == list(range(2, 502))  # one line per record, no more
    per_number = Counter(e["to"] for e in sim.ledger("nrs360"))
    assert len(per_number) == 500 and max(per_number.values()) == 1


def test_resume_after_a_finished_run_sends_nothing(sim, tmp_path):
    audience(tmp_path / "audience.csv", 300)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 50, "concurrency": 1})
    assert blast(toml, "again") == 0
    assert blast(toml, "again") == 0
    assert len(results(tmp_path / "out" / "again.jsonl")) == 300
    assert len(sim.ledger("nrs360")) == 300


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_settles_flushes_and_resume_completes(sim, tmp_path, workers):
    """SIGTERM: what is on the wire settles and is written, the rest is left; a resume (by one process,
    whether the run had one or a worker a core: the owner passes the signal on to each) completes it."""
    audience(tmp_path / "audience.csv", 3000)
    sim.config("nrs360", latency_ms=30)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 20, "batch_size": 20, "concurrency": 2},
                    extra=f"[engine]\nworkers = {workers}\n")
    proc = blast_in_background(toml, "t")
    out_file = tmp_path / "out" / "t.jsonl"
    wait_for_results(out_file, 200, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    summary = orjson.loads(stdout.strip().splitlines()[-1])
    assert summary["interrupted"] and "--run-id t" in summary["resume"]
    partial = results(out_file)
    assert 200 <= len(partial) < 3000
    # settled: every accepted message has its result, and the summary counts each once
    assert len(partial) == len(sim.ledger("nrs360")) == summary["sent"]

    sim.config("nrs360", latency_ms=0)
    done = run_cli("blast", str(toml), "--run-id", "t", "--quiet", "--rate", "200", "--workers", "1")
    assert done.returncode == 0, done.stderr
    rows = results(out_file)
    assert sorted(r["seq"] for r in rows) == list(range(2, 3002))
    assert Counter(Counter(e["to"] for e in sim.ledger("nrs360")).values()) == {1: 3000}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_blast_of_a_running_run_is_refused_and_sends_nothing(sim, tmp_path, workers):
    """One process runs a run at a time: with workers, the owner holds the run for all of them."""
    audience(tmp_path / "audience.csv", 400)
    sim.config("nrs360", latency_ms=30)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 20, "batch_size": 20, "concurrency": 2},
                    extra=f"[engine]\nworkers = {workers}\n")
    proc = blast_in_background(toml, "twice")
    out_file = tmp_path / "out" / "twice.jsonl"
    wait_for_results(out_file, 40, proc)
    sim.config("nrs360", latency_ms=1500)  # the first run cannot finish while the second starts (a slow start
    second = run_cli("blast", str(toml), "--run-id", "twice", "--quiet")  # on a busy machine took longer
    sim.config("nrs360", latency_ms=0)  # than the whole first run: then it resumed a finished run)
    assert second.returncode == 2, second.stderr
    assert "running in another process" in second.stderr
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert sorted(r["seq"] for r in results(out_file)) == list(range(2, 402))
    assert Counter(Counter(e["to"] for e in sim.ledger("nrs360")).values()) == {1: 400}


@pytest.mark.parametrize("on_doubt", ["resend", "hold"])
def test_sigkill_then_resume_bounds_duplicates(sim, tmp_path, on_doubt):
    """SIGKILL mid-run: requests on the wire are 'in doubt'. Resend: nothing lost, duplicates <= in doubt.
    Hold: nothing sent twice, and exactly the in-doubt records are held as failed."""
    audience(tmp_path / "audience.csv", 3000)
    sim.config("nrs360", latency_ms=150)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 40, "batch_size": 20, "concurrency": 4})
    proc = blast_in_background(toml, "k")
    out_file = tmp_path / "out" / "k.jsonl"
    wait_for_results(out_file, 300, proc)
    time.sleep(0.1)  # let a request reach the (slow) simulator; the journal has it on the wire
    proc.kill()
    proc.wait(10)
    sim.config("nrs360", latency_ms=0)
    done = run_cli("blast", str(toml), "--run-id", "k", "--quiet", "--rate", "200", "--on-doubt", on_doubt)
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    rows = results(out_file)
    per_seq = Counter(r["seq"] for r in rows)
    assert sorted(per_seq) == list(range(2, 3002)) and max(per_seq.values()) == 1
    per_number = Counter(e["to"] for e in sim.ledger("nrs360"))
    duplicates = sum(n - 1 for n in per_number.values())
    in_doubt = summary["in_doubt"]
    assert in_doubt > 0, "the kill should have caught requests on the wire"
    # bounded by the requests on the wire (concurrency x batch size), plus as many whose results were
    # computed in the loop turn of the kill and not yet written
    assert in_doubt <= 2 * 4 * 20
    if on_doubt == "resend":
        assert done.returncode == 0, done.stderr
        assert len(per_number) == 3000
        assert duplicates <= in_doubt
    else:
        assert duplicates == 0
        held = [r for r in rows if r["code"] == "in_doubt"]
        assert len(held) == in_doubt
        assert len(per_number) + len(held) >= 3000  # each held one may or may not have been accepted
        assert len(per_number) <= 3000


def test_csv_sink_and_dry_run(sim, tmp_path, capsys):
    audience(tmp_path / "audience.csv", 300, bad_every=50)
    sinks = '\n[[sinks]]\ntype = "csv"\npath = "out/{run_id}.csv"\n'
    toml = campaign(tmp_path, sim.url("nrs360"), sinks=sinks, provider={"price": 0.05},
                    template="Hola {name}: " + "x" * 150)
    assert main(["blast", str(toml), "--dry-run", "--json"]) == 1
    report = orjson.loads(capsys.readouterr().out)
    assert report["records"] == 300 and report["rejected"] == 6 and report["valid"] == 294
    assert report["parts"] == 294 * 2 and report["cost"] == pytest.approx(294 * 2 * 0.05)
    assert sim.stats("nrs360")["requests"] == 0
    assert not (tmp_path / "out").exists()
    assert blast(toml, "c") == 1
    rows = read_csv(tmp_path / "out" / "c.csv")
    assert len(rows) == 300 and Counter(r["status"] for r in rows) == {"sent": 294, "rejected": 6}


def test_jsonl_source_with_missing_variable(sim, tmp_path):
    lines = [orjson.dumps({"phone": f"+3460{i:07d}", "name": f"n{i}", "amount": "1"}) for i in range(50)]
    lines[10] = orjson.dumps({"phone": "+34600000999", "amount": "1"})  # no name
    lines[20] = b"{not json"
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    toml = campaign(tmp_path, sim.url("nrs360"), source="a.jsonl")
    assert blast(toml) == 1
    rows = {r["seq"]: r for r in results(tmp_path / "out" / "r1.jsonl")}
    assert len(rows) == 50
    assert rows[11]["code"] == "missing_variable" and "'name'" in rows[11]["error"]
    assert rows[21]["code"] == "bad_row" and "invalid JSON" in rows[21]["error"]
    assert len(sim.ledger("nrs360")) == 48


@pytest.mark.parametrize("case", ["missing_file", "bad_key", "missing_credential", "unknown_variable",
                                  "bad_toml", "missing_source"])
def test_bad_input_is_one_clear_line_and_nothing_is_sent(sim, tmp_path, case, monkeypatch, capsys):
    audience(tmp_path / "audience.csv", 20)
    toml = campaign(tmp_path, sim.url("nrs360"))
    text = toml.read_text()
    expect = {}
    if case == "missing_file":
        toml = tmp_path / "nope.toml"
        expect = {"nope.toml"}
    elif case == "bad_key":
        toml.write_text(text.replace("batch_size", "batch_sise"))
        expect = {"campaign.toml:", "batch_sise", "batch_size"}
    elif case == "missing_credential":
        monkeypatch.delenv("NRS360_PASSWORD")
        expect = {"NRS360_PASSWORD", "password_env"}
    elif case == "unknown_variable":
        toml.write_text(text.replace("{name|capitalize}", "{nmae|capitalize}"))
        expect = {"campaign.toml:", "nmae", "did you mean 'name'"}
    elif case == "bad_toml":
        toml.write_text(text + "\n[source\n")
        expect = {"campaign.toml", "invalid TOML"}
    elif case == "missing_source":
        toml.write_text(text.replace("audience.csv", "gone.csv"))
        expect = {"gone.csv", "cannot read"}
    assert blast(toml) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for e in expect:
        assert e in err, err
    assert sim.stats("nrs360")["requests"] == 0


def test_secrets_never_reach_output_results_or_journal(sim, tmp_path, monkeypatch):
    audience(tmp_path / "audience.csv", 100)
    toml = campaign(tmp_path, sim.url("nrs360"))
    secret = "wrong-Pa55word-xyz"
    done = run_cli("blast", str(toml), "--run-id", "s", env={"NRS360_PASSWORD": secret})
    assert done.returncode == 3  # bad credentials: halted, every record deferred, not retried
    assert results(tmp_path / "out" / "s.jsonl") == []
    assert "103" in done.stdout and sim.stats("nrs360")["requests"] <= 4
    texts = [done.stdout, done.stderr] + [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    import base64
    encoded = base64.b64encode(f"demo:{secret}".encode()).decode()
    for t in texts:
        assert secret not in t and encoded not in t


def test_simulate_serves_every_simulator_and_control_endpoint(sim):
    assert "nrs360" in sim.urls
    cfg = sim.config("nrs360", latency_ms=5, rate=10)
    assert cfg["latency_ms"] == 5 and cfg["rate"] == 10
    with pytest.raises(Exception, match="400"):
        sim.config("nrs360", no_such_knob=1)


def test_transliterated_texts_still_share_requests(sim, tmp_path):
    names = ["José", "Lucía", "João", "Chloé", "Iñaki"]
    lines = ["phone,name,amount"] + [f"+3460{i:07d},{names[i % 5]},{i}" for i in range(200)]
    (tmp_path / "audience.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    toml = campaign(tmp_path, sim.url("nrs360"), template="Hola {name} – tu “código” es {amount}",
                    message_extra="transliterate = true", provider={"batch_size": 50})
    assert blast(toml) == 0
    rows = results(tmp_path / "out" / "r1.jsonl")
    assert len(rows) == 200 and all(r["transliterated"] and r["encoding"] == "GSM-7" for r in rows)
    texts = {e["text"] for e in sim.ledger("nrs360")}
    assert 'Hola Lucia - tu "codigo" es 1' in texts and 'Hola José - tu "codigo" es 0' in texts  # é is GSM-7
    assert not any(ch in t for t in texts for ch in "–“”íã")
    assert sim.stats("nrs360")["requests"] <= 200 // 50 + 2  # personalised and transliterated, still batched
