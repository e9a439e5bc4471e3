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
    "count_parts",
    "encoding_of",
    "septets",
    "split",
    "transliterate",
    "width",
    "widths",
]

GSM7_CHARS = frozenset(GSM7_SEPTETS)
PT_CHARS = frozenset(PT_SEPTETS)
GSM7_WIDTH = {ch: len(sept) for ch, sept in GSM7_SEPTETS.items()}  # 1, or 2 for an ESC pair
PT_WIDTH = {ch: len(sept) for ch, sept in PT_SEPTETS.items()}


def encoding_of(text: str, gsm_pt: bool = False) -> str:
    """The encoding of a text: "GSM-7" if every character is in the default alphabet (+ extension),
    else "GSM-PT" when allowed and every character is in the Portuguese tables, else "UCS-2"."""
    if GSM7_CHARS.issuperset(text):
        return "GSM-7"
    if gsm_pt and PT_CHARS.issuperset(text):
        return "GSM-PT"
    return "UCS-2"


def width(ch: str, encoding: str) -> int:
    """What one character costs: septets for GSM, UTF-16 code units for UCS-2."""
    return widths(ch, encoding)[0]


def widths(text: str, encoding: str) -> list[int]:
    """What each character of `text` costs in `encoding` (which must be able to encode it)."""
    if encoding == "GSM-7":
        return [GSM7_WIDTH[ch] for ch in text]
    if encoding == "GSM-PT":
        return [PT_WIDTH[ch] for ch in text]
    return [2 if ch > "\uffff" else 1 for ch in text]


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
    if any(PT_WIDTH[ch] == 2 for ch in text):
        return PT_CAPACITY_BOTH
    return PT_CAPACITY_LOCKING


def _part_starts(char_widths: list[int], single: int, concat: int) -> list[int]:
    """Index of the first character of each part: one part if everything fits `single`, else parts
    filled greedily up to `concat` units, a character never split across two parts."""
    if sum(char_widths) <= single:
        return [0]
    starts = [0]
    used = 0
    for i, w in enumerate(char_widths):
        if used + w > concat:
            starts.append(i)
            used = 0
        used += w
    return starts


def count_parts(char_widths: list[int], single: int, concat: int) -> int:
    return len(_part_starts(char_widths, single, concat))


def split(text: str, encoding: str, single: int, concat: int) -> list[str]:
    """The text of each part (see _part_starts). The empty text is one empty part."""
    starts = _part_starts(widths(text, encoding), single, concat)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def _measure(text: str, gsm_pt: bool) -> tuple[str, int, int]:
    encoding = encoding_of(text, gsm_pt)
    char_widths = widths(text, encoding)
    single, concat = capacity(text, encoding, declared=True)
    return encoding, sum(char_widths), count_parts(char_widths, single, concat)


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
