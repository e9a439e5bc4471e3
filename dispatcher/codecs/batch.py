"""analyze(): classify a whole chunk of texts with one numba call."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from . import kernels
from .tables import ENCODINGS, TRANSLATE_TABLE

__all__ = ["ENCODINGS", "Analysis", "analyze", "analyze_slots", "encoding_names", "to_codepoints", "warm_up"]


@dataclass(slots=True, eq=False)
class Analysis:
    """Per-text results for a chunk, as numpy arrays aligned with `texts`.

    encoding: uint8 index into ENCODINGS (0 GSM-7, 1 GSM-PT, 2 UCS-2); units: int32 septets (GSM) or
    UTF-16 code units (UCS-2); parts: int32 number of parts to declare to a provider (for GSM-PT
    the conservative 152/146-septet count); transliterated: bool; too_many_parts: bool, parts over
    max_parts (all False without max_parts); texts: the texts after transliteration (the list
    passed in when nothing was transliterated)."""

    encoding: np.ndarray
    units: np.ndarray
    parts: np.ndarray
    transliterated: np.ndarray
    too_many_parts: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def encoding_name(self, i: int) -> str:
        return ENCODINGS[self.encoding[i]]


# Converting a chunk: all texts are joined into one str, and the kernel reads that str's own
# buffer. CPython (PEP 393) stores a compact str's characters right after its header, 1, 2 or 4
# bytes each (latin-1, UCS-2 without surrogate pairs, UCS-4), i.e. exactly the uint8 / uint16 /
# uint32 code-point array the kernel wants. Viewing it costs nothing; copying it (str.encode,
# array.array) costs a pass over the chunk plus a large short-lived allocation, whose page faults
# can cost more than the copy itself. The header size is measured at import on sample strings
# (never assumed); anything unexpected (another interpreter, a layout the probe does not
# recognise, a one-text chunk, whose join may return a non-compact object) takes the copying path.

# sys.getsizeof of a compact str is a fixed header + (len + 1) * kind; these are the headers
_ASCII_HEADER = sys.getsizeof("a") - 2
_COMPACT_HEADER = sys.getsizeof("\xe9") - 2
_DTYPES = {1: "|u1", 2: "<u2", 4: "<u4"}
_ENCODINGS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}


def _probe_offsets() -> dict[int, int] | None:
    """Offset of the character data from id(s) for ASCII (key 0) and 1/2/4-byte compact strs."""
    if sys.implementation.name != "cpython":  # pragma: no cover
        return None
    samples = {0: "ab", 1: "\xe9b", 2: "\u0100b", 4: "\U00010000b"}
    offsets = {}
    for kind, base in samples.items():
        found = set()
        for n in (8, 17, 64):
            sample = "".join([base * n, "z"])  # a fresh object built the way analyze builds its str
            raw = ctypes.string_at(id(sample), sys.getsizeof(sample))
            data = sample.encode("ascii" if kind == 0 else _ENCODINGS[kind], "surrogatepass")
            found.add(raw.find(data))
        if len(found) != 1 or not 0 < min(found) < 512:
            return None  # pragma: no cover
        offsets[kind] = found.pop()
    return offsets


_OFFSETS = _probe_offsets()


class _StrBuffer:
    """Exposes a str's character buffer to numpy (read-only); keeps the str alive."""

    __slots__ = ("__array_interface__", "_keep")

    def __init__(self, s: str, address: int, n: int, dtype: str) -> None:
        self._keep = s
        self.__array_interface__ = {"data": (address, True), "shape": (n,), "typestr": dtype, "version": 3}


def _view(s: str) -> np.ndarray | None:
    n = len(s)
    size = sys.getsizeof(s)
    if s.isascii():
        if size != _ASCII_HEADER + n + 1:  # pragma: no cover - not a compact str
            return None
        kind, offset = 1, _OFFSETS[0]
    else:
        kind = (size - _COMPACT_HEADER) // (n + 1)
        if kind not in _DTYPES or size != _COMPACT_HEADER + (n + 1) * kind:  # pragma: no cover
            return None
        offset = _OFFSETS[kind]
    return np.asarray(_StrBuffer(s, id(s) + offset, n, _DTYPES[kind]))


def _copy(s: str) -> np.ndarray:
    if s.isascii():
        return np.frombuffer(s.encode("ascii"), dtype=np.uint8)
    # not sys.getsizeof's kind: a string whose UTF-8 form is cached (a C API asked for it) looks wider
    try:
        return np.frombuffer(s.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        pass
    data = s.encode("utf-16-le", "surrogatepass")
    if len(data) == 2 * len(s):  # no code point above U+FFFF: one unit per code point
        return np.frombuffer(data, dtype=np.uint16)
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


_NAMES = np.array(ENCODINGS, dtype=object)


def encoding_names(encoding: np.ndarray) -> list[str]:
    """Each text's encoding by name (ENCODINGS) from its code, in one numpy take: ~10 against ~50 ns a
    text for a lookup a code of `.tolist()`."""
    return _NAMES.take(encoding).tolist()


def to_codepoints(texts: list[str], *, zero_copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All texts' code points in one read-only array (uint8, uint16 or uint32: the narrowest that
    holds them) and each text's length (int64). zero_copy=False forces the copying path."""
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    s = "".join(texts)
    return _codepoints(s, zero_copy and len(texts) > 1), lens


def _codepoints(s: str, zero_copy: bool = True) -> np.ndarray:
    """The code points of `s`: its own character buffer where it can be read in place, else a copy."""
    if zero_copy and _OFFSETS is not None:
        view = _view(s)
        if view is not None:
            return view
    return _copy(s)


def analyze(
    texts: Iterable[str],
    *,
    gsm_pt: bool = False,
    transliterate: bool = False,
    max_parts: int | None = None,
) -> Analysis:
    """Classify a chunk of texts in one kernel call: encoding, units and parts to declare per text.

    With gsm_pt, a text that fits the GSM-7 default alphabet (+ extension) is GSM-7, else one that
    fits the Portuguese tables is GSM-PT, else UCS-2. With transliterate, a text is transliterated
    only when that helps (see reference.choose); `texts` then holds the transliterated texts.
    A text over max_parts keeps its real part count and is flagged in too_many_parts.
    """
    if not isinstance(texts, list):
        texts = list(texts)
    cps, lens = to_codepoints(texts)
    enc, units, parts, trans = kernels.classify(
        cps,
        lens,
        kernels.GSM7_TABLE,
        kernels.PT_TABLE,
        kernels.TRANS_INDEX,
        kernels.TRANS_DATA,
        kernels.TRANS_MAX,
        bool(gsm_pt),
        bool(transliterate),
    )
    out = texts
    if transliterate:
        changed = np.flatnonzero(trans)
        if changed.size:
            out = list(texts)
            for i in changed.tolist():
                out[i] = texts[i].translate(TRANSLATE_TABLE)
    too_many = np.zeros(len(texts), dtype=np.bool_) if max_parts is None else parts > max_parts
    return Analysis(enc, units, parts, trans, too_many, out)


_SPLIT = np.zeros(0, np.int64)  # add_values' lens when the values come separated by U+0000


def _add(values: list[str], times: int, g: np.ndarray, astral: np.ndarray, length: np.ndarray) -> None:
    """Each value's sums added `times` into g / astral / length (kernels.add_values). Joined with U+0000
    between them when none holds one (a C count says so), the kernel finds where each ends: no length
    read a value (map(len) was a fifth of the scan)."""
    s = "\x00".join(values)
    if s.count("\x00") == len(values) - 1:
        cps, lens = _codepoints(s, len(values) > 1), _SPLIT
    else:
        cps, lens = to_codepoints(values)
    found = kernels.add_values(cps, lens, times, kernels.GSM7_TABLE, g, astral, length)
    assert found == len(values), (found, len(values))


def analyze_slots(literal: str, columns: list[list[str]], uses: list[int], n: int,
                  render: Callable[[list[int]], list[str]], *, gsm_pt: bool = False,
                  transliterate: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(encoding, parts, transliterated) of n texts of one template, as `analyze` gives them, from the
    template's literal text (its pieces joined), each slot's values (`columns`) and the slot each
    placeholder reads (`uses`, a slot read twice counted twice): no text rendered or scanned whole. A
    text's GSM-7 table sums, code points above U+FFFF and length are its pieces' sums, and decide it
    whenever `classify` decides it from sums alone (kernels.decide_sums). The rest (greedy packing,
    GSM-PT or transliteration candidates, texts of 2**20 characters or more) are rendered
    (`render(rows)`) and analysed as texts."""
    one = [np.zeros(1, np.int64) for _ in range(3)]
    if literal:
        _add([literal], 1, *one)
    g, astral, length = (np.full(n, x[0], np.int64) for x in one)
    for slot in sorted(set(uses)):
        _add(columns[slot], uses.count(slot), g, astral, length)
    enc, parts, decided = kernels.decide_sums(g, astral, length, bool(gsm_pt or transliterate))
    trans = np.zeros(n, np.bool_)
    rest = np.flatnonzero(~decided).tolist()
    if rest:
        a = analyze(render(rest), gsm_pt=gsm_pt, transliterate=transliterate)
        enc[rest], parts[rest], trans[rest] = a.encoding, a.parts, a.transliterated
    return enc, parts, trans


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the kernel for every input width: uint8, uint16
    and uint32 chunks each use their own machine code, so warming up with one text only covers
    latin-1 chunks. Costs about 0.5 s from a warm cache, ~10 s of compiling on the very first run."""
    for chunk in (["a", "b"], ["a", "€"], ["a", "😀"]):
        analyze(chunk, gsm_pt=True, transliterate=True)
        for values in (chunk, [c + "\x00" for c in chunk]):  # slot values found by U+0000, and by lengths
            sums = [np.zeros(2, np.int64) for _ in range(3)]
            _add(values, 1, *sums)
            kernels.decide_sums(*sums, False)
