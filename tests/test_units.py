"""The engine's small parts: number normalisation, templates, the rate limiter, the run journal."""

from __future__ import annotations

import asyncio
import random
import re
import time

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pace import max_window

from dispatcher.engine.pace import RateLimit
from dispatcher.errors import RunError
from dispatcher.phone import column as phone_column
from dispatcher.phone import e164, number_problem, to_e164, to_e164_column
from dispatcher.phone.metadata import MOBILE, VALID
from dispatcher.render import EmptyVariable, TemplateError, compile_template, problem
from dispatcher.state import RunState, SeqSet, _parse, _ranges


def _reference(raw: str, region: str | None, mobile: bool = False) -> str | None:
    try:
        n = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(n):
        return None
    if mobile and phonenumbers.number_type(n) not in (phonenumbers.PhoneNumberType.MOBILE,
                                                      phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return None
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)


_KINDS = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
          phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
          phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.TOLL_FREE,
          phonenumbers.PhoneNumberType.SHARED_COST, phonenumbers.PhoneNumberType.VOIP,
          phonenumbers.PhoneNumberType.PERSONAL_NUMBER, phonenumbers.PhoneNumberType.PAGER,
          phonenumbers.PhoneNumberType.UAN, phonenumbers.PhoneNumberType.VOICEMAIL]


def _numbers(seed: int, n: int) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    regions = ["ES", "GB", "US", "IT", "FR", "DE", "IN", "BR", "PT", "MX", "RU", "KZ", "AU", "JP", "CA", "AR", "NL"]
    out = []
    for _ in range(n):
        region = rnd.choice(regions)
        cc = str(phonenumbers.country_code_for_region(region))
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(6, 12)))
        example = phonenumbers.example_number_for_type(region, rnd.choice(_KINDS))
        if example is not None and rnd.random() < 0.5:  # valid-looking: an example with its tail changed
            nsn = phonenumbers.national_significant_number(example)
            k = rnd.randint(0, 3)
            digits = nsn[: len(nsn) - k] + "".join(rnd.choice("0123456789") for _ in range(k))
        shape = rnd.choice(["+{cc}{d}", "00{cc}{d}", "{cc}{d}", "{d}", "0{d}", "+{cc} {d}", "({d})"])
        out.append((shape.format(cc=cc, d=digits), rnd.choice([region, rnd.choice(regions)])))
    return out


def test_fast_numbers_never_accept_what_phonenumbers_refuses():
    """The fast path only ever says yes when phonenumbers says the same E.164."""
    for raw, region in _numbers(1, 4000):
        assert to_e164(raw, region) == _reference(raw, region), (raw, region)


def test_fast_numbers_are_mobile_exactly_when_phonenumbers_says_so():
    """With `mobile`, the fast path accepts exactly the numbers whose phonenumbers type is MOBILE or
    FIXED_LINE_OR_MOBILE: premium, toll-free, fixed-line... numbers are refused, landline-or-mobile kept."""
    kinds = set()
    for raw, region in _numbers(2, 6000):
        want = _reference(raw, region, mobile=True)
        assert to_e164(raw, region, mobile=True) == want, (raw, region)
        valid = _reference(raw, region)
        if valid:
            kinds.add((phonenumbers.number_type(phonenumbers.parse(valid)), want is not None))
    T = phonenumbers.PhoneNumberType
    assert {(T.MOBILE, True), (T.FIXED_LINE, False), (T.FIXED_LINE_OR_MOBILE, True),
            (T.TOLL_FREE, False), (T.PREMIUM_RATE, False)} <= kinds  # the sample covers what matters


@pytest.mark.parametrize("raw, region, expected", [
    ("+34 666 555 444", None, "+34666555444"), ("0034666555444", "ES", "+34666555444"),
    ("666555444", "ES", "+34666555444"), ("34666555444", "ES", "+34666555444"),
    ("07400 123456", "GB", "+447400123456"), ("(202) 555-0143", "US", "+12025550143"), ("12345", "ES", None),
    ("", "ES", None), ("not a number", "ES", None), ("+39 06 1234 5678", None, "+390612345678"),
    ("+034666555444", "ES", None), ("+012025550143", None, None),
])
def test_number_shapes(raw, region, expected):
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize("raw, region, code", [
    ("+34 913 456 789", None, "not_mobile"), ("213456789", "PT", "not_mobile"), ("+34 803 123 456", None, "not_mobile"),
    ("+1 800 253 0000", None, "not_mobile"), ("+34 12", None, "invalid_number"),
])
def test_numbers_that_are_not_mobile_say_so(raw, region, code):
    assert to_e164(raw, region) is not None or code == "invalid_number"
    assert to_e164(raw, region, mobile=True) is None
    got, why = number_problem(raw, region, True)
    assert got == code and raw in why
    assert to_e164("+12025550143", None, mobile=True) == "+12025550143"  # US: fixed and mobile look alike


_JUNK = ["", " ", "+", "++34666555444", "00", "0", "+0", "+034666555444", "+012025550143", "0" * 30, "+" + "3" * 40,
         "6" * 21, "+34 666 555 444 " * 3, "+34\u00a0666555444", "+34 666\n555444", "\u0666\u0666\u0666\u0665\u0665",
         "+4407400123456", "447400123456", "07400123456", "34666555444", "3466655544", "+1 (202) 555-0143",
         "202.555.0143", "8 800 555 35 35", "88005553535", "+7 912 345 67 89", "+800 1234 5678", "+882 1234 5678",
         "+34 6a6 555 444", "tel:+34666555444", "+34666555444 ext. 12", "\ud800", "\t+34666555444", "+34/666/555/444"]


@pytest.mark.parametrize("mobile", [False, True])
def test_column_numbers_are_to_e164s(mobile):
    """to_e164_column gives, number for number, what to_e164 gives: mixed shapes, every default region
    the generator uses (and none, an unknown one, a non-geographic code), invalid numbers, junk."""
    raws = [r for r, _ in _numbers(3 + mobile, 1200)] + _JUNK
    for region in ["ES", "GB", "US", "CA", "IT", "FR", "DE", "IN", "BR", "PT", "MX", "RU", "KZ", "AU", "JP", "AR",
                   "NL", None, "es", "XX", "800"]:
        got = to_e164_column(raws, region, mobile)
        assert got == [to_e164(r, region, mobile) for r in raws], region
    assert to_e164_column([], "ES") == []
    assert to_e164_column(["+34 666 555 444", "a\nb", ""], "ES") == ["+34666555444", None, None]
    assert to_e164_column(["666555444", "+34666555444\n"], "ES") == ["+34666555444", "+34666555444"]


@pytest.mark.parametrize("cc", [34, 44, 39, 7, 61, 590, 91, 49, 55, 351, 800, 882, 999])
def test_column_dfas_decide_as_the_regexes(cc):
    """A country code's DFA flags (bit 0 valid, bit 1 mobile) are what e164._validator's regexes say,
    for national numbers around the examples of every type of every region of the code, and random ones."""
    trans, flags = phone_column._cc_dfa(cc)
    checks = [e164._validator(cc, VALID), e164._validator(cc, MOBILE)]
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    examples = [phonenumbers.example_number_for_non_geo_entity(cc)] if regions == ("001",) else \
        [phonenumbers.example_number_for_type(r, k) for r in regions for k in _KINDS]
    seeds = [phonenumbers.national_significant_number(e) for e in examples if e is not None]
    assert seeds or cc == 999
    rnd = random.Random(cc)
    seen = set()
    for _ in range(3000):
        if seeds and rnd.random() < 0.8:
            base = rnd.choice(seeds)
            k = rnd.randint(0, min(len(base), 6))
            nsn = base[: len(base) - k] + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(max(0, k - 2), k + 2)))
        else:
            nsn = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 18)))
        state = 0
        for d in nsn:
            state = trans[state, int(d)]
        got = (bool(flags[state] & 1), bool(flags[state] & 2))
        assert got == (checks[0](nsn), checks[1](nsn)), (cc, nsn)
        seen.add(got)
    assert (False, False) in seen and (cc == 999 or (True, cc != 800) in seen)  # the sample says yes and no


def test_template_filters_and_slots():
    t = compile_template("Hola {name|capitalize}, {amount|formatDotComma} / {amount|formatCommaDot} "
                         "{name|capitalizeAll} {name|upper} {name} 100% {UNSUB_URL}")
    text, slots = t.fill({"name": "ana maría", "amount": "1234567.5"})
    assert text == "Hola Ana maría, 1.234.567,5 / 1,234,567.5 Ana María ANA MARÍA ana maría 100% {UNSUB_URL}"
    server = t.server_source
    for k, v in slots.items():
        server = server.replace("{" + k + "}", v)
    assert server == text  # what a provider builds from template + sub is what we counted
    assert t.variables == ("name", "amount")
    with pytest.raises(KeyError, match="amount"):
        t.fill({"name": "x"})
    with pytest.raises(TemplateError, match="nope"):
        compile_template("{a|nope}")


@pytest.mark.parametrize("source, line, column, what", [
    ("Hola {name, su pedido", 1, 6, "unclosed '{'"), ("a }", 1, 3, "stray '}'"), ("ok\n  {name", 2, 3, "unclosed '{'"),
    ("x { name }", 1, 3, "'{ name }' is not a placeholder"), ("{a|upper:x}", 1, 1, "takes no argument"),
    ("{a|nope}", 1, 1, "unknown filter 'nope'"), ("{{a}", 1, 4, "stray '}'"),
])
def test_template_brace_errors_say_where(source, line, column, what):
    with pytest.raises(TemplateError, match=re.escape(what)) as e:
        compile_template(source)
    assert (e.value.line, e.value.column) == (line, column)


def test_template_literal_braces_defaults_and_empty_values():
    t = compile_template("{{x}} {name|default:amigo mío|upper} {name} {{}}", allow_empty=())
    assert t.render({"name": "ana"}) == "{x} ANA ana {}"
    with pytest.raises(EmptyVariable, match="name"):  # `{name}` has no default, so an empty name is refused
        t.fill({"name": ""})
    assert problem(KeyError("x"))[0] == "missing_variable"
    t = compile_template("Hola {name|default:amigo mío|capitalize} {amount}", allow_empty=["amount"])
    text, slots = t.fill({"name": "", "amount": ""})
    assert text == "Hola Amigo mío "
    server = t.server_source
    for k, v in slots.items():
        server = server.replace("{" + k + "}", v)
    assert server == text and re.fullmatch(r"Hola \{[A-Za-z0-9_]+\} \{amount\}", t.server_source)
    assert compile_template("{a}").render({"a": ""}) == ""  # allow_empty defaults to all (the daemon's use)


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.text(max_size=20), min_size=3),
       st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=30))
@settings(max_examples=300, deadline=None)
def test_generated_fill_matches_a_plain_render(values, literal):
    t = compile_template(f"{literal}{{a}}-{{b|upper}}{literal}{{c|lower}}{{a|capitalize}}%s")
    expect = f"{literal}{values['a']}-{values['b'].upper()}{literal}{values['c'].lower()}" \
             f"{values['a'][:1].upper() + values['a'][1:]}%s"
    assert t.render(values) == expect


def test_rate_limit_never_exceeds_its_rate_in_any_second():
    """The limiter's admissions, timestamped where they happen: no one-second window over the rate,
    and the rate nearly reached."""
    async def go(rate: float, seconds: float) -> list[float]:
        limit = RateLimit(rate)
        stamps: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await limit.acquire()
            stamps.append(time.monotonic())
        return stamps

    for rate in (100.0, 2000.0):
        stamps = asyncio.run(go(rate, 2.5))
        worst = max_window(stamps)
        assert worst <= rate, (rate, worst)
        steady = [t for t in stamps if t >= stamps[0] + 1.0]
        assert len(steady) / (stamps[-1] - steady[0]) >= rate * 0.95


def test_seqset_and_journal_ranges(tmp_path):
    s = SeqSet()
    for x in [5, 1, 1 << 30, 7, 5]:
        s.add(x)
    assert len(s) == 4 and 5 in s and (1 << 30) in s and 6 not in s
    s.discard(5)
    assert 5 not in s and len(s) == 3
    seqs = [3, 4, 5, 9, 11, 12]
    assert _ranges(seqs) == b"3-5,9-9,11-12\n" and _ranges(seqs[::-1]) == _ranges(seqs)
    assert list(_parse(_ranges(seqs).decode())) == seqs and list(_parse("3-5,9,11-12\n")) == seqs
    assert list(_parse("3-5,9,11-12\n")) == seqs
    state = RunState(tmp_path, "r")
    state.open()
    state.sending([1, 2, 3])
    state.sending([10])
    state.cleared([2])
    state.close()
    with open(state.journal_path, "ab") as f:
        f.write(b"20-2")  # a torn last line from a killed run is ignored
    assert sorted(RunState(tmp_path, "r").attempted()) == [1, 3, 10]


def test_a_run_is_run_by_one_process_at_a_time(tmp_path):
    first = RunState(tmp_path, "one")
    first.open()
    second = RunState(tmp_path, "one")
    with pytest.raises(RunError, match="running in another process"):
        second.lock()
    RunState(tmp_path, "other").lock()  # another run is free
    first.close()
    second.open()  # let go with the first's close
    second.close()
