"""Messages into requests for one provider: grouped by the provider's batch key (one sender, one
content...), each group cut at that key's batch limit. Pure and synchronous: it hands back the batches
that are full and keeps the rest open until `flush`, so the lane decides when a short batch may go.

Fresh batches of one content stay a `Batch` (sliced and joined by columns); anything else is grouped
as a list of messages."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from ..model import Batch, Message
from ..providers.base import Provider


class Batcher:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.single = provider.batch_size == 1  # every message is a request of its own
        self._groups: dict[Hashable, Sequence[Message]] = {}  # a fresh Batch while it can stay one, else a list
        self._sizes: dict[Hashable, int] = {}  # batch limit of each open group

    @property
    def open(self) -> bool:
        """Some messages wait in a group that is not full yet."""
        return bool(self._groups)

    def add(self, msgs: Sequence[Message]) -> list[Sequence[Message]]:
        """`msgs` into their groups; the batches now full, in order."""
        if not msgs:
            return []
        if self.single:
            return [[m] for m in msgs]
        keys = self.provider.batch_keys(msgs)
        first = keys[0]
        if keys.count(first) == len(keys):  # a campaign's chunk: one group
            return self._group(first, msgs)
        by_key: dict[Hashable, list[int]] = {}
        for i, k in enumerate(keys):
            g = by_key.get(k)
            if g is None:
                by_key[k] = [i]
            else:
                g.append(i)
        whole = type(msgs) is Batch and msgs.fresh
        full: list[Sequence[Message]] = []
        for k, idx in by_key.items():
            full += self._group(k, msgs.take(idx) if whole else [msgs[i] for i in idx])  # type: ignore[attr-defined]
        return full

    def _group(self, key: Hashable, msgs: Sequence[Message]) -> list[Sequence[Message]]:
        g = self._groups.get(key)
        if g is None:
            g = msgs if type(msgs) is Batch and msgs.fresh else list(msgs)
            self._sizes[key] = self.provider.batch_limit(key)
        elif type(g) is Batch and type(msgs) is Batch and g.joins(msgs):
            g = g + msgs
        else:
            g = [*g, *msgs]
        size = self._sizes[key]
        n = len(g)
        if n < size:
            self._groups[key] = g
            return []
        cut = g.cut if type(g) is Batch else (lambda i, j: g[i:j])  # type: ignore[attr-defined,index]
        full = [cut(i, i + size) for i in range(0, n - size + 1, size)]
        rest = n % size
        if rest:
            self._groups[key] = cut(n - rest, n)
        else:
            self._groups.pop(key, None)
            del self._sizes[key]
        return full

    def flush(self) -> list[Sequence[Message]]:
        """Every open group, short as it is (the source is done, the engine at its in-flight limit...)."""
        groups = list(self._groups.values())
        self._groups.clear()
        self._sizes.clear()
        return groups
