"""Phone numbers to E.164, at a few microseconds a number, and whether they are mobile.

`phonenumbers.parse` + `is_valid_number` cost about 70 us a number, more than the whole
rest of the hot path. The fast path applies the same metadata (possible lengths and
national-number patterns of every number type, region chosen by leading digits), folded
into one compiled regex per region, to the common shapes (`+CC...`, `00CC...`, `CC...`
for the default region, national with a plain trunk prefix). It only asks `phonenumbers`
when the fast path says "no", so it can only ever accept what `phonenumbers` accepts
(tests/test_units.py checks that on many numbers).

SMS and WhatsApp need a mobile number: `mobile=True` accepts only what `phonenumbers.number_type`
calls MOBILE or FIXED_LINE_OR_MOBILE (a country whose fixed and mobile numbers look alike),
by a second regex per region built from the same metadata in the same order as
`number_type` decides (general, then no premium/toll-free/... type, then mobile), so the
check costs one regex match, not a parse.

`to_e164_column` gives the same answers for a whole column at ~0.15 us a number: the same metadata
compiled into DFAs, run by one numba call (phone_column); what its fast path cannot decide goes
through `to_e164`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

_STRIP = str.maketrans("", "", " -().\u00a0/")
_TYPES = (
    "mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip", "personal_number",
    "pager", "uan", "voicemail",
)
_NOT_MOBILE = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail")
MOBILE_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})
VALID, MOBILE = 2, 6  # which regex of a region a validator uses


def _desc(desc) -> str | None:
    """A regex for one number type: its possible lengths as a lookahead, then its pattern."""
    if desc is None or desc.national_number_pattern is None:
        return None
    lengths = desc.possible_length or ()
    ahead = "(?=" + "|".join(f"\\d{{{n}}}$" for n in lengths) + ")" if lengths else ""
    return f"{ahead}(?:{desc.national_number_pattern})"


def _mobile(md: PhoneMetadata, general: str | None) -> re.Pattern[str] | None:
    """A number `number_type` calls MOBILE or FIXED_LINE_OR_MOBILE: the general pattern, none of the
    types it tests before (premium rate, toll free, ...), then the mobile pattern (the fixed-line one
    where the country's two are the same)."""
    mobile = _desc(md.fixed_line if md.same_mobile_and_fixed_line_pattern else md.mobile)
    if general is None or mobile is None:
        return None
    others = [d for d in (_desc(getattr(md, t, None)) for t in _NOT_MOBILE) if d]
    exclude = f"(?!(?:{'|'.join(others)})$)" if others else ""
    return re.compile(f"(?={general}$){exclude}(?:{mobile})")


def _metadata(region: str) -> PhoneMetadata | None:
    """A region's metadata; a country code (digits) for the non-geographic ones (+800, +882...)."""
    md = PhoneMetadata.metadata_for_region(region)
    if md is None and region.isdigit():
        md = PhoneMetadata.metadata_for_nongeo_region(int(region))
    return md


@cache
def _region(region: str) -> tuple[Any, ...] | None:
    """(country code, leading-digits regex, validity regex, plain trunk prefix, general regex,
    international prefix is 00, mobile regex) of a region."""
    md = _metadata(region)
    if md is None:
        return None
    general = _desc(md.general_desc)
    types = [d for d in (_desc(getattr(md, t, None)) for t in _TYPES) if d]
    valid = re.compile(f"(?={general}$)(?:{'|'.join(types)})") if general and types else None
    leading = re.compile(md.leading_digits) if md.leading_digits else None
    prefix = md.national_prefix_for_parsing
    plain = prefix if prefix and prefix.isdigit() and md.national_prefix_transform_rule is None else None
    return (md.country_code, leading, valid, plain, re.compile(general) if general else None,
            md.international_prefix == "00", _mobile(md, general))


def _validator(cc: int, which: int) -> Callable[[str], bool]:
    """A function telling whether a national number under country code `cc` is valid (`which` VALID)
    or mobile (MOBILE)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions:
        return lambda nsn: False
    if len(regions) == 1:
        r = _region(str(cc) if regions[0] == "001" else regions[0])
        if r is None or r[which] is None:
            return lambda nsn: False
        match = r[which].fullmatch
        return lambda nsn: match(nsn) is not None

    def several(nsn: str) -> bool:  # the same choice of region as phonenumbers.region_code_for_number
        for region in regions:
            r = _region(region)
            if r is None or r[VALID] is None:
                continue
            if (r[1].match(nsn) is not None) if r[1] is not None else (r[VALID].fullmatch(nsn) is not None):
                return r[which] is not None and r[which].fullmatch(nsn) is not None
        return False
    return several


class _Validators(dict):
    def __init__(self, which: int) -> None:
        super().__init__()
        self.which = which

    def __missing__(self, cc: int) -> Callable[[str], bool]:
        v = self[cc] = _validator(cc, self.which)
        return v


_CHECKS = {False: _Validators(VALID), True: _Validators(MOBILE)}


class _ByPrefix(dict):
    """Country-code digits -> (code, validator), for the codes that exist."""

    def __init__(self, checks: _Validators) -> None:
        super().__init__()
        self.checks = checks

    def __missing__(self, digits: str) -> tuple[int, Callable[[str], bool]] | None:
        cc = int(digits) if digits.isdigit() and digits[0] != "0" else -1  # no code starts with 0: +034 is not +34
        v = self[digits] = (cc, self.checks[cc]) if cc in COUNTRY_CODE_TO_REGION_CODE else None
        return v


_CODES = {k: _ByPrefix(v) for k, v in _CHECKS.items()}


def _international(digits: str, codes: _ByPrefix) -> str | None:
    for n in (1, 2, 3):
        found = codes[digits[:n]]
        if found is not None:
            nsn = digits[n:]
            return f"+{digits}" if nsn and found[1](nsn) else None
    return None


def _parse(raw: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return num if phonenumbers.is_valid_number(num) else None


def _slow(raw: str, region: str | None, mobile: bool) -> str | None:
    num = _parse(raw, region)
    if num is None or (mobile and phonenumbers.number_type(num) not in MOBILE_TYPES):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def to_e164(raw: str, region: str | None = None, mobile: bool = False) -> str | None:
    """The number in E.164 (`+34666555444`), or None when it is not a valid number (with `mobile`,
    not a valid mobile number)."""
    s = raw.translate(_STRIP)
    if s[:1] == "+":
        if s[1:].isdigit() and (found := _international(s[1:], _CODES[mobile])):
            return found
    elif s[:2] == "00":
        r = _region(region) if region else None
        if r is not None and r[5] and s.isdigit() and (found := _international(s[2:], _CODES[mobile])):
            return found
    elif region and s.isdigit() and (r := _region(region)) is not None:
        cc = str(r[0])
        check = _CHECKS[mobile][r[0]]
        # like phonenumbers: read a leading country code only when the whole is not a national number
        # and the rest is one (of the default region: a number of another region sharing the code
        # goes to the slow path)
        if s.startswith(cc) and r[4] is not None and not r[4].fullmatch(s) and r[4].fullmatch(s[len(cc):]) \
                and check(s[len(cc):]):
            return f"+{s}"
        nsn = s[len(r[3]):] if r[3] and s.startswith(r[3]) else s
        if check(nsn):
            return f"+{cc}{nsn}"
    if not s or len(s) > 20:
        return None
    return _slow(raw, region, mobile)


def to_e164_column(raws: Sequence[str], region: str | None, mobile: bool = False) -> list[str | None]:
    """`[to_e164(r, region, mobile) for r in raws]`, at a tenth of the cost: one numba call runs the
    fast path over the whole column (see phone_column); the numbers it leaves go through `to_e164`.
    The first call in a process loads the kernel (~0.5 s; ~3 s to compile it on the very first run)."""
    if not raws:
        return []
    from .phone_column import to_e164_column as column  # numba and numpy: only for callers of columns

    return column(raws, region, mobile)


def warm_up(region: str | None) -> None:
    """Load the column kernel and build the tables of `region`'s country code (what the first chunk would
    otherwise pay, ~0.5 s) before a run's clock starts."""
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE) if region else None
    to_e164_column([phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164) if example
                    else "+34600000000"], region, True)


def number_problem(raw: str, region: str | None, mobile: bool) -> tuple[str, str]:
    """(code, reason) for a number `to_e164` refused: `not_mobile` for a valid number of another type
    where a mobile one is needed, else `invalid_number`. Only rejected numbers come here."""
    num = _parse(raw, region) if mobile and len(raw) <= 40 else None
    if num is not None:
        kind = phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(num)).lower().replace("_", " ")
        e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        return "not_mobile", (f"'{raw}' ({e164}) is a {kind} number, not a mobile one: SMS and WhatsApp need a "
                              "mobile number (allow_landlines = true in [message] sends to it anyway)")
    return "invalid_number", f"'{raw}' is not a valid phone number" + (f" (default region {region})" if region else "")


def valid_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS

