"""Engine behaviour without HTTP: a scripted fake provider drives the real engine in milliseconds.

What must hold for any script: every record that enters ends with exactly one terminal result,
or is deferred (its provider halted), or is left unsent by a stop; never two of these, never none.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from enginekit import DROP, REFUSED, FakeProvider, FakeTransport, ListSource, MemorySink, Recorder, engine
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(coro)


def by_seq(sink: MemorySink) -> dict[int, object]:
    seqs = Counter(r.seq for r in sink.results)
    assert not seqs or max(seqs.values()) == 1, "a record with two results"
    return {r.seq: r for r in sink.results}


def all_sent(seqs, n):
    return ["SENT"] * len(seqs)


def test_transient_failures_are_retried_until_sent(tmp_path):
    t = FakeTransport(lambda seqs, n: ["RETRY"] * len(seqs) if n < 4 else ["SENT"] * len(seqs))
    sink = MemorySink()
    st_ = run(engine({"a": FakeProvider()}, {"a": t}, ListSource(20), sink, tmp_path).run())
    results = by_seq(sink)
    assert len(results) == 20 and {r.status for r in results.values()} == {"sent"}
    assert st_.retried == 20 and st_.retries == 4 and max(r.attempts for r in results.values()) == 2


def test_retries_run_out_into_a_failure_with_the_providers_code(tmp_path):
    t = FakeTransport(lambda seqs, n: ["RETRY"] * len(seqs))
    sink = MemorySink()
    p = FakeProvider(max_attempts=3, circuit_failures=1000)
    st_ = run(engine({"a": p}, {"a": t}, ListSource(10), sink, tmp_path).run())
    assert {(r.status, r.code, r.attempts) for r in sink.results} == {("failed", "retry", 3)}
    assert st_.failed == 10 and st_.deferred == 0


def test_reauth_logs_in_again_and_does_not_count_an_attempt(tmp_path):
    t = FakeTransport(lambda seqs, n: ["REAUTH"] * len(seqs) if n == 0 else ["SENT"] * len(seqs))
    p = FakeProvider(batch=5, concurrency=1)
    sink = MemorySink()
    run(engine({"a": p}, {"a": t}, ListSource(5), sink, tmp_path).run())
    assert p.logins == 2
    assert [(r.status, r.attempts) for r in sink.results] == [("sent", 1)] * 5


def test_a_halt_defers_the_rest_and_a_resume_sends_exactly_them(tmp_path):
    credit = {"left": 12}

    def script(seqs, n):
        out = []
        for _ in seqs:
            out.append("SENT" if credit["left"] > 0 else "HALT")
            credit["left"] -= 1
        return out

    t = FakeTransport(script)
    sink, events = MemorySink(), Recorder()
    p = FakeProvider(batch=4, concurrency=1)
    e = engine({"a": p}, {"a": t}, ListSource(40), sink, tmp_path, events)
    st_ = run(e.run())
    sent = by_seq(sink)
    assert len(sent) == 12 and st_.deferred == st_.read - 12 and st_.failed == 0
    assert e.halted_all and st_.read < 40  # its only provider halted: the rest is left unread, for a resume
    assert sorted(events.deferred_seqs) == sorted(set(range(1, st_.read + 1)) - set(sent))
    assert events.halts == [("a", "halt")] and st_.halts == {"a": ("halt", "halt")}
    assert len(t.requests) == 4  # three sent, one halted: nothing after the halt

    credit["left"] = 1000  # topped up: the resume sends exactly the deferred records
    t2 = FakeTransport(script)
    st2 = run(engine({"a": FakeProvider(batch=4, concurrency=1)}, {"a": t2}, ListSource(40), sink, tmp_path).run())
    assert st2.sent == 28 and st2.skipped == 12 and st2.in_doubt == 0
    assert sorted(by_seq(sink)) == list(range(1, 41))
    assert Counter(t.accepted + t2.accepted) == Counter(range(1, 41))  # each accepted once


def test_failed_authentication_defers_everything_and_stops_reading(tmp_path):
    p = FakeProvider()
    p.login_fails = True
    t = FakeTransport(all_sent)
    sink, events = MemorySink(), Recorder()
    e = engine({"a": p}, {"a": t}, ListSource(500, chunk=16), sink, tmp_path, events)
    st_ = run(e.run())
    assert sink.results == [] and t.requests == []
    assert e.halted_all and st_.read < 500 and st_.deferred == st_.read  # the rest was not even read
    assert events.halts == [("a", "auth")]


def test_revive_brings_a_halted_lane_back(tmp_path):
    halt = {"on": True}
    t = FakeTransport(lambda seqs, n: ["HALT" if halt["on"] else "SENT"] * len(seqs))
    sink, events = MemorySink(), Recorder()
    p = FakeProvider(batch=2, concurrency=1)

    async def go():
        e = engine({"a": p}, {"a": t}, ListSource(6), sink, tmp_path, events, stop_when_halted=False)
        task = asyncio.create_task(e.run())
        while not e.halted():
            await asyncio.sleep(0.001)
        assert e.snapshot()[0].state == "halted"
        halt["on"] = False
        assert await e.revive("a")
        assert e.halted() == {} and e.snapshot()[0].state == "sending"
        return await task, e

    st_, _ = run(go())
    assert events.revivals == ["a"] and st_.deferred + st_.sent == 6


def test_an_unreachable_provider_pauses_then_defers(tmp_path):
    t = FakeTransport(lambda seqs, n: REFUSED)
    p = FakeProvider(batch=5, concurrency=2, max_attempts=100, circuit_failures=2, circuit_cooldown=0.01,
                     give_up_after=0.05)
    sink = MemorySink()
    st_ = run(engine({"a": p}, {"a": t}, ListSource(30), sink, tmp_path).run())
    assert sink.results == [] and st_.deferred == 30
    assert st_.halts["a"][0] == "unreachable"
    assert "connection refused on 127.0.0.1:9" in st_.halts["a"][1]  # the OS error and where, not "no answer"
    assert len(t.requests) < 30 * 100 / 5  # the circuit paused instead of burning every attempt


def test_failover_takes_only_what_the_first_provider_never_held(tmp_path):
    a = FakeProvider("a", batch=5, concurrency=1, max_attempts=100, circuit_failures=1, circuit_cooldown=0.05,
                     give_up_after=60, failover="b")
    b = FakeProvider("b", batch=5, concurrency=1)
    ta, tb = FakeTransport(lambda seqs, n: REFUSED), FakeTransport(all_sent)
    sink = MemorySink()
    run(engine({"a": a, "b": b}, {"a": ta, "b": tb}, ListSource(20), sink, tmp_path).run())
    results = by_seq(sink)
    assert len(results) == 20 and {r.provider for r in results.values()} == {"b"}
    assert all((r.meta or {}).get("failover_from") == "a" for r in results.values())


def test_a_stop_leaves_the_rest_for_a_resume_without_duplicates(tmp_path):
    t = FakeTransport(all_sent, latency=0.002)
    sink = MemorySink()

    async def go():
        e = engine({"a": FakeProvider(batch=2, concurrency=2)}, {"a": t}, ListSource(200), sink, tmp_path)
        task = asyncio.create_task(e.run())
        while len(sink.results) < 20:
            await asyncio.sleep(0.001)
        e.stop()
        return await task, e

    st_, e = run(go())
    assert e.interrupted and st_.unsent > 0 and st_.sent + st_.unsent == st_.read
    t2 = FakeTransport(all_sent)
    run(engine({"a": FakeProvider(batch=2, concurrency=2)}, {"a": t2}, ListSource(200), sink, tmp_path).run())
    assert sorted(by_seq(sink)) == list(range(1, 201))
    assert Counter(t.accepted + t2.accepted) == Counter(range(1, 201))


def test_records_dropped_on_the_wire_are_in_doubt_and_counted(tmp_path):
    t = FakeTransport(lambda seqs, n: DROP if n % 3 == 0 else ["SENT"] * len(seqs))
    sink = MemorySink()
    st_ = run(engine({"a": FakeProvider(circuit_failures=1000)}, {"a": t}, ListSource(30), sink, tmp_path).run())
    results = by_seq(sink)
    assert len(results) == 30
    dupes = sum(n - 1 for n in Counter(t.accepted).values())
    assert 0 < dupes <= st_.ambiguous
    flagged = {r.seq for r in results.values() if (r.meta or {}).get("unanswered_attempts")}
    assert {s for s, n in Counter(t.accepted).items() if n > 1} <= flagged


VERDICTS = ["SENT", "RETRY", "FAILED", "REJECTED", "HALT", "REAUTH", DROP, REFUSED]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(st.sampled_from(VERDICTS), min_size=1, max_size=40), n=st.integers(1, 30),
       batch=st.integers(1, 6), concurrency=st.integers(1, 3), stop_after=st.one_of(st.none(), st.integers(0, 20)),
       split=st.booleans())
@example(answers=["FAILED"], n=8, batch=6, concurrency=1, stop_after=8, split=False)  # a stop while the lanes stop: hung once
def test_every_record_ends_once_whatever_the_answers(tmp_path_factory, answers, n, batch, concurrency, stop_after,
                                                      split):
    """Any sequence of answers: each record gets one result, or is deferred, or (after a stop) left unsent.
    `split`: the provider's batch keys split each chunk's Batch in two (odd and even seqs)."""
    state = tmp_path_factory.mktemp("prop")

    def script(seqs, k):
        a = answers[k % len(answers)]
        if a in (DROP, REFUSED):
            return a
        return [answers[(k + i) % len(answers)] if answers[(k + i) % len(answers)] not in (DROP, REFUSED) else a
                for i in range(len(seqs))]

    t = FakeTransport(script)
    sink, events = MemorySink(), Recorder()
    p = FakeProvider(batch=batch, concurrency=concurrency, max_attempts=3, circuit_failures=3,
                     circuit_cooldown=0.001, give_up_after=0.005, split=split)

    async def go():
        e = engine({"a": p}, {"a": t}, ListSource(n, chunk=4), sink, state, events)
        task = asyncio.create_task(e.run())
        if stop_after is not None:
            while len(sink.results) < stop_after and not task.done():
                await asyncio.sleep(0)
            e.stop()
        return await asyncio.wait_for(task, 20), e

    st_, e = run(go())
    results = by_seq(sink)
    deferred = Counter(events.deferred_seqs)
    assert not deferred or max(deferred.values()) == 1, "deferred twice"
    assert not set(results) & set(deferred), "a record with a result and deferred"
    assert st_.deferred == len(deferred) and st_.done == len(results)
    assert st_.done + st_.deferred + st_.unsent == st_.read, "a record neither settled, deferred nor left"
    if stop_after is None and not e.halted_all:
        assert st_.read == n and st_.unsent == 0
        assert set(results) | set(deferred) == set(range(1, n + 1))
    assert e.in_flight == 0
    assert all(len(r) <= batch for r in t.requests)
    if split:
        assert all(len({s % 2 for s in r}) == 1 for r in t.requests), "odd and even seqs in one request"
