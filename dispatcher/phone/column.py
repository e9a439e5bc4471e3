"""`to_e164` over a whole column in one numba call: the metadata regexes compiled into DFAs.

`to_e164` costs ~2 us a number, most of it `re` running the validity regex (a lookahead
for the general pattern, an alternation of every type, for `mobile` a negative lookahead of the
other types). Those regexes only ever see digits and are all anchored, so each one is a regular
language over ten symbols; a country code's whole decision (which region of the code, valid, mobile)
is a boolean formula over the languages of its regions' patterns, and one subset construction over
all of them gives a DFA whose states carry the formula's answer (bit 0 valid, bit 1 mobile). A
number then costs one table load per digit.

The kernel repeats `to_e164`'s fast path step by step (strip, `+`/`00`/national shapes, country code
by value of its first 1-3 digits, the leading-country-code rule, the plain trunk prefix) and says
per number: the E.164 it found, None (where `to_e164` would say None without asking phonenumbers),
or "ask `to_e164`" (its fast path failed and phonenumbers decides; also non-ASCII, very long
strings). It can only agree with `to_e164`: where it is not sure, `to_e164` answers.

DFAs are built the first time a country code is seen (the kernel reports codes it has no table for,
they are built and the column runs again): a few milliseconds for most codes, 0.1 s for +44, 0.8 s
for +1 and its 25 regions; kept for the process. `to_e164` and this kernel must change together:
tests/test_units.py compares them on many numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from numba import njit
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from . import metadata
from .dfa import NFA
from .e164 import to_e164

SCRATCH = 64  # longer stripped numbers go to to_e164 (its fast path accepts 22 characters at most)
OK, NONE, ASK, MISSING = 0, 1, 2, 3  # per-number status
UNKNOWN = -2  # a country code whose patterns this module cannot compile: every number asks to_e164

# ----------------------------------------------------------------------------------------------
# The formulas: metadata.region_rules's regexes and e164._validator's choice of region, component by component.


def _desc(nfa: NFA, desc) -> tuple[int, ...] | None:
    """The components (all must accept) of metadata._desc(desc), None where it has none."""
    if desc is None or desc.national_number_pattern is None:
        return None
    parts = (nfa.pattern(desc.national_number_pattern),)
    return (*parts, nfa.lengths(tuple(desc.possible_length))) if desc.possible_length else parts


def _region_formula(nfa: NFA, region: str):
    """(valid, mobile, leading) for a region: functions of the accepting set, as metadata.region_rules's
    regexes VALID, MOBILE, and leading digits (prefix match); None where the regex is None."""
    md = metadata.metadata(region)
    if md is None:
        return None
    general = _desc(nfa, md.general_desc)
    types = [d for d in (_desc(nfa, getattr(md, t, None)) for t in metadata.NUMBER_TYPES) if d]
    others = [d for d in (_desc(nfa, getattr(md, t, None)) for t in metadata.NOT_MOBILE) if d]
    mob = _desc(nfa, md.fixed_line if md.same_mobile_and_fixed_line_pattern else md.mobile)

    def has(acc: frozenset[int], parts: tuple[int, ...]) -> bool:
        return all(p in acc for p in parts)

    valid = mobile = leading = None
    if general is not None and types:
        def valid(acc):
            return has(acc, general) and any(has(acc, t) for t in types)
    if general is not None and mob is not None:
        def mobile(acc):
            return has(acc, general) and not any(has(acc, o) for o in others) and has(acc, mob)
    if md.leading_digits:
        lead = nfa.pattern(md.leading_digits, prefix=True)

        def leading(acc):
            return lead in acc
    return valid, mobile, leading


def _cc_dfa(cc: int) -> tuple[np.ndarray, np.ndarray]:
    """The DFA of national numbers under country code `cc`: flags bit 0 as e164._validator(cc, VALID)
    says, bit 1 as e164._validator(cc, MOBILE)."""
    nfa = NFA()
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc) or ()
    if len(regions) == 1:
        f = _region_formula(nfa, str(cc) if regions[0] == "001" else regions[0])

        def answer(acc):
            if f is None:
                return 0
            return (1 if f[0] and f[0](acc) else 0) | (2 if f[1] and f[1](acc) else 0)
    else:
        fs = [_region_formula(nfa, r) for r in regions]

        def answer(acc):
            for f in fs:
                if f is None or f[0] is None:
                    continue
                if f[2](acc) if f[2] is not None else f[0](acc):
                    return (1 if f[0](acc) else 0) | (2 if f[1] and f[1](acc) else 0)
            return 0
    return nfa.dfa(answer)


def _general_dfa(region: str) -> tuple[np.ndarray, np.ndarray]:
    """The DFA of a region's general pattern (RegionRules.general): flags bit 0."""
    nfa = NFA()
    general = _desc(nfa, metadata.metadata(region).general_desc)
    return nfa.dfa(lambda acc: 1 if all(p in acc for p in general) else 0)


class _Tables:
    """Every DFA built so far, in one transition table (numba takes arrays, not lists of them).

    `tables` is (transitions [state * 10 + digit] -> state, flags, start state of each country code
    or -1), replaced whole, never changed in place: a kernel reads one consistent tuple while another
    thread adds a DFA. DFAs are only ever appended, so a start taken earlier holds in any later tuple."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tables = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint8), np.full(1000, -1, dtype=np.int32))
        self.general: dict[str, int] = {}
        self.is_code = np.zeros(1000, dtype=np.bool_)
        for cc in COUNTRY_CODE_TO_REGION_CODE:
            if 0 <= cc < 1000:
                self.is_code[cc] = True

    def _add(self, dfa: tuple[np.ndarray, np.ndarray] | None, cc: int | None = None) -> int:
        trans, flags, starts = self.tables
        base = len(flags) if dfa is not None else UNKNOWN
        if dfa is not None:
            trans = np.concatenate([trans, (dfa[0] + base).ravel()])
            flags = np.concatenate([flags, dfa[1]])
        if cc is not None:
            starts = starts.copy()
            starts[cc] = base
        self.tables = (trans, flags, starts)
        return base

    def code(self, cc: int) -> None:
        """Build the DFA of country code `cc` unless there is one."""
        with self.lock:
            if self.tables[2][cc] == -1:
                try:
                    dfa = _cc_dfa(cc)
                except NotImplementedError:
                    dfa = None
                self._add(dfa, cc)

    def region_general(self, region: str) -> int:
        """The start of the DFA of a region's general pattern (UNKNOWN: not one this module compiles)."""
        with self.lock:
            if region not in self.general:
                try:
                    dfa = _general_dfa(region)
                except NotImplementedError:
                    dfa = None
                self.general[region] = self._add(dfa)
            return self.general[region]


TABLES = _Tables()

# ----------------------------------------------------------------------------------------------
# The kernel.


# Character classes of the kernel's input bytes: digits are themselves.
PLUS, OTHER, SKIP, NEWLINE, HIGH = 10, 11, 12, 13, 14


def _classes() -> np.ndarray:
    cls = np.full(256, OTHER, dtype=np.uint8)
    cls[48:58] = np.arange(10)
    cls[ord("+")] = PLUS
    for c in metadata.STRIP:  # the characters to_e164 strips (code points: only the ASCII ones are bytes)
        if c < 128:
            cls[c] = SKIP
    cls[10] = NEWLINE
    cls[128:] = HIGH  # non-ASCII (\u00a0 among them): to_e164 decides
    return cls


CLASSES = _classes()

# Indices are uint64 inside the loops (as in codecs.kernels): numba then skips its negative-index
# wraparound checks.


@njit(cache=True, nogil=True, inline="always")
def _accepts(trans, flags, start, s, a, b, mask):  # pragma: no cover - compiled
    """Whether the DFA from state `start` ends in a state with a `mask` flag over s[a:b] (trans flat, 10 a state)."""
    st = np.uint64(start)
    ten = np.uint64(10)
    for i in range(np.uint64(a), np.uint64(b)):
        st = np.uint64(trans[st * ten + np.uint64(s[i])])
    return flags[st] & mask != 0


@njit(cache=True, nogil=True, inline="always")
def _international(s, off, slen, trans, flags, cc_start, is_code, mask):  # pragma: no cover - compiled
    """e164._international over the digits s[off:slen]: (OK, NONE: the fast path says no, ASK: a code
    this module cannot compile, MISSING: a code not built yet; the code)."""
    length = slen - off
    if s[np.uint64(off)] == 0:  # no country code starts with 0 (e164._ByPrefix)
        return NONE, 0
    v = 0
    for n in range(1, 4):
        if n <= length:
            v = v * 10 + s[np.uint64(off + n - 1)]
        if is_code[np.uint64(v)]:
            if length <= n:
                return NONE, v
            st = cc_start[np.uint64(v)]
            if st == -1:
                return MISSING, v
            if st < 0:
                return ASK, v
            return (OK if _accepts(trans, flags, st, s, off + n, slen, mask) else NONE), v
    return NONE, 0


@njit(cache=True, nogil=True, inline="always")
def _national(s, length, trans, flags, ccd, prefix, gen_start, check_start, mask):  # pragma: no cover - compiled
    """A number of the default region's shape (digits only): (status, where its national number starts,
    whether the answer needs the country code in front). The leading-country-code rule first, as in
    to_e164: read a leading code only when the whole is not a national number and the rest is one."""
    lc = ccd.shape[0]
    lp = prefix.shape[0]
    lead = length >= lc
    for k in range(min(lc, length)):
        if s[np.uint64(k)] != ccd[np.uint64(k)]:
            lead = False
    if check_start < 0 or (lead and gen_start == UNKNOWN):
        return ASK, 0, False
    if lead and gen_start >= 0 and not _accepts(trans, flags, gen_start, s, 0, length, 1) \
            and _accepts(trans, flags, gen_start, s, lc, length, 1) \
            and _accepts(trans, flags, check_start, s, lc, length, mask):
        return OK, 0, False
    a = lp if lp and length >= lp else 0
    for k in range(a):
        if s[np.uint64(k)] != prefix[np.uint64(k)]:
            a = 0
    if _accepts(trans, flags, check_start, s, a, length, mask):
        return OK, a, True
    return NONE, 0, False


@njit(cache=True, nogil=True)
def e164_kernel(buf, n, classes, trans, flags, cc_start, is_code, mask, has_region, intl00, ccd, prefix, gen_start,
                check_start, out, status, missing):  # pragma: no cover - compiled
    """Every number of `buf` ("\\n"-separated, n of them): status[i] OK (its E.164 written in `out`),
    NONE, ASK (to_e164 decides) or MISSING (the DFA of code c is not built: missing[c] set). `out`
    gets one line per number (empty unless OK). Returns the length of `out`, -1 when `buf` does not
    hold n lines (a number with a newline in it).

    ccd, prefix, gen_start, check_start: the default region's country code digits, plain trunk prefix
    (empty: none), general-pattern DFA (-1: none) and DFA of its country code (built before the call)."""
    s = np.empty(SCRATCH, np.uint8)  # the stripped number, as classes
    one = np.uint64(1)
    pos = np.uint64(0)
    w = np.uint64(0)
    lc = ccd.shape[0]
    total = np.uint64(buf.shape[0])
    for i in range(np.uint64(n)):
        if i:
            out[w] = 10
            w += one
        slen = np.uint64(0)
        odd = False  # a byte past ASCII, or too long for the scratch
        others = 0  # characters after the first that are not digits
        nl = False
        while pos < total:
            c = classes[buf[pos]]
            pos += one
            if c < SKIP:
                if slen == SCRATCH:
                    odd = True
                    continue
                s[slen] = c
                if c > 9 and slen:
                    others += 1
                slen += one
            elif c == NEWLINE:
                nl = True
                break
            elif c == HIGH:
                odd = True
        if odd:
            status[i] = ASK
            continue
        res = NONE
        code = 0
        a = 0  # the answer is "+" then s[a:slen] (after the region's country code when `national`)
        national = False
        length = np.int64(slen)
        if length and s[0] == PLUS:
            if length >= 2 and others == 0:
                res, code = _international(s, 1, length, trans, flags, cc_start, is_code, mask)
                a = 1
        elif length >= 2 and s[0] == 0 and s[1] == 0:
            if has_region and intl00 and others == 0:
                res, code = _international(s, 2, length, trans, flags, cc_start, is_code, mask)
                a = 2
        elif has_region and length and others == 0 and s[0] < 10:
            res, a, national = _national(s, length, trans, flags, ccd, prefix, gen_start, check_start, mask)
        if res == OK:
            out[w] = 43  # '+'
            w += one
            if national:
                for k in range(np.uint64(lc)):
                    out[w] = ccd[k] + 48
                    w += one
            for k in range(np.uint64(a), slen):
                out[w] = s[k] + 48
                w += one
            status[i] = OK
        elif res == MISSING:
            status[i] = MISSING
            missing[np.uint64(code)] = True
        elif res == NONE and (length == 0 or length > 20):
            status[i] = NONE
        else:
            status[i] = ASK  # the fast path said no: phonenumbers decides
    if pos < total or nl:  # more lines than numbers
        return -1
    return np.int64(w)


def to_e164_column(raws: Sequence[str], region: str | None, mobile: bool = False) -> list[str | None]:
    """`[to_e164(r, region, mobile) for r in raws]` in one kernel call (see dispatcher.phone.to_e164_column)."""
    if not raws:
        return []
    r = metadata.region_rules(region) if region else None
    try:
        joined = "\n".join(raws)
    except TypeError:  # not all str: to_e164 says what it says about them
        return [to_e164(x, region, mobile) for x in raws]
    data = joined.encode("utf-8", "surrogatepass")
    if r is not None:
        TABLES.code(r.country_code)
        gen_start = TABLES.region_general(region) if r.general is not None else -1
        ccd = np.frombuffer(str(r.country_code).encode(), dtype=np.uint8) - 48
        prefix = np.frombuffer((r.trunk or "").encode(), dtype=np.uint8) - 48
    else:
        gen_start, ccd, prefix = -1, np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    n = len(raws)
    status = np.empty(n, dtype=np.uint8)
    while True:
        out = np.empty(len(data) + 5 * n, dtype=np.uint8)  # a number gains "+", a country code and "\n" at most
        trans, flags, starts = TABLES.tables
        missing = np.zeros(1000, dtype=np.bool_)
        check_start = starts[r.country_code] if r is not None else -1
        w = e164_kernel(np.frombuffer(data, dtype=np.uint8), n, CLASSES, trans, flags, starts, TABLES.is_code,
                   2 if mobile else 1, r is not None, bool(r and r.intl00), ccd, prefix, gen_start, check_start,
                   out, status, missing)
        if w < 0:  # a number with a newline in it: not one line, to_e164 decides ("\x80": always asks)
            data = "\n".join("\x80" if "\n" in x else x for x in raws).encode("utf-8", "surrogatepass")
            continue
        if not missing.any():
            break
        for cc in np.flatnonzero(missing).tolist():  # country codes seen for the first time: build, again
            TABLES.code(cc)
    result: list[str | None] = out[:w].tobytes().decode("ascii").split("\n")  # type: ignore[assignment]
    for i in np.flatnonzero(status).tolist():
        result[i] = None if status[i] == NONE else to_e164(raws[i], region, mobile)
    return result
