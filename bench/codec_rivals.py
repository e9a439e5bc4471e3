"""The codec benchmark's rivals to the numba kernel (bench/codec.py), each `text -> (encoding, units, parts)`,
GSM-7 or UCS-2, as `dispatcher.codecs.reference.count` answers:
- `gsm0338_count`: the gsm0338 PyPI package's codec ("gsm03.38", registered by importing `gsm0338`),
  falling back to UTF-16 on error; escapes and surrogate pairs kept whole in the part count;
- `charmap_count`: a tuned pure-Python classifier (`codecs.charmap_encode` over a `charmap_build`
  table, C speed per character), the fastest pure-Python approach we know, for an honest ratio.
  `load_charmap()` builds its table first (outside the timings).
"""

from __future__ import annotations

import codecs


def _greedy_parts(widths, concat: int) -> int:
    parts, used = 1, 0
    for w in widths:
        if used + w > concat:
            parts += 1
            used = w
        else:
            used += w
    return parts


def _ucs2(text: str) -> tuple[str, int, int]:
    data = text.encode("utf-16-le", "surrogatepass")
    units = len(data) // 2
    if units <= 70:
        return "UCS-2", units, 1
    if units == len(text):
        return "UCS-2", units, -(-units // 67)
    return "UCS-2", units, _greedy_parts((2 if ord(ch) > 0xFFFF else 1 for ch in text), 67)


def gsm0338_count(text: str) -> tuple[str, int, int]:
    """The gsm0338 package's codec (extension characters come out as ESC + code)."""
    try:
        encoded = text.encode("gsm03.38")
    except UnicodeEncodeError:
        return _ucs2(text)
    units = len(encoded)
    if units <= 160:
        return "GSM-7", units, 1
    if units == len(text):
        return "GSM-7", units, -(-units // 153)
    widths, i = [], 0
    while i < units:
        w = 2 if encoded[i] == 0x1B else 1
        widths.append(w)
        i += w
    return "GSM-7", units, _greedy_parts(widths, 153)


def _charmap_table():
    from dispatcher.codecs.tables import GSM7_BASIC, GSM7_EXT

    # bytes 0x00-0x7F: the basic table; 0x80 | code: the extension character at code
    decoding = ["\ufffe"] * 256
    for code, ch in enumerate(GSM7_BASIC):
        if code != 0x1B:
            decoding[code] = ch
    for code, ch in GSM7_EXT.items():
        decoding[0x80 | code] = ch
    return codecs.charmap_build("".join(decoding))


_CHARMAP = None
_ASCII_BYTES = bytes(range(128))


def load_charmap() -> None:
    """The charmap table `charmap_count` encodes with, built once."""
    global _CHARMAP
    if _CHARMAP is None:
        _CHARMAP = _charmap_table()


def charmap_count(text: str) -> tuple[str, int, int]:
    """Tuned pure Python: one C-level charmap encode per text; extension characters come out >= 0x80."""
    try:
        encoded = codecs.charmap_encode(text, "strict", _CHARMAP)[0]
    except UnicodeEncodeError:
        return _ucs2(text)
    n = len(encoded)
    ext = 0 if encoded.isascii() else len(encoded.translate(None, _ASCII_BYTES))
    units = n + ext
    if units <= 160:
        return "GSM-7", units, 1
    if ext == 0:
        return "GSM-7", units, -(-units // 153)
    return "GSM-7", units, _greedy_parts((2 if b >= 0x80 else 1 for b in encoded), 153)
