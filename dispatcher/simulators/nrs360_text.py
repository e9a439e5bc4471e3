"""What the 360nrs document says about a message's text, for the simulator: `sub` substitution with its
filters (`shorten` gives `https://sms.tl/` and six characters, as the seed's example), the `trans = 1`
translation table, and the parts a text takes in each declared encoding. The simulator's own copy of
these rules: it never imports the adapter's."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from ..codecs import reference

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)((?:\|[A-Za-z]+)*)\}")


def _number(value: str, thousands: str, decimal: str) -> str:
    try:
        whole, _, frac = value.strip().replace(",", ".").partition(".")
        grouped = f"{int(whole):,}".replace(",", thousands)
    except ValueError:
        return value
    return grouped + (decimal + frac if frac else "")


FILTERS = {
    "lower": str.lower, "upper": str.upper,
    "capitalize": lambda s: s[:1].upper() + s[1:],
    "capitalizeAll": lambda s: " ".join(w[:1].upper() + w[1:] for w in s.split(" ")),
    "formatDotComma": lambda s: _number(s, ".", ","), "formatCommaDot": lambda s: _number(s, ",", "."),
    "shorten": lambda s: shorten(s),
}
SHORT_BASE = "https://sms.tl/"  # the seed: "{url|shorten} -> https://sms.tl/xxxxxx"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_URL = re.compile(r"https?://[^\s/$.?#][^\s]*", re.I)
# The seed's `trans = 1` table, as written there (the simulator's own copy: it never imports the adapter's).
TRANS = str.maketrans({"á": "a", "í": "i", "ó": "o", "ú": "u", "ç": "Ç", "Á": "A", "Í": "I", "Ó": "O", "Ú": "U",
                       "À": "A", "È": "E", "Ì": "I", "Ò": "O", "Ù": "U", "º": "", "ª": "", "Õ": "O", "õ": "o",
                       "â": "a", "ê": "e", "î": "i", "ô": "o", "û": "u", "Â": "A", "Ê": "E", "Î": "I", "Ô": "O",
                       "Û": "U", "ã": "a", "Ã": "A"})
_STAMP = re.compile(r"[0-9]{14}")


def shorten(url: str) -> str:
    """`https://sms.tl/` and six characters, the same for the same link; not a URL: left as it is
    (the seed: "It must be a valid url", with no error code for one that is not)."""
    url = url.strip()
    if not _URL.fullmatch(url):
        return url
    n = int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "big")
    code = ""
    for _ in range(6):
        n, r = divmod(n, 62)
        code += _ALPHABET[r]
    return SHORT_BASE + code


def stamp(value: Any) -> dt.datetime | None:
    """A `YYYYmmddHHiiss` date (UTC) as the seed writes them, or None."""
    if not isinstance(value, str) or not _STAMP.fullmatch(value):
        return None
    try:
        return dt.datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def compile_message(text: str) -> Any:
    """The message as a function of one recipient's `sub` values (parsed once per request)."""
    pieces: list[Any] = []
    pos = 0
    for m in _VAR.finditer(text):
        pieces.append(text[pos:m.start()])
        pieces.append((m.group(1), [FILTERS.get(f, str) for f in filter(None, m.group(2).split("|"))], m.group(0)))
        pos = m.end()
    pieces.append(text[pos:])

    def render(values: dict[str, Any]) -> str:
        out = []
        for p in pieces:
            if type(p) is str:
                out.append(p)
            elif p[0] in values:
                v = str(values[p[0]])
                for f in p[1]:
                    v = f(v)
                out.append(v)
            else:
                out.append(p[2])  # unknown placeholders stay as written
        return "".join(out)
    return render


_GSM7 = frozenset(reference.GSM7_SEPTETS)
_EXT = tuple(ch for ch, code in reference.GSM7_SEPTETS.items() if len(code) == 2)


def parts_needed(text: str, encoding: str) -> int | None:
    """Parts the text takes in the declared encoding, or None when it cannot be encoded in it.

    Plain texts (no escape pair, no surrogate pair: nothing that cannot be split anywhere) are
    counted by arithmetic at C speed; the rest by the reference codec.
    """
    if encoding == "GSM-7":
        if not _GSM7.issuperset(text):
            return None
        if not any(ch in text for ch in _EXT):
            n = len(text)
            return 1 if n <= 160 else -(-n // 153)
    elif encoding == "UCS-2":
        n = len(text)
        if text.isascii() or len(text.encode("utf-16-le")) == 2 * n:
            return 1 if n <= 70 else -(-n // 67)
        return _ucs2_parts(text)
    enc, _units, parts = reference.count(text, gsm_pt=encoding == "GSM-PT")
    if enc == "UCS-2" or (enc == "GSM-PT" and encoding == "GSM-7"):
        return None
    return parts


def _ucs2_parts(text: str) -> int:
    single, concat = reference.UCS2_CAPACITY
    return len(reference.split(text, "UCS-2", single, concat))
