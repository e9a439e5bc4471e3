"""SMS encoding and segmentation: GSM 03.38 (default alphabet + extension), GSM-PT (the Portuguese
national-language tables 360nrs offers as "gsm-pt"), UCS-2; transliteration; numba kernels for
whole chunks and a plain-Python reference.

- segment(text, ...) -> Segmentation: one text in detail (parts, payloads, what forced UCS-2).
- analyze(texts, ...) -> Analysis: a chunk at once, numpy arrays (one numba call).
- reference.count(text, gsm_pt=...) -> (encoding, units, parts): plain Python, no numba.
- warm_up(): load (or compile) the kernels for every input width before the clock starts.

`analyze` and `Analysis` are imported lazily, so importing this package (or its reference
module) does not import numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .segmentation import Segmentation, segment
from .tables import ENCODINGS

if TYPE_CHECKING:  # pragma: no cover
    from .batch import Analysis, analyze, analyze_slots, encoding_names, warm_up

__all__ = ["ENCODINGS", "Analysis", "Segmentation", "analyze", "analyze_slots", "encoding_names", "segment",
           "warm_up"]


def __getattr__(name: str) -> Any:
    if name in ("analyze", "analyze_slots", "Analysis", "encoding_names", "to_codepoints", "warm_up"):
        from . import batch

        return getattr(batch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
