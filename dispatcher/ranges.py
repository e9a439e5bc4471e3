"""A run journal's line of sequence numbers, `3-7,9-9,12-13`, written by a numba kernel.

A batch split by encoding (or by anything else its provider keys on) holds lines that alternate every few
rows, so its runs are short and many; finding and formatting them in Python was a loop step a record
(~70 ns). Here numpy sorts and one kernel pass finds the runs and writes their digits.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _digits(v, out, pos):  # pragma: no cover - compiled
    """v (>= 0) in decimal at out[pos:]; the position after it."""
    if v == 0:
        out[pos] = 48
        return pos + 1
    k = 0
    t = v
    while t > 0:
        t //= 10
        k += 1
    for i in range(k - 1, -1, -1):
        out[pos + i] = 48 + v % 10
        v //= 10
    return pos + k


@njit(cache=True, nogil=True)
def _write(seqs, out):  # pragma: no cover - compiled
    n = seqs.shape[0]
    pos = 0
    start = seqs[0]
    for i in range(1, n + 1):
        if i < n and seqs[i] == seqs[i - 1] + 1:
            continue
        pos = _digits(start, out, pos)
        out[pos] = 45
        pos = _digits(seqs[i - 1], out, pos + 1)
        out[pos] = 44
        pos += 1
        if i < n:
            start = seqs[i]
    out[pos - 1] = 10  # the last comma: the line's end
    return pos


def line(seqs: list[int]) -> bytes:
    """The runs of `seqs` (distinct, non-negative, any order) as `start-end,...` and a newline."""
    a = np.sort(np.fromiter(seqs, dtype=np.int64, count=len(seqs)))
    out = np.empty(a.shape[0] * 42 + 1, dtype=np.uint8)  # two 19-digit numbers, a dash and a comma a run at most
    return out[:_write(a, out)].tobytes()
