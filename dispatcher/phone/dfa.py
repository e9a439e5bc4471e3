"""The metadata's regex dialect compiled to DFAs: digits, \\d, [classes with ranges], (?:groups), |, ?,
{n}, {n,m} (also *, + and capturing groups, unused today); anything else raises NotImplementedError.
A Thompson NFA of several patterns at once, then one subset construction whose states carry an answer
computed from which patterns accept. Knows nothing of phones: column.py gives it the patterns."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

ALL = (1 << 10) - 1  # a set of digits as a 10-bit mask


def parse(pattern: str) -> Any:
    pos = 0

    def alt() -> Any:
        nonlocal pos
        items = [cat()]
        while pos < len(pattern) and pattern[pos] == "|":
            pos += 1
            items.append(cat())
        return ("alt", items) if len(items) > 1 else items[0]

    def cat() -> Any:
        items = []
        while pos < len(pattern) and pattern[pos] not in "|)":
            items.append(repeat())
        return ("cat", items)

    def repeat() -> Any:
        nonlocal pos
        node = atom()
        while pos < len(pattern) and pattern[pos] in "?*+{":
            c = pattern[pos]
            if c == "{":
                end = pattern.index("}", pos)
                lo, _, hi = pattern[pos + 1:end].partition(",")
                bounds = (int(lo), int(hi) if hi else None) if "," in pattern[pos + 1:end] else (int(lo), int(lo))
                pos = end + 1
            else:
                bounds = {"?": (0, 1), "*": (0, None), "+": (1, None)}[c]
                pos += 1
            node = ("rep", node, *bounds)
        return node

    def atom() -> Any:
        nonlocal pos
        c = pattern[pos]
        if c.isdigit() and c.isascii():
            pos += 1
            return ("set", 1 << int(c))
        if pattern.startswith("\\d", pos):
            pos += 2
            return ("set", ALL)
        if c == "[":
            end = pattern.index("]", pos)
            body, mask, i = pattern[pos + 1:end], 0, 0
            while i < len(body):
                if body.startswith("\\d", i):
                    mask, i = ALL, i + 2
                elif i + 2 < len(body) and body[i + 1] == "-":
                    mask |= sum(1 << d for d in range(int(body[i]), int(body[i + 2]) + 1))
                    i += 3
                elif body[i].isdigit():
                    mask, i = mask | 1 << int(body[i]), i + 1
                else:
                    raise NotImplementedError(pattern)
            pos = end + 1
            return ("set", mask)
        if c == "(":
            pos += 3 if pattern.startswith("(?:", pos) else 1
            if pattern[pos] == "?":
                raise NotImplementedError(pattern)
            node = alt()
            if pattern[pos] != ")":
                raise NotImplementedError(pattern)
            pos += 1
            return node
        raise NotImplementedError(pattern)

    try:
        node = alt()
    except (IndexError, ValueError) as e:
        raise NotImplementedError(pattern) from e
    if pos != len(pattern):
        raise NotImplementedError(pattern)
    return node


class NFA:
    """Thompson NFA of several components (patterns), each with its own start and final states."""

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.moves: list[list[tuple[int, int]]] = []
        self.starts: list[int] = []
        self.finals: list[frozenset[int]] = []

    def _new(self) -> int:
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def _build(self, node: Any, start: int) -> int:
        kind = node[0]
        if kind == "set":
            end = self._new()
            self.moves[start].append((node[1], end))
            return end
        if kind == "cat":
            for item in node[1]:
                start = self._build(item, start)
            return start
        if kind == "alt":
            end = self._new()
            for item in node[1]:
                s = self._new()
                self.eps[start].append(s)
                self.eps[self._build(item, s)].append(end)
            return end
        _, inner, lo, hi = node
        for _ in range(lo):
            start = self._build(inner, start)
        if hi is None:
            loop = self._new()
            self.eps[start].append(loop)
            self.eps[self._build(inner, loop)].append(loop)
            return loop
        ends = [start]
        for _ in range(hi - lo):
            start = self._build(inner, start)
            ends.append(start)
        end = self._new()
        for e in ends:
            self.eps[e].append(end)
        return end

    def pattern(self, regex: str, prefix: bool = False) -> int:
        """A component matching `regex` whole (with `prefix`, any string it matches a prefix of)."""
        start = self._new()
        end = self._build(parse(regex), start)
        if prefix:
            self.moves[end].append((ALL, end))
        return self._component(start, [end])

    def lengths(self, lengths: tuple[int, ...]) -> int:
        """A component matching the digit strings of one of these lengths."""
        chain = [self._new() for _ in range(max(lengths) + 1)]
        for a, b in itertools.pairwise(chain):
            self.moves[a].append((ALL, b))
        return self._component(chain[0], [chain[n] for n in lengths])

    def _component(self, start: int, finals: list[int]) -> int:
        self.starts.append(start)
        self.finals.append(frozenset(finals))
        return len(self.starts) - 1

    def dfa(self, answer) -> tuple[np.ndarray, np.ndarray]:
        """(transitions [state, digit] -> state, flags [state]) of the subset construction, state 0
        the start; `answer(accepts)` gives a state's flags from the set of components accepting."""
        closure: list[frozenset[int] | None] = [None] * len(self.eps)
        # sets keep only the states that matter (with a move, or final): fewer and smaller sets
        finals = frozenset().union(*self.finals)
        kept = [bool(m) or i in finals for i, m in enumerate(self.moves)]

        def close(s: int) -> frozenset[int]:
            if closure[s] is None:
                seen, todo = {s}, [s]
                while todo:
                    for t in self.eps[todo.pop()]:
                        if t not in seen:
                            seen.add(t)
                            todo.append(t)
                closure[s] = frozenset(t for t in seen if kept[t])
            return closure[s]  # type: ignore[return-value]

        moves = self.moves

        class Step(dict):
            """NFA state -> the (kept, closed) states one digit leads to, computed on first use."""

            def __init__(self, digit: int) -> None:
                super().__init__()
                self.bit = 1 << digit

            def __missing__(self, s: int) -> frozenset[int]:
                v = self[s] = frozenset().union(*(close(t) for mask, t in moves[s] if mask & self.bit))
                return v

        steps = [Step(d) for d in range(10)]
        first = frozenset().union(*(close(s) for s in self.starts))
        ids = {first: 0}
        order = [first]
        rows: list[list[int]] = []
        for current in order:  # grows while iterating: breadth-first over the reachable sets
            row = []
            for step in steps:
                nxt = frozenset(itertools.chain.from_iterable(map(step.__getitem__, current)))
                if nxt not in ids:
                    ids[nxt] = len(order)
                    order.append(nxt)
                row.append(ids[nxt])
            rows.append(row)
        flags = [answer(frozenset(i for i, f in enumerate(self.finals) if not f.isdisjoint(st))) for st in order]
        return np.array(rows, dtype=np.int32), np.array(flags, dtype=np.uint8)
