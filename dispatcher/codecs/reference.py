"""Plain-Python reference codec: simple and obviously right, no numpy, no numba.

The numba kernels (`dispatcher.codecs.kernels`) must agree with this module on every text; the
provider simulators use it to count parts, so each implementation checks the other.

Rules (3GPP TS 23.038 / 23.040, and the 360nrs documentation):
- GSM-7: a basic-table character costs one septet, an extension-table character two (ESC + code).
  One message holds 160 septets; a concatenated message's parts hold 153 each.
- GSM-PT (360nrs "gsm-pt"): the Portuguese locking-shift table replaces the basic table and the
  Portuguese single-shift table replaces the extension table. Parts hold 155 / 149 septets
  (152 / 146 when the single-shift table is used too); the part count declared to a provider
  always uses 152 / 146, since declaring too few parts fails the message.
- UCS-2: one UTF-16 code unit per BMP character, two (a surrogate pair) above U+FFFF.
  One message holds 70 units, concatenated parts 67.
- A character is never split across parts: not an ESC pair, not a surrogate pair.
"""

from __future__ import annotations

from .tables import (
    ENCODINGS,
    GSM7_CAPACITY,
    GSM7_SEPTETS,
    PT_CAPACITY_BOTH,
    PT_CAPACITY_DECLARED,
    PT_CAPACITY_LOCKING,
    PT_SEPTETS,
    TRANSLATE_TABLE,
    UCS2_CAPACITY,
)

__all__ = [
    "ENCODINGS",
    "capacity",
    "choose",
    "count",
    "encoding_of",
    "septets",
    "split",
    "transliterate",
    "width",
]


def encoding_of(text: str, gsm_pt: bool = False) -> str:
    """The encoding of a text: "GSM-7" if every character is in the default alphabet (+ extension),
    else "GSM-PT" when allowed and every character is in the Portuguese tables, else "UCS-2"."""
    if all(ch in GSM7_SEPTETS for ch in text):
        return "GSM-7"
    if gsm_pt and all(ch in PT_SEPTETS for ch in text):
        return "GSM-PT"
    return "UCS-2"


def width(ch: str, encoding: str) -> int:
    """What one character costs: septets for GSM, UTF-16 code units for UCS-2."""
    if encoding == "GSM-7":
        return len(GSM7_SEPTETS[ch])
    if encoding == "GSM-PT":
        return len(PT_SEPTETS[ch])
    return 2 if ord(ch) > 0xFFFF else 1


def septets(text: str, encoding: str) -> list[int]:
    """The septet values of a GSM-7 or GSM-PT text (ESC pairs included)."""
    table = GSM7_SEPTETS if encoding == "GSM-7" else PT_SEPTETS
    out: list[int] = []
    for ch in text:
        out.extend(table[ch])
    return out


def capacity(text: str, encoding: str, *, declared: bool = True) -> tuple[int, int]:
    """(single-message capacity, concatenated-part capacity) for `text` in `encoding`.

    For GSM-PT, declared=True gives the conservative capacity used for the part count declared to a
    provider; declared=False the exact one (155/149 without extension characters, else 152/146)."""
    if encoding == "GSM-7":
        return GSM7_CAPACITY
    if encoding == "UCS-2":
        return UCS2_CAPACITY
    if declared:
        return PT_CAPACITY_DECLARED
    if any(len(PT_SEPTETS[ch]) == 2 for ch in text):
        return PT_CAPACITY_BOTH
    return PT_CAPACITY_LOCKING


def split(text: str, encoding: str, single: int, concat: int) -> list[str]:
    """Split into parts: one part if the whole text fits `single`, else greedily fill parts of
    `concat` units, never splitting a character. The empty text is one empty part."""
    widths = [width(ch, encoding) for ch in text]
    if sum(widths) <= single:
        return [text]
    parts: list[str] = []
    start = 0
    used = 0
    for i, w in enumerate(widths):
        if used + w > concat:
            parts.append(text[start:i])
            start = i
            used = 0
        used += w
    parts.append(text[start:])
    return parts


def _measure(text: str, gsm_pt: bool) -> tuple[str, int, int]:
    encoding = encoding_of(text, gsm_pt)
    units = sum(width(ch, encoding) for ch in text)
    single, concat = capacity(text, encoding, declared=True)
    return encoding, units, len(split(text, encoding, single, concat))


def transliterate(text: str) -> str:
    """Apply the transliteration table (360nrs `trans` + typographic characters) to every character."""
    return text.translate(TRANSLATE_TABLE)


def choose(text: str, *, gsm_pt: bool = False, use_transliteration: bool = False) -> tuple[str, bool]:
    """The text to send and whether it was transliterated.

    Transliteration is used only when it helps: when the transliterated text is GSM (7 or PT) and
    either the original needed UCS-2 without the transliteration costing more parts, or it saves parts.
    """
    if not use_transliteration:
        return text, False
    new = transliterate(text)
    if new == text:
        return text, False
    enc, _, parts = _measure(text, gsm_pt)
    new_enc, _, new_parts = _measure(new, gsm_pt)
    if new_enc != "UCS-2" and new_parts <= parts and (enc == "UCS-2" or new_parts < parts):
        return new, True
    return text, False


def count(text: str, *, gsm_pt: bool = False, transliterate: bool = False) -> tuple[str, int, int]:
    """(encoding name, units, parts to declare) for one text, after transliteration when asked.

    units are septets for GSM-7 / GSM-PT and UTF-16 code units for UCS-2; for GSM-PT the part
    count is the conservative one (152 / 146 septets). The empty text is ("GSM-7", 0, 1)."""
    text, _ = choose(text, gsm_pt=gsm_pt, use_transliteration=transliterate)
    return _measure(text, gsm_pt)
