"""engine/settle.py alone, without a loop: what each outcome makes of its message, and that every message
of a batch ends in exactly one place (a result, another try, deferred by a halt, deferred as spent)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.engine.settle import Policy, settle
from dispatcher.model import Message
from dispatcher.providers.base import Outcome, Verdict

FAIL, DEFER = Policy("sms", max_attempts=3), Policy("sms", max_attempts=3, spent_retries="defer")


def msgs(n: int, attempts: int = 1) -> list[Message]:
    return [Message(i, f"c{i}", f"+3460000000{i}", "hi", {}, attempts=attempts, parts=1, encoding="GSM-7")
            for i in range(n)]


def test_accepted_messages_become_sent_results_with_the_requests_latency():
    s = settle(msgs(2), [Outcome(Verdict.SENT, message_id="a", trace_id="t"),
                         Outcome(Verdict.SENT, message_id="b", trace_id="t")], FAIL, latency_ms=12.5, unsure=False)
    assert [(r.seq, r.status, r.message_id, r.latency_ms, r.provider, r.meta) for r in s.results] == \
        [(0, "sent", "a", 12.5, "sms", None), (1, "sent", "b", 12.5, "sms", None)]
    assert not (s.retry or s.halted or s.spent) and s.halt is None


def test_a_transient_failure_is_retried_until_its_attempts_run_out_then_fails_or_waits_for_its_owner():
    again = Outcome(Verdict.RETRY, code="500", error="server error")
    s = settle(msgs(1, attempts=2), [again], FAIL, latency_ms=3.0, unsure=False)
    assert [m.seq for m, _ in s.retry] == [0] and not s.results
    s = settle(msgs(1, attempts=3), [again], FAIL, latency_ms=3.0, unsure=False)
    assert [(r.status, r.code, r.error, r.attempts) for r in s.results] == [("failed", "500", "server error", 3)]
    s = settle(msgs(1, attempts=3), [again], DEFER, latency_ms=3.0, unsure=False)
    assert [m.seq for m in s.spent] == [0] and s.last_retry is again and not s.results


def test_an_answer_that_never_came_marks_the_message_and_its_result():
    m = msgs(1)
    s = settle(m, [Outcome(Verdict.SENT, message_id="x")], FAIL, latency_ms=None, unsure=True)
    assert m[0].ambiguous == 1 and s.results[0].meta == {"unanswered_attempts": 1} and s.results[0].latency_ms is None


def test_a_halt_defers_and_names_the_first_reason():
    first, second = Outcome(Verdict.HALT, code="103", error="bad credentials"), Outcome(Verdict.HALT, code="111")
    s = settle(msgs(3), [first, Outcome(Verdict.SENT, message_id="x"), second], FAIL, latency_ms=1.0, unsure=False)
    assert [m.seq for m in s.halted] == [0, 2] and s.halt is first and [r.seq for r in s.results] == [1]


def test_unreachable_on_the_last_attempt_halts_the_lane_unless_the_owner_retries():
    gone = Outcome(Verdict.RETRY, code="unreachable", error="connection refused on 127.0.0.1:9")
    s = settle(msgs(1, attempts=3), [gone], FAIL, latency_ms=None, unsure=False)
    assert [m.seq for m in s.halted] == [0] and s.halt is not None and s.halt.code == "unreachable"
    assert s.halt.verdict == Verdict.HALT and s.halt.error == gone.error
    s = settle(msgs(1, attempts=3), [gone], DEFER, latency_ms=None, unsure=False)
    assert [m.seq for m in s.spent] == [0] and s.halt is None


def test_reauthentication_is_no_attempt_and_is_asked_twice_at_most():
    m = msgs(1, attempts=1)
    ask = Outcome(Verdict.REAUTH, code="401")
    for reauths in (1, 2):
        s = settle(m, [ask], FAIL, latency_ms=1.0, unsure=False)
        assert [x for x, _ in s.retry] == m and m[0].reauths == reauths and m[0].attempts == 0
        m[0].attempts += 1  # sent again
    s = settle(m, [ask], FAIL, latency_ms=1.0, unsure=False)
    assert [(r.status, r.code) for r in s.results] == [("failed", "401")]


def test_a_refused_message_is_rejected_with_the_providers_code():
    s = settle(msgs(1), [Outcome(Verdict.REJECTED, code="102", error="no valid recipients")], FAIL,
               latency_ms=2.0, unsure=False)
    assert [(r.status, r.code, r.error) for r in s.results] == [("rejected", "102", "no valid recipients")]


verdicts = st.sampled_from([Verdict.SENT, Verdict.RETRY, Verdict.REAUTH, Verdict.HALT, Verdict.REJECTED,
                            Verdict.FAILED])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(verdicts, st.integers(1, 4), st.integers(0, 2), st.booleans()), max_size=12),
       st.booleans(), st.booleans())
def test_every_message_ends_in_exactly_one_place(cases, unsure, defer):
    batch = [Message(i, str(i), "+34600000000", "hi", {}, attempts=a, reauths=r) for i, (_, a, r, _) in enumerate(cases)]
    outcomes = [Outcome(v, code="unreachable" if far else "x") for v, _, _, far in cases]
    s = settle(batch, outcomes, DEFER if defer else FAIL, latency_ms=1.0, unsure=unsure)
    places = [r.seq for r in s.results] + [m.seq for m, _ in s.retry] + [m.seq for m in s.halted] + \
        [m.seq for m in s.spent]
    assert sorted(places) == list(range(len(cases)))
    assert (s.halt is None) == (not s.halted) and (s.last_retry is None) == (not s.spent)
