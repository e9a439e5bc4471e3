"""Progress that tells the truth: percent and ETA from records done against the source's total,
one line per provider from Engine.snapshot(), top errors with their text, plain lines off a
terminal and no colour under NO_COLOR."""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from blastkit import audience, campaign
from test_postgres import audience as pg_audience
from test_postgres import dsn as dsn  # the fixture
from test_postgres import run, sql
from test_postgres import source as pg_source

from dispatcher.blast.preparer import CampaignPreparer
from dispatcher.blast.progress import Progress, View, clock_text
from dispatcher.config import Overrides, load_campaign
from dispatcher.engine import HALTED, SENDING, THROTTLED, Engine, LaneStatus, Stats
from dispatcher.sources.base import Source
from dispatcher.sources.files import FileSource


def test_eta_is_within_20_percent_of_the_real_remaining_time_halfway_through_a_rate_limited_run(sim, tmp_path):
    """The engine's own limiter paces the run (40 requests/s of 5 recipients: about 6 s for 1200); the
    ETA read when half the records are done is compared with the time the run actually took after."""
    audience(tmp_path / "audience.csv", 1200)
    toml = campaign(tmp_path, sim.url("nrs360"), provider={"rate": 40, "batch_size": 5, "concurrency": 2})
    camp = load_campaign(toml, Overrides(run_id="eta"))
    progress = Progress(camp.source, out=io.StringIO())
    readings: list[tuple[float, View]] = []

    def watch(engine: Engine) -> None:
        progress(engine)
        assert progress.view is not None
        readings.append((time.monotonic(), progress.view))

    st = asyncio.run(Engine(camp, preparer=CampaignPreparer(camp), on_progress=watch).run())
    end = time.monotonic()
    assert st.sent == 1200
    t_half, half = next((t, v) for t, v in readings if v.done >= 600)
    assert half.total == 1200  # a small file: counted exactly from its first block
    assert half.fraction is not None and 0.5 <= half.fraction < 0.65
    real = end - t_half
    assert half.eta is not None and abs(half.eta - real) <= 0.2 * real, (half.eta, real)
    lane = half.lanes[0]
    assert lane.status.rate == 40 and 30 <= lane.achieved <= 44  # achieved against configured


class FakeSource(Source):
    def __init__(self, total: int | None) -> None:
        self.total = total

    def estimate_total(self) -> int | None:
        return self.total


class FakeEngine:
    """What Progress reads: stats and snapshot(), under a clock the test moves."""

    def __init__(self) -> None:
        self.stats = Stats(started=0.0)
        self.lanes = [LaneStatus("sms", "nrs360", "sms", SENDING, 0.0, None, None, 50, 50, 0, 0, 2)]

    def snapshot(self) -> list[LaneStatus]:
        return list(self.lanes)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _advance(engine: FakeEngine, clock: Clock, seconds: float, done_per_s: float, requests_per_s: float) -> None:
    clock.now += seconds
    engine.stats.sent += int(done_per_s * seconds)
    lane = engine.lanes[0]
    lane.requests += int(requests_per_s * seconds)


def test_percent_and_eta_count_records_done_not_records_read():
    clock, engine = Clock(), FakeEngine()
    out = io.StringIO()
    p = Progress(FakeSource(10_000), out=out, clock=clock, interval=0)
    engine.stats.read = 9_000  # the reader is far ahead of sending: that is not progress
    for _ in range(20):  # 10 s at 100 records/s and 10 requests/s (10 recipients a request)
        _advance(engine, clock, 0.5, 100, 10)
        p(engine)
    v = p.view
    assert v is not None and v.done == 1000 and v.total == 10_000
    assert v.fraction == pytest.approx(0.1)
    assert v.rate == pytest.approx(100, rel=0.01)
    assert v.eta == pytest.approx(90, rel=0.02)
    assert v.lanes[0].achieved == pytest.approx(10, rel=0.02)
    line = out.getvalue().splitlines()[-2]
    assert line.startswith("10% 1,000 / ~10,000 done  ETA 1:30  elapsed 0:10  100 msg/s")  # not read through: an estimate

    # the rate halves: within the 10 s window the ETA follows it
    for _ in range(20):
        _advance(engine, clock, 0.5, 50, 5)
        p(engine)
    assert p.view.rate == pytest.approx(50, rel=0.01)
    assert p.view.eta == pytest.approx((10_000 - 1500) / 50, rel=0.02)


def test_resumed_records_count_as_done_and_an_unknown_total_has_no_eta():
    clock, engine = Clock(), FakeEngine()
    p = Progress(FakeSource(None), out=io.StringIO(), clock=clock, interval=0)
    engine.stats.skipped = 500
    _advance(engine, clock, 1, 100, 10)
    p(engine)
    assert p.view.done == 600 and p.view.total is None and p.view.eta is None and p.view.fraction is None
    p.source = FakeSource(1000)
    _advance(engine, clock, 1, 100, 10)
    p(engine)
    assert p.view.done == 700 and p.view.fraction == pytest.approx(0.7)


def test_provider_states_and_top_errors_with_their_text():
    clock, engine = Clock(), FakeEngine()
    out = io.StringIO()
    p = Progress(FakeSource(100), out=out, clock=clock, interval=0)
    st = engine.stats
    st.failed, st.rejected = 30, 5
    st.codes = Counter({"sms:111": 30, "rejected:invalid_number": 5})
    st.texts = {"sms:111": "Not enough credit", "rejected:invalid_number": "'+34 12' is not a valid phone number"}
    engine.lanes[0] = LaneStatus("sms", "nrs360", "sms", HALTED, time.time() - 65, "111", "Not enough credit",
                                 50, 50, 4, 0, 0)
    engine.lanes.append(LaneStatus("wa", "sendix", "whatsapp", THROTTLED, time.time() - 3, "429",
                                   "the provider answered 429: pace lowered", 100, 60, 0, 7, 1))
    clock.now = 1
    p(engine)
    text = out.getvalue()
    assert "halted 1:05 ago (111): Not enough credit" in text
    assert "429s 7" in text and "paced at 60/s" in text and "100 req/s" in text
    assert "errors: sms 111 x30: Not enough credit; rejected invalid_number x5: '+34 12' is not a valid" in text


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_redraws_in_place_with_colour_unless_no_color(monkeypatch):
    clock, engine = Clock(), FakeEngine()
    engine.lanes[0] = LaneStatus("sms", "nrs360", "sms", HALTED, 0.0, "auth", "authentication failed", 50, 50, 0,
                                 0, 0)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: no line cut short
    tty = FakeTTY()
    p = Progress(FakeSource(100), out=tty, clock=clock)
    assert p.tty and p.colour and p.interval == 0.5
    for _ in range(3):
        clock.now += 0.5
        p(engine)
    p(engine)  # called again at once: not redrawn (at most twice a second)
    out = tty.getvalue()
    assert out.count("authentication failed") == 3
    assert "\x1b[31m" in out  # a halted provider in red
    assert out.count("\x1b[1A\x1b[2K") >= 2  # the earlier block erased, line by line, before each redraw
    p.end()
    tail = tty.getvalue()[len(out):]
    assert "\x1b[?25h" in tail and tail.endswith("\x1b[1A\x1b[2K")  # cursor back, the block erased

    monkeypatch.setenv("NO_COLOR", "1")
    plain_tty = FakeTTY()
    p = Progress(FakeSource(100), out=plain_tty, clock=clock)
    p(engine)
    p.end()
    assert p.tty and not p.colour
    assert "authentication failed" in plain_tty.getvalue() and "\x1b[31m" not in plain_tty.getvalue()

    monkeypatch.setenv("TERM", "dumb")
    assert not Progress(FakeSource(100), out=FakeTTY(), clock=clock).tty  # plain lines, as off a terminal


def test_off_a_terminal_plain_lines_every_ten_seconds(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    clock, engine = Clock(), FakeEngine()
    out = io.StringIO()  # a pipe or a log file
    p = Progress(FakeSource(1000), out=out, clock=clock)
    for _ in range(41):  # 20 s of calls twice a second
        p(engine)
        _advance(engine, clock, 0.5, 10, 1)
    text = out.getvalue()
    assert "\x1b" not in text
    assert sum(1 for line in text.splitlines() if "done" in line) == 3  # at 0, 10 and 20 s


def test_clock_text():
    assert clock_text(None) == "--:--" and clock_text(-1) == "--:--"
    assert clock_text(0) == "0:00" and clock_text(89.6) == "1:30" and clock_text(3725) == "1:02:05"


# -- the sources' estimates ---------------------------------------------------------------------------

async def _first_then_rest(src: Source, skip: Any = None) -> tuple[int | None, int | None, int | None]:
    before = src.estimate_total()
    it = src.chunks(skip)
    await it.__anext__()
    first = src.estimate_total()
    async for _ in it:
        pass
    return before, first, src.estimate_total()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_file_total_is_estimated_from_bytes_read_and_exact_once_read(tmp_path: Path, fmt: str):
    path = tmp_path / f"a.{fmt}"
    n = 40_000  # about 2 MiB: more than one read block
    with open(path, "wb") as f:
        if fmt == "csv":
            f.write(b"phone,name\n")
        for i in range(n):
            name = "x" * (i % 40)  # lines of uneven length
            f.write(f"+3460{i:07d},{name}\n".encode() if fmt == "csv"
                    else orjson.dumps({"phone": f"+3460{i:07d}", "name": name}) + b"\n")
    assert path.stat().st_size > 1 << 20
    before, first, final = asyncio.run(_first_then_rest(FileSource(path, chunk_size=1000)))
    assert before is None
    assert first is not None and abs(first - n) <= 0.05 * n
    assert final == n

    # a resume skips finished records; they still count in the total
    before, first, final = asyncio.run(_first_then_rest(FileSource(path, chunk_size=1000), lambda seq: seq < 5000))
    assert final == n


def test_small_file_total_is_exact_from_the_first_chunk(tmp_path: Path):
    path = tmp_path / "a.csv"
    path.write_text("phone,name\n" + "".join(f"+3460{i:07d},n\n" for i in range(3000)) + "+34 12,bad\n")
    _, first, final = asyncio.run(_first_then_rest(FileSource(path, chunk_size=100)))
    assert first == final == 3001


def test_postgres_total_from_key_range_and_planner_estimate(dsn: str):
    t = pg_audience(dsn, 5000, step=3)
    _, first, final = run(_first_then_rest(pg_source(t, chunk=500, fetch=1000)))
    assert first is not None and abs(first - 5000) <= 250  # keys spread evenly: rows read / key range read
    assert final == 5000

    run(sql(dsn, f"ANALYZE {t}"))
    q = pg_source(query=f"SELECT id, phone, name FROM {t}", chunk=500, fetch=1000)  # a cursor: no key range
    _, first, final = run(_first_then_rest(q))
    assert first is not None and abs(first - 5000) <= 1000  # the planner's estimate (reltuples)
    assert final == 5000
