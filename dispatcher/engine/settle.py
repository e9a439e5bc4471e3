"""What a request's outcomes mean for its messages, decided without a loop, a ledger or a lane.

`settle` takes a batch, one `Outcome` a message and the lane's `Policy`, and says what becomes of each:
a terminal result (sent, failed, rejected), another try (a retry or a re-authentication), deferred because
the provider halted, or deferred because its retries ran out while its owner retries later (the daemon's
outbox). The lane applies the `Settlement` (results to the ledger, deferrals, the halt, the retries'
timers); this module only decides, and updates each message's own counters on the way (an unanswered
attempt, a re-authentication), which is the state the next decision reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..model import FAILED, REJECTED, SENT, Message, Result
from ..providers.base import Outcome, Verdict
from .answers import message_meta

SpentRetries = Literal["fail", "defer"]  # a record whose retries ran out: fails, or waits for its owner


@dataclass(frozen=True, slots=True)
class Policy:
    """What a lane's settling needs to know of it: its alias, how many tries a message gets, what becomes
    of a message whose tries ran out on a transient failure."""

    alias: str
    max_attempts: int
    spent_retries: SpentRetries = "fail"


@dataclass(slots=True)
class Settlement:
    """Every message of the batch in exactly one of: `results`, `retry`, `halted`, `spent`."""

    results: list[Result] = field(default_factory=list)
    retry: list[tuple[Message, Outcome]] = field(default_factory=list)  # to try again (RETRY or REAUTH)
    halted: list[Message] = field(default_factory=list)  # deferred: the provider cannot take anything now
    halt: Outcome | None = None  # why, when some message halted the lane
    spent: list[Message] = field(default_factory=list)  # deferred: retries ran out, the owner retries later
    last_retry: Outcome | None = None  # the transient failure the spent ones met last


def settle(batch: Sequence[Message], outcomes: Sequence[Outcome], policy: Policy, *, latency_ms: float | None,
           unsure: bool) -> Settlement:
    """The batch's outcomes, in its order, as a Settlement. `latency_ms`: the request's (None when it got no
    answer); `unsure`: the request may have reached the provider unanswered (each message notes it)."""
    out = Settlement()
    max_attempts, alias = policy.max_attempts, policy.alias
    defer_spent = policy.spent_retries == "defer"
    for m, o in zip(batch, outcomes, strict=True):
        v = o.verdict
        if unsure:
            m.ambiguous += 1
        if v == Verdict.SENT:
            out.results.append(Result(seq=m.seq, id=m.rid, to=m.to, provider=alias, status=SENT,
                                      message_id=o.message_id, parts=m.parts or None, encoding=m.encoding or None,
                                      attempts=m.attempts, latency_ms=latency_ms, trace_id=o.trace_id,
                                      channel=m.channel, transliterated=m.transliterated, meta=message_meta(m, o)))
            continue
        if o.code == "unreachable" and m.attempts >= max_attempts and not defer_spent:
            v, o = Verdict.HALT, Outcome(Verdict.HALT, code="unreachable", error=o.error)  # defer, and halt
        if v == Verdict.HALT:
            out.halt = out.halt or o
            out.halted.append(m)
            continue
        if v == Verdict.REAUTH:
            m.attempts -= 1  # asked to authenticate again: that answer is no try of the message
            if m.reauths < 2:
                m.reauths += 1
                out.retry.append((m, o))
                continue
            v = Verdict.FAILED
        if v == Verdict.RETRY:
            if m.attempts < max_attempts:
                out.retry.append((m, o))
                continue
            if defer_spent:
                out.spent.append(m)
                out.last_retry = o
                continue
        out.results.append(Result(seq=m.seq, id=m.rid, to=m.to, provider=alias,
                                  status=REJECTED if v == Verdict.REJECTED else FAILED, parts=m.parts or None,
                                  encoding=m.encoding or None, code=o.code, error=o.error, attempts=m.attempts,
                                  latency_ms=latency_ms, trace_id=o.trace_id, channel=m.channel,
                                  transliterated=m.transliterated, meta=message_meta(m, o)))
    return out
