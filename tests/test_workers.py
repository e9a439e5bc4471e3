"""A run shared by several worker processes (engine.workers): parts of the source, journals, the owner.

Unit: every record is in exactly one part, whatever the file holds (plain blocks, bad rows, a quoted
row spanning lines, JSON lines, a resume's skips); a resume reads every worker's journal. End to end
through the 360nrs simulator: one result a record under faults with the rate shared, a SIGKILL of
the owner that takes its workers with it, a retry, and the campaigns that cannot be shared refused
before anything is sent. SIGTERM and a second blast of a running run are test_blast's, with workers
among their cases.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from blastkit import audience, blast_in_background, campaign, results, run_cli, wait_for_results

from dispatcher.sources.base import Part
from dispatcher.sources.files import FileSource
from dispatcher.state import RunState

TWO = "[engine]\nworkers = 2\n"


# -- parts of a source ---------------------------------------------------------------------------------
def test_a_part_owns_runs_of_seqs_and_every_seq_has_one_owner():
    for of in (1, 2, 3):
        for span in (1, 3, 4096):
            parts = [Part(k, of, span) for k in range(of)]
            for first, last in ((0, 100), (5, 5), (4000, 20000), (7, 13)):
                owners = Counter(k for s in range(first, last + 1) for k, p in enumerate(parts) if p.owns(s))
                assert sum(owners.values()) == last - first + 1  # each seq owned once
                for p in parts:
                    ranges = [s for a, b in p.runs(first, last) for s in range(a, b)]
                    assert ranges == [s for s in range(first, last + 1) if p.owns(s)]


def _files(tmp: Path) -> list[Path]:
    """A plain CSV, one with bad rows and blank lines, one with a quoted row spanning lines after them,
    and JSON lines with bad ones: every path of the readers."""
    lines = ["id,phone,name,amount"] + [f"c{i},+346{i:08d},name{i},{i}.50" for i in range(20000)]
    plain = tmp / "plain.csv"
    plain.write_text("\n".join(lines) + "\n")
    bad = list(lines)
    for i in range(5, len(bad), 997):
        bad[i] = "broken,line"
    for i in range(7, len(bad), 1500):
        bad[i] = ""
    (tmp / "bad.csv").write_text("\n".join(bad) + "\n")
    quoted = list(bad)
    quoted[9000] = 'c9000,+34600009000,"multi\nline, name",12.00'
    (tmp / "quoted.csv").write_text("\n".join(quoted) + "\n")
    with open(tmp / "a.jsonl", "wb") as f:
        for i, line in enumerate(bad[1:]):
            p = line.split(",")
            f.write(orjson.dumps({"id": p[0], "phone": p[1], "name": p[2]}) + b"\n" if len(p) == 4 else
                    b"{bad json\n" if i % 2 else b"\n")
    return [plain, tmp / "bad.csv", tmp / "quoted.csv", tmp / "a.jsonl"]


async def _read(path: Path, part: Part | None = None, skip=None) -> tuple[list, list]:
    records, bad = [], []
    async for chunk, rejected in FileSource(path).chunks(skip, part):
        records += [(s, tuple(sorted(chunk.fields(i).items()))) for i, s in enumerate(chunk.seq)]
        bad += [(r.seq, r.code) for r in rejected]
    return records, bad


@pytest.mark.parametrize("of,span", [(2, 4096), (2, 7), (3, 1)])
def test_the_parts_of_a_file_add_up_to_the_whole_file(tmp_path, of, span):
    for path in _files(tmp_path):
        for skip in (None, lambda seq: seq % 5 == 0):  # a resume skips what an earlier attempt finished
            whole = asyncio.run(_read(path, skip=skip))
            got: tuple[list, list] = ([], [])
            for k in range(of):
                part = Part(k, of, span)
                records, bad = asyncio.run(_read(path, part, skip))
                assert all(part.owns(s) for s, _ in records + bad)
                got[0].extend(records)
                got[1].extend(bad)
            assert sorted(got[0]) == sorted(whole[0]), path.name
            assert sorted(got[1]) == sorted(whole[1]), path.name
            assert whole[1] or path.name == "plain.csv"  # the bad rows are there to be shared


def test_a_resume_reads_every_workers_journal(tmp_path):
    owner = RunState(tmp_path, "r")
    owner.lock()
    workers = [RunState(tmp_path, "r") for _ in range(2)]
    for k, w in enumerate(workers):
        w.open(worker=k)  # no lock of its own: the owner holds the run's
    workers[0].sending([2, 3, 4])
    workers[1].sending([5, 6])
    workers[1].cleared([6])
    for w in workers:
        w.close()
    again = RunState(tmp_path, "r")
    assert again.resuming and sorted(again.attempted()) == [2, 3, 4, 5]
    owner.close()


# -- end to end ----------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_two_workers_give_one_result_a_record_under_faults_at_the_shared_rate(sim, tmp_path):
    expected = audience(tmp_path / "audience.csv", 3000, bad_every=97)
    sim.config("nrs360", rate=40, error_rate=0.15, drop_rate=0.05)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 40}, extra=TWO)
    done = run_cli("blast", str(toml), "--run-id", "w", "--quiet")
    assert done.returncode == 1, done.stderr  # some rows were rejected
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    rows = results(tmp_path / "out" / "w.jsonl")
    by_seq = Counter(r["seq"] for r in rows)
    assert set(by_seq) == set(expected) and max(by_seq.values()) == 1
    assert all(r["status"] == expected[r["seq"]] for r in rows)
    sent = {r["message_id"] for r in rows if r["status"] == "sent"}
    assert len(sim.ledger("nrs360")) == len(sent) == Counter(expected.values())["sent"]
    assert summary["sent"] == len(sent) and summary["read"] == 3000 and summary["retries"] > 0
    stats = sim.stats("nrs360")
    assert stats["errors_injected"] > 0 and stats["dropped"] > 0
    assert stats["max_window"] <= 40  # the two workers' shares of 40/s together stay within 40/s
    assert summary["throttled"] == 0
    journals = sorted(p.name for p in (tmp_path / ".dispatcher" / "runs" / "w").glob("journal*"))
    assert journals == ["journal.0", "journal.1"]
    manifest = orjson.loads((tmp_path / ".dispatcher" / "runs" / "w" / "run.json").read_bytes())
    assert manifest["attempts"][-1]["counts"]["sent"] == len(sent)


def test_sigkill_of_the_owner_takes_its_workers_and_a_resume_bounds_duplicates(sim, tmp_path):
    audience(tmp_path / "audience.csv", 3000)
    sim.config("nrs360", latency_ms=150)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 40, "batch_size": 20, "concurrency": 4},
                    extra=TWO)
    proc = blast_in_background(toml, "k")
    out_file = tmp_path / "out" / "k.jsonl"
    wait_for_results(out_file, 300, proc)
    workers = _children(proc.pid)
    assert len(workers) == 2
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while not all(map(_gone, workers)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(map(_gone, workers)), "a worker outlived its owner"
    sim.config("nrs360", latency_ms=0)
    done = run_cli("blast", str(toml), "--run-id", "k", "--quiet", "--rate", "200")
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    per_seq = Counter(r["seq"] for r in results(out_file))
    assert sorted(per_seq) == list(range(2, 3002)) and max(per_seq.values()) == 1
    per_number = Counter(e["to"] for e in sim.ledger("nrs360"))
    assert len(per_number) == 3000  # nothing lost
    assert sum(n - 1 for n in per_number.values()) <= summary["in_doubt"] <= 2 * 2 * 4 * 20


@pytest.mark.parametrize("case,extra,args,words", [
    ("too many for the concurrency", TWO, (), "allows 1 request(s) in flight, fewer than the workers"),
    ("not a number", "[engine]\nworkers = 0\n", (), "engine.workers"),
    ("a database sink", "", ("--workers", "2"), "append to JSONL or CSV result files"),
])
def test_a_run_that_cannot_be_shared_is_refused_before_sending(sim, tmp_path, case, extra, args, words):
    audience(tmp_path / "audience.csv", 50)
    sinks = '\n[[sinks]]\ntype = "postgres"\ndsn_env = "RESULTS_DSN"\ntable = "t"\n' \
        if case == "a database sink" else None
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"concurrency": 1 if case.startswith("too") else 4},
                    extra=extra, sinks=sinks)
    done = run_cli("blast", str(toml), "--run-id", "no", "--quiet", *args,
                   env={"RESULTS_DSN": "postgresql://127.0.0.1:1/x"})
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert sim.stats("nrs360")["requests"] == 0
    assert not (tmp_path / "out").exists() and not (tmp_path / ".dispatcher").exists()


def test_the_owner_adds_the_workers_reports_up():
    from dispatcher.blast.multiprocess import _lanes, _merge
    from dispatcher.engine.lane import HALTED, SENDING
    a = {"read": 10, "skipped": 1, "sent": 7, "failed": 1, "rejected": 1, "deferred": 0, "parts": 9, "requests": 3,
         "retries": 2, "retried": 20, "throttled": 0, "ambiguous": 0, "unsent": 0, "cost": 0.5, "codes": {"sms:500": 1},
         "texts": {"sms:500": "boom"}, "halts": {}, "by_encoding": {"GSM-7": 7}, "started": 5.0,
         "timeline": [[0.5, 4, 1], [1.0, 9, 3]], "in_doubt": 0}
    b = {**a, "sent": 5, "codes": {"sms:500": 2, "rejected:bad_row": 1}, "texts": {"sms:500": "other"},
         "halts": {"sms": ["111", "no credit"]}, "started": 4.0, "timeline": [[0.5, 2, 1]]}
    st = _merge([a, b])
    assert (st.read, st.sent, st.requests, st.cost) == (20, 12, 6, 1.0)
    assert st.codes == {"sms:500": 3, "rejected:bad_row": 1} and st.texts == {"sms:500": "boom"}
    assert st.halts == {"sms": ("111", "no credit")} and st.started == 4.0
    assert st.timeline == [(0.5, 6, 2), (1.0, 11, 4)]  # a worker that stopped sampling keeps its last sample
    lane = {"alias": "sms", "kind": "nrs360", "channel": "sms", "state": SENDING, "since": 1.0, "code": None,
            "reason": None, "rate": 50.0, "pace": 50.0, "requests": 10, "throttled": 1, "in_flight": 2}
    (merged,) = _lanes([[lane], [{**lane, "state": HALTED, "code": "111", "reason": "no credit", "requests": 5,
                                  "retries": 30}]])
    assert (merged.state, merged.code, merged.rate, merged.requests, merged.in_flight) == (HALTED, "111", 100.0, 15, 4)
    assert merged.retries == 30  # a lane's retried records add up too (they were the first worker's alone)


def test_every_count_of_a_run_adds_up_across_its_processes():
    """A count added to Stats later is summed too: the merge reads the dataclass, not a list of names."""
    import dataclasses

    from dispatcher.blast.multiprocess import _fields, _merge
    from dispatcher.engine import Stats
    one = Stats()
    numbers = [f.name for f in dataclasses.fields(Stats) if f.type in ("int", "float")
               and f.name not in ("started", "in_doubt")]
    for name in numbers:
        setattr(one, name, 1)
    st = _merge([_fields(one), _fields(one)])
    assert {name: getattr(st, name) for name in numbers} == dict.fromkeys(numbers, 2)


def test_a_shared_run_ends_with_the_same_summary_as_one_process(sim, tmp_path):
    audience(tmp_path / "audience.csv", 300)
    toml = campaign(tmp_path, sim.url("nrs360"), extra=TWO)
    done = run_cli("blast", str(toml), "--run-id", "s")
    assert done.returncode == 0, done.stderr
    assert "run s finished" in done.stdout and "sent               300" in done.stdout
    assert len(results(tmp_path / "out" / "s.jsonl")) == 300 == len(sim.ledger("nrs360"))


def test_a_retry_by_workers_sends_exactly_the_failed_records(sim, tmp_path):
    audience(tmp_path / "audience.csv", 600)
    sim.config("nrs360", error_rate=0.3)  # one attempt a request: a 5xx fails its records
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"batch_size": 20, "max_attempts": 1,
                                                            "circuit_failures": 1000}, extra=TWO)
    assert run_cli("blast", str(toml), "--run-id", "first", "--quiet").returncode == 1
    failed = {r["seq"] for r in results(tmp_path / "out" / "first.jsonl") if r["status"] == "failed"}
    assert failed
    sim.config("nrs360", error_rate=0.0)
    done = run_cli("blast", str(toml), "--retry-failed", "first", "--quiet")
    assert done.returncode == 0, done.stderr
    retried = results(tmp_path / "out" / "first-retry.jsonl")
    assert sorted(r["seq"] for r in retried) == sorted(failed) and {r["status"] for r in retried} == {"sent"}
    per_number = Counter(e["to"] for e in sim.ledger("nrs360"))
    assert len(per_number) == 600 and max(per_number.values()) == 1
