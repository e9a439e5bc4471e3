"""Phone numbers to E.164, at a few microseconds a number (e164.py), or a whole column in one numba
call (column.py); both read `phonenumbers`' metadata through metadata.py, and the kernel's DFAs come
from dfa.py. tests/test_units.py checks that the column and the scalar path agree on many numbers."""

from __future__ import annotations

from collections.abc import Sequence

import phonenumbers

from .e164 import number_problem, to_e164, valid_region
from .metadata import MOBILE_TYPES

__all__ = ["MOBILE_TYPES", "number_problem", "to_e164", "to_e164_column", "valid_region", "warm_up"]


def to_e164_column(raws: Sequence[str], region: str | None, mobile: bool = False) -> list[str | None]:
    """`[to_e164(r, region, mobile) for r in raws]`, at a tenth of the cost: one numba call runs the
    fast path over the whole column (column.py); the numbers it leaves go through `to_e164`.
    The first call in a process loads the kernel (~0.5 s; ~3 s to compile it on the very first run)."""
    if not raws:
        return []
    from .column import to_e164_column as over_column  # numba and numpy: only for callers of columns

    return over_column(raws, region, mobile)


def warm_up(region: str | None) -> None:
    """Load the column kernel and build the tables of `region`'s country code (what the first chunk would
    otherwise pay, ~0.5 s) before a run's clock starts."""
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE) if region else None
    to_e164_column([phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164) if example
                    else "+34600000000"], region, True)
