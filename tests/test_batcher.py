"""The batcher alone, without a loop: groups by the provider's batch key, cuts at its batch limit, keeps
the remainder open until a flush, and never loses or repeats a message."""

from __future__ import annotations

from enginekit import FakeProvider
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.engine.batcher import Batcher
from dispatcher.model import Batch, Message, column


def messages(seqs: range | list[int]) -> list[Message]:
    return [Message(s, str(s), f"u{s}@example.com", "hi", {}) for s in seqs]


def seqs(batches) -> list[list[int]]:
    return [column(b, "seq") for b in batches]


def test_full_batches_go_at_once_and_the_rest_waits_for_a_flush():
    b = Batcher(FakeProvider(batch=5))
    assert seqs(b.add(messages(range(1, 13)))) == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert b.open
    assert seqs(b.add(messages(range(13, 16)))) == [[11, 12, 13, 14, 15]]  # the open group filled up
    assert not b.open
    assert b.flush() == []


def test_a_flush_sends_each_key_short_and_leaves_nothing_open():
    b = Batcher(FakeProvider(batch=5, split=True))  # odd and even seqs never share a request
    assert seqs(b.add(messages(range(1, 8)))) == []
    assert sorted(seqs(b.flush())) == [[1, 3, 5, 7], [2, 4, 6]]
    assert not b.open


def test_one_a_request_when_the_batch_size_is_one():
    b = Batcher(FakeProvider(batch=1))
    assert seqs(b.add(messages([4, 2, 9]))) == [[4], [2], [9]]
    assert not b.open


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=12), st.integers(1, 6), st.booleans())
def test_every_message_goes_out_once_in_batches_within_the_limit(sizes, limit, split):
    b = Batcher(FakeProvider(batch=limit, split=split))
    out, seq = [], 1
    for n in sizes:
        out += b.add(messages(range(seq, seq + n)))
        seq += n
    out += b.flush()
    sent = [s for batch in seqs(out) for s in batch]
    assert sorted(sent) == list(range(1, seq))
    assert all(1 <= len(batch) <= limit for batch in out)
    assert all(len({s % 2 for s in batch}) == 1 for batch in seqs(out)) or not split


def fresh(seqs: range) -> Batch:
    n = len(seqs)
    return Batch(list(seqs), [str(s) for s in seqs], [f"u{s}@example.com" for s in seqs], ["hi"] * n, [{}] * n,
                 [{}] * n, ["GSM-7"] * n, [1] * n, [False] * n, "a", "email", None)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 14), st.booleans()), max_size=10), st.integers(1, 6), st.booleans())
def test_chunks_as_fresh_batches_or_lists_cut_alike_in_order(chunks, limit, split):
    """A chunk arrives as a fresh Batch (a campaign's, cut and joined by columns) or a list of messages:
    the batches are the same, each key's messages in their order, every batch full but each key's last."""
    b = Batcher(FakeProvider(batch=limit, split=split))
    out, seq = [], 1
    for n, as_batch in chunks:
        out += b.add(fresh(range(seq, seq + n)) if as_batch else messages(range(seq, seq + n)))
        seq += n
    done = seqs(out)
    rest = seqs(b.flush())
    assert not b.open
    for key in ({s % 2 for s in range(1, seq)} if split else {None}):
        mine = [x for x in done + rest if key is None or x[0] % 2 == key]
        flat = [s for x in mine for s in x]
        assert flat == [s for s in range(1, seq) if key is None or s % 2 == key]  # once each, in order
        assert all(len(x) == limit for x in mine[:-1]) and 1 <= len(mine[-1]) <= limit if mine else True
    assert all(len(x) == limit for x in done)  # what add hands back is full; only a flush is short
