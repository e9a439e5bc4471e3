"""What the phone code reads of `phonenumbers`' metadata, in one place: the number types, the
characters a number may carry, and a region's rules (its patterns compiled to regexes) as a named
tuple. Both the scalar fast path (e164.py) and the column kernel (column.py) start from these."""

from __future__ import annotations

import re
from functools import cache
from typing import NamedTuple

import phonenumbers
from phonenumbers import PhoneMetadata

STRIP = str.maketrans("", "", " -().\u00a0/")
NUMBER_TYPES = (
    "mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip", "personal_number",
    "pager", "uan", "voicemail",
)
NOT_MOBILE = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail")
MOBILE_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})
VALID, MOBILE = 2, 6  # which regex of a region a validator uses


class RegionRules(NamedTuple):
    """A region's numbers as regexes, from its metadata. VALID and MOBILE index `valid` and `mobile`."""

    country_code: int
    leading: re.Pattern[str] | None  # leading digits: which region of a shared country code a number is
    valid: re.Pattern[str] | None
    trunk: str | None  # a plain national (trunk) prefix, digits only
    general: re.Pattern[str] | None
    intl00: bool  # the international prefix is 00
    mobile: re.Pattern[str] | None


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
    others = [d for d in (_desc(getattr(md, t, None)) for t in NOT_MOBILE) if d]
    exclude = f"(?!(?:{'|'.join(others)})$)" if others else ""
    return re.compile(f"(?={general}$){exclude}(?:{mobile})")


def metadata(region: str) -> PhoneMetadata | None:
    """A region's metadata; a country code (digits) for the non-geographic ones (+800, +882...)."""
    md = PhoneMetadata.metadata_for_region(region)
    if md is None and region.isdigit():
        md = PhoneMetadata.metadata_for_nongeo_region(int(region))
    return md


@cache
def region_rules(region: str) -> RegionRules | None:
    """(country code, leading-digits regex, validity regex, plain trunk prefix, general regex,
    international prefix is 00, mobile regex) of a region."""
    md = metadata(region)
    if md is None:
        return None
    general = _desc(md.general_desc)
    types = [d for d in (_desc(getattr(md, t, None)) for t in NUMBER_TYPES) if d]
    valid = re.compile(f"(?={general}$)(?:{'|'.join(types)})") if general and types else None
    leading = re.compile(md.leading_digits) if md.leading_digits else None
    prefix = md.national_prefix_for_parsing
    plain = prefix if prefix and prefix.isdigit() and md.national_prefix_transform_rule is None else None
    return RegionRules(md.country_code, leading, valid, plain, re.compile(general) if general else None,
            md.international_prefix == "00", _mobile(md, general))
