"""Character tables: GSM 03.38 (3GPP TS 23.038) default alphabet, its extension table, the
Portuguese national-language tables that 360nrs calls "GSM-PT", and the transliteration table.

Plain Python data, no numpy or numba: the reference codec and the simulators use it directly,
the numba kernels build their lookup arrays from it.

Positions are septet values (0x00-0x7F). In a basic (locking-shift) table position 0x1B is the
escape to the extension (single-shift) table; an extension character costs two septets
(0x1B followed by its position).
"""

from __future__ import annotations

ESC = 0x1B

# 3GPP TS 23.038 section 6.2.1, GSM 7-bit default alphabet. Index = septet value.
# Position 0x1B is ESC, not a character; "\x1b" below is only a placeholder.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# 3GPP TS 23.038 section 6.2.1.1, default extension table (each costs ESC + septet).
GSM7_EXT = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

# 3GPP TS 23.038 annex A.3.3, Portuguese National Language Locking Shift Table
# (the 360nrs seed's "GSM-PT basic character set"; identical to it cell for cell).
PT_BASIC = (
    "@£$¥êéúíóç\nÔô\rÁá"
    "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"
    " !\"#º%&'()*+,-./"
    "0123456789:;<=>?"
    "ÍABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÃÕÚÜ§"
    "~abcdefghijklmno"
    "pqrstuvwxyzãõ`üà"
)

# 3GPP TS 23.038 annex A.2.3, Portuguese National Language Single Shift Table
# (the 360nrs seed's "GSM-PT extended character set"). The seed's copy is flattened row by row
# and lost its empty cells, so the column of each entry comes from the 3GPP table; the test
# suite checks that flattening this table row by row gives the seed's text back.
# 0x0D (CR2) and 0x1B (SS2) are control positions, not characters.
PT_EXT = {
    0x05: "ê",
    0x09: "ç",
    0x0A: "\f",
    0x0B: "Ô",
    0x0C: "ô",
    0x0E: "Á",
    0x0F: "á",
    0x12: "Φ",
    0x13: "Γ",
    0x14: "^",
    0x15: "Ω",
    0x16: "Π",
    0x17: "Ψ",
    0x18: "Σ",
    0x19: "Θ",
    0x1F: "Ê",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x41: "À",
    0x49: "Í",
    0x4F: "Ó",
    0x55: "Ú",
    0x5B: "Ã",
    0x5C: "Õ",
    0x61: "Â",
    0x65: "€",
    0x69: "í",
    0x6F: "ó",
    0x75: "ú",
    0x7B: "ã",
    0x7C: "õ",
    0x7F: "â",
}


def septet_map(basic: str, ext: dict[int, str]) -> dict[str, tuple[int, ...]]:
    """char -> its septets; a character present in both tables uses the cheaper basic one."""
    out: dict[str, tuple[int, ...]] = {}
    for code, ch in ext.items():
        out[ch] = (ESC, code)
    for code, ch in enumerate(basic):
        if code != ESC:
            out[ch] = (code,)
    return out


GSM7_SEPTETS = septet_map(GSM7_BASIC, GSM7_EXT)
PT_SEPTETS = septet_map(PT_BASIC, PT_EXT)

# Capacities in septets (GSM) or UTF-16 code units (UCS-2): (single message, concatenated part).
# A concatenated part carries a 6-octet UDH (concatenation IE); a national-language table adds a
# 3-octet IE per table used: locking shift only -> 155 / 149, locking + single shift -> 152 / 146.
GSM7_CAPACITY = (160, 153)
UCS2_CAPACITY = (70, 67)
PT_CAPACITY_LOCKING = (155, 149)
PT_CAPACITY_BOTH = (152, 146)
# 360nrs does not say which header it counts for gsm-pt; declaring too few parts fails the message
# (error 105), declaring more is harmless, so the part count declared to a provider uses this one.
PT_CAPACITY_DECLARED = PT_CAPACITY_BOTH

# The 360nrs `trans` table, verbatim from the seed (note 'ç' -> 'Ç': Ç is in GSM-7, ç is not).
NRS360_TRANS = {
    "á": "a", "í": "i", "ó": "o", "ú": "u", "ç": "Ç",
    "Á": "A", "Í": "I", "Ó": "O", "Ú": "U",
    "À": "A", "È": "E", "Ì": "I", "Ò": "O", "Ù": "U",
    "º": "", "ª": "",
    "Õ": "O", "õ": "o",
    "â": "a", "ê": "e", "î": "i", "ô": "o", "û": "u",
    "Â": "A", "Ê": "E", "Î": "I", "Ô": "O", "Û": "U",
    "ã": "a", "Ã": "A",
}  # fmt: skip

# Typography that word processors and phones insert, to GSM-7 equivalents.
TYPOGRAPHIC_TRANS = {
    # single quotes, apostrophes, primes
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    # double quotes, guillemets
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    # hyphens and dashes, minus sign
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    # ellipsis
    "\u2026": "...",
    # no-break and typographic spaces
    "\u00a0": " ", "\u2000": " ", "\u2001": " ", "\u2002": " ", "\u2003": " ", "\u2004": " ",
    "\u2005": " ", "\u2006": " ", "\u2007": " ", "\u2008": " ", "\u2009": " ", "\u200a": " ",
    "\u202f": " ", "\u205f": " ",
    # invisible: soft hyphen, zero-width space, word joiner, zero-width no-break space (BOM)
    "\u00ad": "", "\u200b": "", "\u2060": "", "\ufeff": "",
}  # fmt: skip

TRANSLITERATION = {**NRS360_TRANS, **TYPOGRAPHIC_TRANS}

# For str.translate.
TRANSLATE_TABLE = {ord(k): v for k, v in TRANSLITERATION.items()}

ENCODINGS = ("GSM-7", "GSM-PT", "UCS-2")
GSM7, GSM_PT, UCS2 = 0, 1, 2

# What 360nrs sends in place of a `{url|shorten}` link (its document: "{url|shorten} ->
# https://sms.tl/xxxxxx"): parts are counted with this length, not the long link's.
SHORT_LINK = "https://sms.tl/xxxxxx"
