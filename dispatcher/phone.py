"""Phone numbers to E.164, at a few microseconds a number.

`phonenumbers.parse` + `is_valid_number` cost about 70 us a number, more than the whole
rest of the hot path. The fast path applies the same metadata (possible lengths and
national-number patterns of every number type, region chosen by leading digits), folded
into one compiled regex per region, to the common shapes (`+CC...`, `00CC...`, `CC...`
for the default region, national with a plain trunk prefix). It only asks `phonenumbers`
when the fast path says "no", so it can only ever accept what `phonenumbers` accepts
(tests/test_phone.py checks that on many numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

_STRIP = str.maketrans("", "", " -().\u00a0/")
_TYPES = (
    "mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip", "personal_number",
    "pager", "uan", "voicemail",
)


def _desc(desc) -> str | None:
    """A regex for one number type: its possible lengths as a lookahead, then its pattern."""
    if desc is None or desc.national_number_pattern is None:
        return None
    lengths = desc.possible_length or ()
    ahead = "(?=" + "|".join(f"\\d{{{n}}}$" for n in lengths) + ")" if lengths else ""
    return f"{ahead}(?:{desc.national_number_pattern})"


@cache
def _region(region: str) -> tuple[int, re.Pattern[str] | None, re.Pattern[str] | None, str | None] | None:
    """(country code, leading-digits regex, validity regex, plain trunk prefix) of a region."""
    md = PhoneMetadata.metadata_for_region(region)
    if md is None and region.isdigit():
        md = PhoneMetadata.metadata_for_nongeo_region(int(region))
    if md is None:
        return None
    general = _desc(md.general_desc)
    types = [d for d in (_desc(getattr(md, t, None)) for t in _TYPES) if d]
    valid = re.compile(f"(?={general}$)(?:{'|'.join(types)})") if general and types else None
    leading = re.compile(md.leading_digits) if md.leading_digits else None
    prefix = md.national_prefix_for_parsing
    plain = prefix if prefix and prefix.isdigit() and md.national_prefix_transform_rule is None else None
    return (md.country_code, leading, valid, plain, re.compile(general) if general else None,
            md.international_prefix == "00")


def _validator(cc: int) -> Callable[[str], bool]:
    """A function telling whether a national number is valid under country code `cc`."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions:
        return lambda nsn: False
    if len(regions) == 1:
        r = _region(str(cc) if regions[0] == "001" else regions[0])
        if r is None or r[2] is None:
            return lambda nsn: False
        match = r[2].fullmatch
        return lambda nsn: match(nsn) is not None

    def several(nsn: str) -> bool:  # the same choice of region as phonenumbers.region_code_for_number
        for region in regions:
            r = _region(region)
            if r is None or r[2] is None:
                continue
            if r[1] is not None:
                if r[1].match(nsn):
                    return r[2].fullmatch(nsn) is not None
            elif r[2].fullmatch(nsn):
                return True
        return False
    return several


class _Validators(dict):
    def __missing__(self, cc: int) -> Callable[[str], bool]:
        v = self[cc] = _validator(cc)
        return v


_VALID = _Validators()


def _valid(cc: int, nsn: str) -> bool:
    return _VALID[cc](nsn)


class _ByPrefix(dict):
    """Country-code digits -> (code, validator), for the codes that exist."""

    def __missing__(self, digits: str) -> tuple[int, Callable[[str], bool]] | None:
        cc = int(digits) if digits.isdigit() else -1
        v = self[digits] = (cc, _VALID[cc]) if cc in COUNTRY_CODE_TO_REGION_CODE else None
        return v


_CODES = _ByPrefix()


def _international(digits: str) -> str | None:
    codes = _CODES
    for n in (1, 2, 3):
        found = codes[digits[:n]]
        if found is not None:
            nsn = digits[n:]
            return f"+{digits}" if nsn and found[1](nsn) else None
    return None


def _slow(raw: str, region: str | None) -> str | None:
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def to_e164(raw: str, region: str | None = None) -> str | None:
    """The number in E.164 (`+34666555444`), or None when it is not a valid number."""
    s = raw.translate(_STRIP)
    if s[:1] == "+":
        if s[1:].isdigit() and (found := _international(s[1:])):
            return found
    elif s[:2] == "00":
        r = _region(region) if region else None
        if r is not None and r[5] and s.isdigit() and (found := _international(s[2:])):
            return found
    elif region and s.isdigit() and (r := _region(region)) is not None:
        cc = str(r[0])
        # like phonenumbers: read a leading country code only when the whole is not a national number
        if s.startswith(cc) and (r[4] is None or not r[4].fullmatch(s)) and _valid(r[0], s[len(cc):]):
            return f"+{s}"
        nsn = s[len(r[3]):] if r[3] and s.startswith(r[3]) else s
        if _valid(r[0], nsn):
            return f"+{cc}{nsn}"
    if not s or len(s) > 20:
        return None
    return _slow(raw, region)


def valid_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS
