"""numba kernels: classify a whole chunk of texts in one call.

Input is every text of the chunk as one array of code points (uint8, uint16 or uint32: the
narrowest that holds the chunk, see batch.to_codepoints) plus the length of each text; output
is, per text, the encoding (0 GSM-7, 1 GSM-PT, 2 UCS-2), the units (septets or UTF-16 code
units), the number of parts to declare, and whether transliteration was applied. The rules are
those of `reference.py`, which the tests compare against on random text.

The hot loop is one table load and one add per character: each table entry packs three counters
(septets in bits 0-20, "not encodable" in bits 21-41, "extension character" in bits 42-62), so a
text is classified by summing its entries. Code points past the table are clamped onto its last
entry, which is "not encodable". Texts of 2**20 characters or more (which could overflow a field)
take a plain loop instead. The common case (a GSM-7 text that needs no greedy packing) is
decided inside `classify`'s loop; every other text goes through `_measure`.

Lookup tables are module-level numpy arrays passed into the kernels as arguments (not globals
frozen into the machine code), so the on-disk cache (cache=True) stays valid and small.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .tables import (
    GSM7_CAPACITY,
    GSM7_SEPTETS,
    PT_CAPACITY_DECLARED,
    PT_SEPTETS,
    TRANSLITERATION,
    UCS2_CAPACITY,
)

BAD = 1 << 21
EXT = 1 << 42
FIELD = (1 << 21) - 1
LONG_TEXT = 1 << 20


def _packed_table(septets: dict[str, tuple[int, ...]], size: int) -> np.ndarray:
    table = np.full(size, BAD, dtype=np.int64)
    for ch, sept in septets.items():
        table[ord(ch)] = len(sept) | (EXT if len(sept) == 2 else 0)
    return table


def _tables() -> tuple[np.ndarray, np.ndarray]:
    # one slot past the highest code point of either alphabet: the clamp target, "not encodable"
    size = max(max(map(ord, GSM7_SEPTETS)), max(map(ord, PT_SEPTETS)), 255) + 2
    return _packed_table(GSM7_SEPTETS, size), _packed_table(PT_SEPTETS, size)


def _trans_tables() -> tuple[np.ndarray, np.ndarray, int]:
    """(index, data, longest replacement): index[cp] = offset << 4 | length into data, -1 = unmapped."""
    index = np.full(max(map(ord, TRANSLITERATION)) + 1, -1, dtype=np.int32)
    data: list[int] = []
    for ch, repl in TRANSLITERATION.items():
        assert len(repl) < 16
        index[ord(ch)] = len(data) << 4 | len(repl)
        data.extend(map(ord, repl))
    longest = max(len(r) for r in TRANSLITERATION.values())
    return index, np.array(data, dtype=np.uint32), max(longest, 1)


GSM7_TABLE, PT_TABLE = _tables()
TRANS_INDEX, TRANS_DATA, TRANS_MAX = _trans_tables()

G7_SINGLE, G7_CONCAT = GSM7_CAPACITY
PT_SINGLE, PT_CONCAT = PT_CAPACITY_DECLARED
U_SINGLE, U_CONCAT = UCS2_CAPACITY


# Indices are uint64 inside the loops: numba then skips its negative-index wraparound check,
# which otherwise costs a third of the time. (uint64 mixed with int64 arithmetic gives float64
# in numba, so sizes are converted back to int64 before any arithmetic.)


@njit(cache=True, nogil=True)
def _scan(cps, s, e, table):  # pragma: no cover - compiled
    """(septets, not-encodable count, extension count) of cps[s:e]."""
    last = np.uint64(table.shape[0] - 1)
    if np.int64(e - s) < LONG_TEXT:
        acc = 0
        for i in range(s, e):
            acc += table[min(np.uint64(cps[i]), last)]
        return acc & FIELD, (acc >> 21) & FIELD, acc >> 42
    septets = 0
    bad = 0
    ext = 0
    for i in range(s, e):
        v = table[min(np.uint64(cps[i]), last)]
        septets += v & FIELD
        bad += (v >> 21) & FIELD
        ext += v >> 42
    return septets, bad, ext


@njit(cache=True, nogil=True)
def _pack(cps, s, e, table, cap):  # pragma: no cover - compiled
    """Greedy part count, parts of `cap` septets, never splitting an escape pair."""
    last = np.uint64(table.shape[0] - 1)
    parts = 1
    used = 0
    for i in range(s, e):
        w = table[min(np.uint64(cps[i]), last)] & FIELD
        if used + w > cap:
            parts += 1
            used = w
        else:
            used += w
    return parts


@njit(cache=True, nogil=True)
def _pack_utf16(cps, s, e, cap):  # pragma: no cover - compiled
    """Greedy part count in UTF-16 code units, never splitting a surrogate pair."""
    parts = 1
    used = 0
    for i in range(s, e):
        w = 2 if cps[i] > 0xFFFF else 1
        if used + w > cap:
            parts += 1
            used = w
        else:
            used += w
    return parts


@njit(cache=True, nogil=True)
def _measure(cps, s, e, gsm_table, pt_table, gsm_pt):  # pragma: no cover - compiled
    """(encoding, units, declared parts) of the text cps[s:e] (s, e: uint64)."""
    septets, bad, ext = _scan(cps, s, e, gsm_table)
    if bad == 0:
        if septets <= G7_SINGLE:
            return 0, septets, 1
        if ext == 0:
            return 0, septets, (septets + G7_CONCAT - 1) // G7_CONCAT
        return 0, septets, _pack(cps, s, e, gsm_table, G7_CONCAT)
    if gsm_pt:
        septets, bad, ext = _scan(cps, s, e, pt_table)
        if bad == 0:
            if septets <= PT_SINGLE:
                return 1, septets, 1
            if ext == 0:
                return 1, septets, (septets + PT_CONCAT - 1) // PT_CONCAT
            return 1, septets, _pack(cps, s, e, pt_table, PT_CONCAT)
    astral = 0
    for i in range(s, e):
        if cps[i] > 0xFFFF:
            astral += 1
    units = np.int64(e - s) + astral
    if units <= U_SINGLE:
        return 2, units, 1
    if astral == 0:
        return 2, units, (units + U_CONCAT - 1) // U_CONCAT
    return 2, units, _pack_utf16(cps, s, e, U_CONCAT)


@njit(cache=True, nogil=True)
def classify(
    cps, lens, gsm_table, pt_table, trans_index, trans_data, trans_max, gsm_pt, translit
):  # pragma: no cover
    """Classify every text of a chunk.

    cps: code points of all texts, concatenated (uint8, uint16 or uint32); lens: int64 length of
    each text. Returns (encoding uint8, units int32, parts int32, transliterated bool) arrays, one
    entry per text. With translit, a text that is not GSM-7 is measured again with the
    transliteration table applied, and that result is kept when it helps (same rule as
    reference.choose).
    """
    n = lens.shape[0]
    enc = np.empty(n, np.uint8)
    units = np.empty(n, np.int32)
    parts = np.empty(n, np.int32)
    trans = np.zeros(n, np.bool_)
    longest = 0
    if translit:
        for j in range(n):
            longest = max(longest, lens[j])
    scratch = np.empty(longest * trans_max, np.uint32)
    nti = trans_index.shape[0]
    last = np.uint64(gsm_table.shape[0] - 1)
    zero = np.uint64(0)
    s = zero
    for j in range(n):
        e = s + np.uint64(lens[j])
        # The common case inline, without a call (a call to another jitted function costs more
        # than a short text: reference counting of every array argument): a GSM-7 text that
        # needs no greedy packing. Anything else goes to _measure, which starts over.
        acc = 0
        if lens[j] < LONG_TEXT:
            for i in range(s, e):
                acc += gsm_table[min(np.uint64(cps[i]), last)]
        else:
            acc = BAD
        septets = acc & FIELD
        gsm7 = (acc >> 21) & FIELD == 0
        if gsm7 and septets <= G7_SINGLE:  # GSM-7 in one part
            k, u, p = 0, septets, 1
        elif gsm7 and acc >> 42 == 0:  # GSM-7, concatenated, no escape pair to keep whole
            k, u, p = 0, septets, (septets + G7_CONCAT - 1) // G7_CONCAT
        else:
            k, u, p = _measure(cps, s, e, gsm_table, pt_table, gsm_pt)
        if translit and k != 0:
            m = 0
            changed = False
            for i in range(s, e):
                cp = cps[i]
                x = trans_index[cp] if cp < nti else -1
                if x >= 0:
                    changed = True
                    off = x >> 4
                    for q in range(x & 15):
                        scratch[m] = trans_data[off + q]
                        m += 1
                else:
                    scratch[m] = cp
                    m += 1
            if changed:
                k2, u2, p2 = _measure(scratch, zero, np.uint64(m), gsm_table, pt_table, gsm_pt)
                if k2 != 2 and p2 <= p and (k == 2 or p2 < p):
                    k = k2
                    u = u2
                    p = p2
                    trans[j] = True
        enc[j] = k
        units[j] = u
        parts[j] = p
        s = e
    return enc, units, parts, trans


@njit(cache=True, nogil=True)
def add_values(cps, lens, times, gsm_table, g, astral, length):  # pragma: no cover - compiled
    """Add `times` x value j's GSM-7 table sum (septets, not-encodable, extension: bits 0-20, 21-41,
    42-62), its code points above U+FFFF and its length to g[j], astral[j] and length[j]. Every one is a
    sum over characters, so a text's is the sum of its pieces': what lets a template's texts be
    classified from its literal text and its slot values, without rendering them. `lens` holds each
    value's length; empty, the values are separated by U+0000 in `cps` (none holds one) and found here.
    Returns the number of values read (the caller compares it with g's)."""
    n = g.shape[0]
    last = np.uint64(gsm_table.shape[0] - 1)
    size = np.uint64(cps.shape[0])
    split = lens.shape[0] == 0
    s = np.uint64(0)
    for j in range(n):
        e = size if split else s + np.uint64(lens[j])
        ag = 0
        aa = 0
        i = s
        while i < e:
            cp = np.uint64(cps[i])
            if split and cp == 0:
                break
            ag += gsm_table[min(cp, last)]
            if cp > 0xFFFF:
                aa += 1
            i += np.uint64(1)
        g[j] += ag * times
        astral[j] += aa * times
        length[j] += np.int64(i - s) * times
        if split:
            if i == size and j < n - 1:
                return j + 1
            i += np.uint64(1)  # past the separator
        s = i
    if split and s <= size:  # a separator after the last value: more values than rows
        return n + 1
    return n


@njit(cache=True, nogil=True)
def decide_sums(g, astral, length, loose):  # pragma: no cover - compiled
    """(encoding, parts, decided) of each text from its sums (add_values): what `classify` decides from
    the sums alone: GSM-7 in one part, or without an escape pair to keep whole; UCS-2 in one part, or
    without a surrogate pair, unless `loose` (GSM-PT or transliteration may do better). A text of
    LONG_TEXT characters or more, or any other, is left undecided (0, 0, False) to classify as text."""
    n = g.shape[0]
    enc = np.zeros(n, np.uint8)
    parts = np.zeros(n, np.int32)
    decided = np.zeros(n, np.bool_)
    for j in range(n):
        if length[j] >= LONG_TEXT:
            continue
        acc = g[j]
        septets = acc & FIELD
        if (acc >> 21) & FIELD == 0:
            if septets <= G7_SINGLE:
                parts[j] = 1
            elif acc >> 42 == 0:
                parts[j] = (septets + G7_CONCAT - 1) // G7_CONCAT
            else:
                continue
        else:
            units = length[j] + astral[j]
            if loose:
                continue
            if units <= U_SINGLE:
                parts[j] = 1
            elif astral[j] == 0:
                parts[j] = (units + U_CONCAT - 1) // U_CONCAT
            else:
                continue
            enc[j] = 2
        decided[j] = True
    return enc, parts, decided
