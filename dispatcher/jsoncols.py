"""JSON text assembled a column at a time: rows of JSON made from whole columns' JSON with no Python
object a row.

A block of results (or a request's substitutions) is a few columns that vary and many that do not. Each
varying column is serialised by one `orjson.dumps` of its list (C, no object a value), a numba kernel finds
where each top-level value of that array starts and ends (strings, with their escapes, numbers, literals,
nested objects and arrays), and a second kernel copies, row by row, the constant pieces and each column's
value between them into one buffer. The per-row `%`-format and the per-value pieces it needed were most of a
result line's cost (~0.5 us a row of 16 fields against ~0.1 here).

numba is imported with this module: importers that may never need it (a sink of a few rows) import it late.
"""

from __future__ import annotations

import numpy as np
import orjson
from numba import njit


@njit(cache=True, nogil=True)
def _bounds(buf, base, row, starts, ends):  # pragma: no cover - compiled
    """Fill starts[row, i] / ends[row, i] with the offsets (plus `base`) of each top-level value of the JSON
    array in `buf`; the number of values found (the caller compares it with the rows it expects; one more
    than fits is reported as such, not written). A string is skipped by a tight loop to its closing quote."""
    n = ends.shape[1]
    size = buf.shape[0]
    found = 0
    depth = 0  # nesting inside the array's values
    start = 1
    i = 1
    while i < size:
        b = buf[np.uint64(i)]
        if b == 34:  # a string: to its closing quote, a backslash escaping the byte after it
            i += 1
            while i < size:
                c = buf[np.uint64(i)]
                if c == 92:
                    i += 2
                elif c == 34:
                    break
                else:
                    i += 1
        elif b == 91 or b == 123:  # [ {
            depth += 1
        elif depth > 0 and (b == 93 or b == 125):  # ] }
            depth -= 1
        elif depth == 0 and (b == 44 or b == 93):  # the , or ] after a top-level value
            if i > start:
                if found == n:
                    return n + 1
                starts[row, found] = base + start
                ends[row, found] = base + i
                found += 1
            start = i + 1
        i += 1
    return found


@njit(cache=True, nogil=True)
def _fill(data, starts, ends, consts, cuts, out):  # pragma: no cover - compiled
    """Row by row: consts[cuts[0]:cuts[1]], column 0's value, consts[cuts[1]:cuts[2]], ..., the last piece.
    uint64 indices and while loops (numba then skips its negative-index wraparound and range objects: a
    quarter faster than slices or ranges here)."""
    k, n = starts.shape
    one = np.uint64(1)
    pos = np.uint64(0)
    for i in range(n):
        for j in range(k + 1):
            a, b = np.uint64(cuts[j]), np.uint64(cuts[j + 1])
            while a < b:
                out[pos] = consts[a]
                pos += one
                a += one
            if j < k:
                s, e = np.uint64(starts[j, i]), np.uint64(ends[j, i])
                while s < e:
                    out[pos] = data[s]
                    pos += one
                    s += one
    return pos


def rows(pieces: list[bytes], columns: list[bytes], n: int) -> memoryview:
    """n rows, row i = pieces[0] + columns[0][i] + pieces[1] + ... + columns[-1][i] + pieces[-1], where
    each of `columns` is the JSON array (compact, as orjson writes it) of n values and `pieces` holds one
    more piece than there are columns. Raises ValueError when a column does not hold n values. The bytes
    are the kernel's buffer itself, not a copy (a block of result lines is ~250 kB, and a file's gathering
    write reads any buffer: 287 against 272 ns a result line written)."""
    assert len(pieces) == len(columns) + 1
    data = np.frombuffer(b"".join(columns), dtype=np.uint8)
    starts = np.empty((len(columns), n), dtype=np.int64)
    ends = np.empty((len(columns), n), dtype=np.int64)
    base = 0
    for j, col in enumerate(columns):
        found = _bounds(data[base:base + len(col)], base, j, starts, ends)
        if found != n:
            raise ValueError(f"a column holds {found} values, not {n}")
        base += len(col)
    consts = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    cuts = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=cuts[1:])
    out = np.empty(n * len(consts) + int((ends - starts).sum()), dtype=np.uint8)
    _fill(data, starts, ends, consts, cuts, out)
    return out.data


def objects(keys: list[str], columns: list[list[object]]) -> bytes:
    """The JSON array of the n objects {keys[0]: columns[0][i], ...}, byte for byte `orjson.dumps` of those
    dicts, from one orjson call a column: no dict a row made, filled and serialised."""
    n = len(columns[0])
    pieces = [b"{" + orjson.dumps(keys[0]) + b":"]
    pieces += [b"," + orjson.dumps(k) + b":" for k in keys[1:]]
    pieces.append(b"},")
    body = rows(pieces, [orjson.dumps(col) for col in columns], n)
    return b"".join((b"[", body[:-1], b"]"))  # one copy of the rows
