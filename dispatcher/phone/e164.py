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

`to_e164_column` (column.py) gives the same answers for a whole column at ~0.15 us a number.
"""

from __future__ import annotations

from collections.abc import Callable

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from .metadata import MOBILE, MOBILE_TYPES, STRIP, VALID, region_rules


def _validator(cc: int, which: int) -> Callable[[str], bool]:
    """A function telling whether a national number under country code `cc` is valid (`which` VALID)
    or mobile (MOBILE)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions:
        return lambda nsn: False
    if len(regions) == 1:
        r = region_rules(str(cc) if regions[0] == "001" else regions[0])
        if r is None or r[which] is None:
            return lambda nsn: False
        match = r[which].fullmatch
        return lambda nsn: match(nsn) is not None

    def several(nsn: str) -> bool:  # the same choice of region as phonenumbers.region_code_for_number
        for region in regions:
            r = region_rules(region)
            if r is None or r[VALID] is None:
                continue
            if (r.leading.match(nsn) is not None) if r.leading is not None else (r[VALID].fullmatch(nsn) is not None):
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
    s = raw.translate(STRIP)
    if s[:1] == "+":
        if s[1:].isdigit() and (found := _international(s[1:], _CODES[mobile])):
            return found
    elif s[:2] == "00":
        r = region_rules(region) if region else None
        if r is not None and r.intl00 and s.isdigit() and (found := _international(s[2:], _CODES[mobile])):
            return found
    elif region and s.isdigit() and (r := region_rules(region)) is not None:
        cc = str(r.country_code)
        check = _CHECKS[mobile][r.country_code]
        # like phonenumbers: read a leading country code only when the whole is not a national number
        # and the rest is one (of the default region: a number of another region sharing the code
        # goes to the slow path)
        if s.startswith(cc) and r.general is not None and not r.general.fullmatch(s) and r.general.fullmatch(s[len(cc):]) \
                and check(s[len(cc):]):
            return f"+{s}"
        nsn = s[len(r.trunk):] if r.trunk and s.startswith(r.trunk) else s
        if check(nsn):
            return f"+{cc}{nsn}"
    if not s or len(s) > 20:
        return None
    return _slow(raw, region, mobile)


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

