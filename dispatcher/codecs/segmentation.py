"""segment(): everything about one text (parts, payloads, what forced UCS-2). Pure Python."""

from __future__ import annotations

from dataclasses import dataclass

from . import reference
from .tables import GSM7_SEPTETS, PT_SEPTETS

__all__ = ["Segmentation", "non_gsm_chars", "pack_septets", "segment"]


@dataclass(frozen=True, slots=True)
class Segmentation:
    """How one text is sent.

    encoding: "GSM-7", "GSM-PT" or "UCS-2". units: septets (GSM) or UTF-16 code units (UCS-2).
    parts: the text of each part, split at the exact capacity (for GSM-PT: 155/149 septets, or
    152/146 when extension characters are used). declared_parts: the part count to declare to a
    provider (for GSM-PT computed at the conservative 152/146; otherwise len(parts)).
    non_gsm: the fewest distinct characters whose removal would make the text fit a GSM alphabet
    (empty unless the encoding is UCS-2). transliterated: the text was changed by transliteration.
    payloads: each part encoded (packed septets for GSM, no UDH or fill bits; UTF-16-BE for UCS-2).
    text: the text after transliteration. too_many_parts: declared_parts > max_parts.
    capacity: (single message, concatenated part) units actually used for `parts`.
    """

    text: str
    encoding: str
    units: int
    parts: list[str]
    declared_parts: int
    non_gsm: tuple[str, ...]
    transliterated: bool
    payloads: list[bytes]
    part_units: list[int]
    capacity: tuple[int, int]
    too_many_parts: bool = False

    @property
    def characters(self) -> int:
        return len(self.text)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "encoding": self.encoding,
            "characters": self.characters,
            "units": self.units,
            "parts": self.declared_parts,
            "exact_parts": len(self.parts),
            "part_texts": list(self.parts),
            "part_units": list(self.part_units),
            "capacity": list(self.capacity),
            "non_gsm": list(self.non_gsm),
            "transliterated": self.transliterated,
            "too_many_parts": self.too_many_parts,
            "payloads": [p.hex() for p in self.payloads],
        }


def pack_septets(septets: list[int]) -> bytes:
    """Pack 7-bit values into octets, least significant bit first (3GPP TS 23.038 6.1.2.1.1)."""
    out = bytearray()
    acc = 0
    bits = 0
    for v in septets:
        acc |= (v & 0x7F) << bits
        bits += 7
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits:
        out.append(acc)
    return bytes(out)


def _distinct_missing(text: str, alphabet: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ch for ch in text if ch not in alphabet))


def non_gsm_chars(text: str, gsm_pt: bool) -> tuple[str, ...]:
    missing = _distinct_missing(text, GSM7_SEPTETS)
    if gsm_pt:
        missing_pt = _distinct_missing(text, PT_SEPTETS)
        if len(missing_pt) < len(missing):
            return missing_pt
    return missing


def _payload(part: str, encoding: str) -> bytes:
    if encoding == "UCS-2":
        return part.encode("utf-16-be", "surrogatepass")
    return pack_septets(reference.septets(part, encoding))


def segment(
    text: str,
    *,
    gsm_pt: bool = False,
    transliterate: bool = False,
    max_parts: int | None = None,
) -> Segmentation:
    """Encoding, units, parts (with their text and payload) of one text; see Segmentation."""
    text, transliterated = reference.choose(text, gsm_pt=gsm_pt, use_transliteration=transliterate)
    encoding = reference.encoding_of(text, gsm_pt)
    char_widths = reference.widths(text, encoding)
    cap = reference.capacity(text, encoding, declared=False)
    parts = reference.split(text, encoding, *cap)
    declared = reference.count_parts(char_widths, *reference.capacity(text, encoding, declared=True))
    part_units = [sum(reference.widths(part, encoding)) for part in parts]
    return Segmentation(
        text=text,
        encoding=encoding,
        units=sum(char_widths),
        parts=parts,
        declared_parts=declared,
        non_gsm=non_gsm_chars(text, gsm_pt) if encoding == "UCS-2" else (),
        transliterated=transliterated,
        payloads=[_payload(p, encoding) for p in parts],
        part_units=part_units,
        capacity=cap,
        too_many_parts=max_parts is not None and declared > max_parts,
    )
