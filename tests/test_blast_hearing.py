"""What hearing delivery reports keeps in memory (issue 25): the sent records' message ids and the latest
word on each message, held while a blast listens, measured with tracemalloc a sent record.

    python tests/test_blast_hearing.py [N]      # prints bytes a sent record (default N = 200,000)

The test pins it (a bound, well above the figure, below what a dict of strings a record costs) and that
the compact tally says what the rule says (blast/delivery.py) for duplicates, out-of-order reports and
strangers."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

try:
    from dispatcher.blast.heard import CHUNK, Keys, Tally, Waiting, count
except ImportError:  # a checkout from before blast/heard.py: measured the same way, for the figure before
    from dispatcher.blast.delivery import Tally, count  # type: ignore[no-redef]
    Waiting = None  # type: ignore[assignment,misc]
from dispatcher.blast.report_store import FileStore
from dispatcher.providers.dlr import Report

ALIAS = "sms"
T0 = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC)


def message_id(i: int) -> str:
    """13 alphanumeric characters, like the 360nrs simulator's ids."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(13):
        i, r = divmod(i, 36)
        out.append(digits[r])
    return "".join(reversed(out))


def results_file(path: Path, n: int) -> Path:
    """A JSONL results file of n sent records, as the sink writes them (the fields a resume reads)."""
    with open(path, "wb") as f:
        for i in range(1, n + 1):
            f.write(orjson.dumps({"seq": i, "id": f"r{i}", "to": f"+3460{i:07d}", "status": "sent",
                                  "provider": ALIAS, "message_id": message_id(i), "code": None, "error": None,
                                  "attempts": 1, "parts": 1, "meta": None}, option=orjson.OPT_APPEND_NEWLINE))
    return path


def reports(n: int):
    """One delivered report a sent record, each a new object as the endpoint parses them."""
    for i in range(1, n + 1):
        yield Report(ALIAS, message_id(i), f"+3460{i:07d}", "delivered", "DELIVRD",
                     T0 + dt.timedelta(seconds=i % 600), {"id": message_id(i), "status": "DELIVRD"}, 1)


def held_bytes(n: int, where: Path) -> tuple[float, float, float]:
    """(bytes a sent record held while listening, peak bytes a record, seconds to tally and count)."""
    store = FileStore(("jsonl", results_file(where / "run.jsonl", n)))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    tally = Tally()
    for r in reports(n):
        tally.add_report(r)
    keys = asyncio.run(store.sent())
    waiting = Waiting(keys, tally, [ALIAS]) if Waiting is not None else None  # what a linger holds
    assert waiting is None or waiting.look() == 0
    got = count(keys, tally, [ALIAS])
    took = time.perf_counter() - started
    gc.collect()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got == {"delivered": n, "undelivered": 0, "reports_pending": 0}, got
    del tally, keys, waiting
    return (now - base) / n, (peak - base) / n, took


def test_hearing_keeps_little_a_sent_record(tmp_path):
    per, peak, _ = held_bytes(50_000, tmp_path)
    assert per < 150, f"{per:.0f} bytes a sent record while listening"
    assert peak < 400, f"{peak:.0f} bytes a sent record at the peak"


def test_the_compact_tally_follows_the_rule():
    t = Tally()
    t.add(ALIAS, "a", "delivered", 3, "2026-12-06T20:00:00+00:00")
    t.add(ALIAS, "a", "accepted", 1, "2026-12-06T20:05:00+00:00")  # a lower rank, later: no change
    t.add(ALIAS, "b", "delivered", 3, "2026-12-06T20:00:00+00:00")
    t.add(ALIAS, "b", "undelivered", 3, "2026-12-06T20:01:00+00:00")  # a later final: it stands
    t.add(ALIAS, "c", "undelivered", 3, "2026-12-06T20:02:00+00:00")
    t.add(ALIAS, "c", "delivered", 3, "2026-12-06T20:01:00+00:00")  # an earlier event, come later: no change
    t.add(ALIAS, "d", "read", 4, "")  # an engagement: delivered
    t.add(ALIAS, "e", "sent", 2, "2026-12-06T20:00:00+00:00")  # not final: pending
    t.add(ALIAS, "f", "delivered", 3, "2026-12-06T20:00:00+00:00")
    t.add(ALIAS, "f", "undelivered", 3, "2026-12-06T20:00:00+00:00")  # equal events: the later arrival
    t.add("other", "a", "undelivered", 3, "2026-12-06T21:00:00+00:00")  # another provider's "a"
    t.add(ALIAS, "stranger", "undelivered", 3, "")  # not one of ours: not counted
    t.add(ALIAS, None, "delivered", 3, "")  # no id: not counted
    keys = [(ALIAS, m) for m in "abcdefg"] + [("quiet", "a")]  # g: no report; quiet: not asked
    assert count(keys, t, [ALIAS]) == {"delivered": 2, "undelivered": 3, "reports_pending": 2}
    assert count(keys, t, [ALIAS, "quiet"])["reports_pending"] == 3
    assert count([("other", "a")], t, ["other"]) == {"delivered": 0, "undelivered": 1, "reports_pending": 0}


def test_many_reports_a_message_compacted_and_narrowed_as_they_come():
    """Reports in a random order, several a message (a part each, accepted then final, duplicates), past
    the compaction's threshold: the counts and what a linger still waits for are the rule's at every look."""
    import random
    rng = random.Random(7)
    n = 12_000
    events = []
    for i in range(n):
        mid = message_id(i)
        events += [(mid, "accepted", 1, i), (mid, "sent", 2, i + 1)]
        if i % 5:  # a fifth never get a final report
            events += [(mid, "delivered", 3, i + 2), (mid, "delivered", 3, i + 2)]  # a duplicate
            if i % 7 == 0:
                events.append((mid, "undelivered", 3, i + 3))  # a later final: it stands
            if i % 11 == 0:
                events.append((mid, "read", 4, i))  # an engagement, whatever its time
    rng.shuffle(events)
    keys = Keys.of((ALIAS, message_id(i)) for i in range(n))
    tally, best, waiting = Tally(), {}, None
    for k, (mid, status, rank, sec) in enumerate(events):
        tally.add(ALIAS, mid, status, rank, T0 + dt.timedelta(seconds=sec))
        mine = (rank, sec, k, status)
        best[mid] = max(best.get(mid, mine), mine)
        if k % 9_000 == 0 or k == len(events) - 1:
            if waiting is None:
                waiting = Waiting(keys, tally, [ALIAS])
            pending = sum(1 for i in range(n) if best.get(message_id(i), (0,))[0] < 3)
            assert waiting.look() == pending, k
    words = [("delivered" if b[0] > 3 or b[3] == "delivered" else "undelivered") if b[0] >= 3 else "pending"
             for b in (best.get(message_id(i), (0, 0, 0, "")) for i in range(n))]
    assert count(keys, tally, [ALIAS]) == {"delivered": words.count("delivered"),
                                           "undelivered": words.count("undelivered"),
                                           "reports_pending": words.count("pending")}
    assert tally.columns[ALIAS].generation > 0  # it was compacted on the way
    assert tally.columns[ALIAS].stored <= 2 * n + CHUNK  # to about one report a message


def hear_times(n: int, rounds: int, roots: dict[str, Path]) -> dict[str, list[float]]:
    """Seconds from start to every report heard, a blast of `n` records with `[reports]` against the 360nrs
    simulator (batches of 500), the checkouts in `roots` alternating, the same simulator for all."""
    import os
    import statistics
    import subprocess

    from blastkit import audience, campaign
    from conftest import CREDENTIALS, start_simulators
    sims = start_simulators("--only", "nrs360")
    took: dict[str, list[float]] = {name: [] for name in roots}
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            audience(tmp / "audience.csv", n)
            toml = campaign(tmp, sims.url("nrs360"), extra='[reports]\nlisten = "127.0.0.1:0"\nlinger = 120\n',
                            provider={"rate": 1_000_000, "batch_size": 500, "concurrency": 8})
            for i in range(rounds):
                for name, root in roots.items():
                    sims.reset("nrs360")
                    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(root)}
                    started = time.perf_counter()
                    done = subprocess.run([sys.executable, "-m", "dispatcher", "blast", str(toml), "--quiet",
                                           "--run-id", f"{name}-{i}"], cwd=root, env=env, capture_output=True,
                                          text=True, timeout=600)
                    seconds = time.perf_counter() - started
                    out = orjson.loads(done.stdout.strip().splitlines()[-1])
                    assert out["delivered"] == out["sent"] == n, (out, done.stderr[-2000:])
                    took[name].append(seconds)
                    print(f"  {name} round {i + 1}: {seconds:.2f} s to hear {n:,} ({out.get('elapsed_s')} s sending)",
                          flush=True)
    finally:
        sims.proc.terminate()
        sims.proc.wait(10)
    for name, xs in took.items():
        print(f"{name}: median {statistics.median(xs):.2f} s of {xs}")
    return took


if __name__ == "__main__":
    import argparse
    cli = argparse.ArgumentParser(description="what hearing reports costs: memory a record, time to hear")
    cli.add_argument("n", type=int, nargs="?", default=200_000)
    cli.add_argument("--hear", type=int, default=0, help="also time a blast of this many records hearing them")
    cli.add_argument("--rounds", type=int, default=3)
    cli.add_argument("--baseline", type=Path, help="another checkout to time alternately (e.g. a git archive)")
    a = cli.parse_args()
    with tempfile.TemporaryDirectory() as d:
        per, peak, took = held_bytes(a.n, Path(d))
    print(f"{a.n:,} sent records: {per:.0f} bytes a record held while listening, {peak:.0f} at the peak "
          f"({took:.1f} s under tracemalloc)")
    if a.hear:
        here = Path(__file__).resolve().parent.parent
        hear_times(a.hear, a.rounds, {"this": here, **({"baseline": a.baseline.resolve()} if a.baseline else {})})
