"""analyze(): classify a whole chunk of texts with one numba call."""

from __future__ import annotations

import array
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import kernels
from .tables import ENCODINGS, TRANSLATE_TABLE

__all__ = ["ENCODINGS", "Analysis", "analyze", "to_codepoints"]


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


# CPython stores a str as 1, 2 or 4 bytes per character (PEP 393). A latin-1 (1-byte) chunk is
# copied as-is into a uint8 array; anything wider becomes a uint32 array. The width is read from
# the object's size (O(1)); if that guess is ever wrong the encode below fails and the general
# path is taken, so correctness never depends on it.
_COMPACT_HEADER = sys.getsizeof("\xe9") - 2
_UCS4 = "w" if "w" in array.typecodes else ("u" if array.array("u").itemsize == 4 else None)


def _is_one_byte(s: str) -> bool:
    return s.isascii() or sys.getsizeof(s) - _COMPACT_HEADER == len(s) + 1


def to_codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts' code points in one array (uint8 if every character is below 256, else uint32)
    and each text's length (int64)."""
    n = len(texts)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    s = "".join(texts)
    if _is_one_byte(s):
        try:
            return np.frombuffer(s.encode("latin-1"), dtype=np.uint8), lens
        except UnicodeEncodeError:  # pragma: no cover - only if the size heuristic misfires
            pass
    if _UCS4 is not None:
        # array('u'/'w') copies the code points verbatim (a memcpy for a 4-byte str), lone
        # surrogates included
        return np.frombuffer(array.array(_UCS4, s), dtype=np.uint32), lens
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32), lens  # pragma: no cover


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
