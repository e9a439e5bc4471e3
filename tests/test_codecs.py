"""dispatcher.codecs: tables against the 360nrs seed, the reference rules, the numba kernels
against the reference (property tests), payloads, transliteration and the `segment` CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec, an independent GSM-7 implementation)
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatcher.codecs import ENCODINGS, Analysis, Segmentation, analyze, reference, segment
from dispatcher.codecs.batch import analyze_slots, to_codepoints
from dispatcher.codecs.cli import main as cli_main
from dispatcher.codecs.segmentation import pack_septets
from dispatcher.codecs.tables import (
    GSM7_BASIC,
    GSM7_EXT,
    GSM7_SEPTETS,
    NRS360_TRANS,
    PT_BASIC,
    PT_EXT,
    PT_SEPTETS,
    TRANSLITERATION,
)

# --------------------------------------------------------------------------------------------
# The annex of the 360nrs seed (nrs360-multichannel-api.txt), copied row by row: each row is the
# row's septet offset then its non-empty cells, left to right (columns 0x00, 0x10, ... 0x70).
# The extension tables are flattened in the seed: empty cells are gone, so a cell's column can
# only be recovered from the 3GPP table. If the seed file is present, the copy is checked against it.

SEED_ANNEX = {
    "GSM basic": """
0x00 @ Δ SP 0 ¡ P ¿ p
0x01 £ _ ! 1 A Q a q
0x02 $ Φ " 2 B R b r
0x03 ¥ Γ # 3 C S c s
0x04 è Λ ¤ 4 D T d t
0x05 é Ω % 5 E U e u
0x06 ù Π & 6 F V f v
0x07 ì Ψ ' 7 G W g w
0x08 ò Σ ( 8 H X h x
0x09 Ç Θ ) 9 I Y i y
0x0A LF Ξ * : J Z j z
0x0B Ø ESC + ; K Ä k ä
0x0C ø Æ , < L Ö l ö
0x0D CR æ - = M Ñ m ñ
0x0E Å ß . > N Ü n ü
0x0F å É / ? O § o à
""",
    "GSM extended": """
0x00 |
0x01
0x02
0x03
0x04 ^
0x05 €
0x06
0x07
0x08 {
0x09 }
0x0A FF
0x0B SS2
0x0C [
0x0D CR2 ~
0x0E ]
0x0F \\
""",
    "GSM-PT basic": """
0x00 @ Δ SP 0 Í P ~ p
0x01 £ _ ! 1 A Q a q
0x02 $ ª " 2 B R b r
0x03 ¥ Ç # 3 C S c s
0x04 ê À º 4 D T d t
0x05 é ∞ % 5 E U e u
0x06 ú ^ & 6 F V f v
0x07 í \\ ' 7 G W g w
0x08 ó € ( 8 H X h x
0x09 ç Ó ) 9 I Y i y
0x0A LF | * : J Z j z
0x0B Ô ESC + ; K Ã k ã
0x0C ô Â , < L Õ l õ
0x0D CR â - = M Ú m `
0x0E Á Ê . > N Ü n ü
0x0F á É / ? O § o à
""",
    "GSM-PT extended": """
0x00 |
0x01 À Â
0x02 Φ
0x03 Γ
0x04 ^
0x05 ê Ω Ú € ú
0x06 Π
0x07 Ψ
0x08 Σ {
0x09 ç Θ } Í í
0x0A FF
0x0B Ô SS2 Ã ã
0x0C ô [ Õ õ
0x0D CR2 ~
0x0E Á ]
0x0F á Ê \\ Ó ó â
""",
}
SEED_TITLES = {
    "GSM basic": "Annexes GSM character set",
    "GSM extended": "GSM extended",
    "GSM-PT basic": "GSM-PT character set",
    "GSM-PT extended": "GSM-PT extended",
}
SEED_TRANS_LINE = (
    "'á' => 'a', 'í'=>'i', 'ó'=>'o', 'ú'=>'u', 'ç'=>'Ç', 'Á'=>'A', 'Í'=>'I', 'Ó'=>'O', 'Ú'=>'U', "
    "'À'=>'A', 'È'=>'E', 'Ì'=>'I', 'Ò'=>'O', 'Ù'=>'U', 'º' => '', 'ª' => '', 'Õ' => 'O', 'õ' => 'o', "
    "'â' => 'a', 'ê' => 'e', 'î'=>'i', 'ô'=>'o', 'û'=>'u', 'Â'=>'A', 'Ê'=>'E', 'Î'=>'I', 'Ô'=>'O', "
    "'Û'=>'U', 'ã' => 'a', 'Ã' => 'A'."
)
TOKEN_NAMES = {" ": "SP", "\n": "LF", "\r": "CR", "\f": "FF"}


def _seed_path() -> Path | None:
    candidates = [os.environ.get("DISPATCHER_SEEDS", "")]
    candidates += [str(p / "shared" / "seeds") for p in Path(__file__).resolve().parents]
    for c in candidates:
        if c and (Path(c) / "nrs360-multichannel-api.txt").is_file():
            return Path(c) / "nrs360-multichannel-api.txt"
    return None


def _rows(copy: str) -> dict[int, list[str]]:
    rows = {}
    for line in copy.strip().splitlines():
        head, *cells = line.split(" ")
        rows[int(head, 16)] = cells
    return rows


def _flatten_basic(basic: str) -> dict[int, list[str]]:
    return {
        r: [
            "ESC" if c * 16 + r == 0x1B else TOKEN_NAMES.get(basic[c * 16 + r], basic[c * 16 + r])
            for c in range(8)
        ]
        for r in range(16)
    }


def _flatten_ext(ext: dict[int, str]) -> dict[int, list[str]]:
    cells = {code: TOKEN_NAMES.get(ch, ch) for code, ch in ext.items()}
    cells[0x0D] = "CR2"  # control positions of every single-shift table
    cells[0x1B] = "SS2"
    return {r: [cells[c * 16 + r] for c in range(8) if c * 16 + r in cells] for r in range(16)}


@pytest.mark.parametrize(
    ("name", "flat"),
    [
        ("GSM basic", _flatten_basic(GSM7_BASIC)),
        ("GSM extended", _flatten_ext(GSM7_EXT)),
        ("GSM-PT basic", _flatten_basic(PT_BASIC)),
        ("GSM-PT extended", _flatten_ext(PT_EXT)),
    ],
)
def test_tables_match_seed_annex(name, flat):
    assert flat == _rows(SEED_ANNEX[name])


def _parse_seed_annex(lines: list[str], title: str) -> dict[int, list[str]]:
    i = next(n for n, line in enumerate(lines) if line.startswith(title))
    while lines[i] != "0x00":
        i += 1
    i += 8  # the column header 0x00 .. 0x70
    rows: dict[int, list[str]] = {}
    row = -1
    while not lines[i].startswith("* "):
        if re.fullmatch(r"0x0[0-9A-F]", lines[i]):
            row = int(lines[i], 16)
            rows[row] = []
        else:
            rows[row].append(lines[i])
        i += 1
    return rows


def test_annex_copy_matches_seed_file():
    path = _seed_path()
    if path is None:
        pytest.skip("360nrs seed document not available")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for name, title in SEED_TITLES.items():
        assert _parse_seed_annex(lines, title) == _rows(SEED_ANNEX[name]), name
    assert SEED_TRANS_LINE in text


def test_trans_table_is_the_seed_one():
    pairs = re.findall(r"'(.)'\s*=>\s*'(.?)'", SEED_TRANS_LINE)
    assert len(pairs) == 30
    assert dict(pairs) == NRS360_TRANS
    assert NRS360_TRANS["ç"] == "Ç"


def test_default_alphabet_agrees_with_gsm0338_package():
    for ch, septets in GSM7_SEPTETS.items():
        assert ch.encode("gsm03.38") == bytes(septets), ch
    assert len(GSM7_SEPTETS) == 127 + 10  # 128 positions minus ESC, plus the extension table


def test_transliteration_targets_are_gsm7_basic():
    for src, dst in TRANSLITERATION.items():
        assert src not in GSM7_SEPTETS, src
        assert all(len(GSM7_SEPTETS[c]) == 1 for c in dst), src


def test_pt_alphabet_facts():
    # Portuguese letters are one septet in GSM-PT; the Greek capitals and brackets need the shift
    for ch in "ãõçÇáéíóúâêôÀÁÂÃÊÍÓÔÕÚ`ºª∞^\\|€~":
        assert PT_SEPTETS[ch] == (PT_BASIC.index(ch),), ch
    for ch in "ΦΓΩΠΨΣΘ{}[]\f":
        assert PT_SEPTETS[ch][0] == 0x1B and len(PT_SEPTETS[ch]) == 2, ch
    # in the default alphabet but not in the Portuguese tables
    for ch in "ñÑäöÄÖåÅæÆøØßèìòù¡¿¤ΛΞ":
        assert ch in GSM7_SEPTETS and ch not in PT_SEPTETS, ch


# --------------------------------------------------------------------------------------------
# Reference rules on fixed cases.

A152_EURO_A152 = "a" * 152 + "€" + "a" * 152

COUNT_CASES = [
    ("", False, ("GSM-7", 0, 1)),
    ("hello", False, ("GSM-7", 5, 1)),
    ("a" * 160, False, ("GSM-7", 160, 1)),
    ("a" * 161, False, ("GSM-7", 161, 2)),
    ("a" * 306, False, ("GSM-7", 306, 2)),
    ("a" * 307, False, ("GSM-7", 307, 3)),
    ("€" * 80, False, ("GSM-7", 160, 1)),
    ("€" * 80 + "a", False, ("GSM-7", 161, 2)),
    (A152_EURO_A152, False, ("GSM-7", 306, 3)),  # the escape pair does not fit in part 1
    ("a" * 153 + "€" + "a" * 151, False, ("GSM-7", 306, 2)),
    ("{" * 153, False, ("GSM-7", 306, 3)),  # 76 pairs per part
    ("\f" * 76 + "a", False, ("GSM-7", 153, 1)),
    ("ñ" * 70, False, ("GSM-7", 70, 1)),
    ("é" * 70, False, ("GSM-7", 70, 1)),
    ("ç" * 70, False, ("UCS-2", 70, 1)),
    ("ç" * 71, False, ("UCS-2", 71, 2)),
    ("ç" * 134, False, ("UCS-2", 134, 2)),
    ("ç" * 135, False, ("UCS-2", 135, 3)),
    ("😀" * 35, False, ("UCS-2", 70, 1)),
    ("😀" * 36, False, ("UCS-2", 72, 2)),
    ("a" * 66 + "😀" + "a" * 66, False, ("UCS-2", 134, 3)),  # the pair does not fit in unit 67
    ("a" * 65 + "😀" + "a" * 67, False, ("UCS-2", 134, 2)),
    ("`", False, ("UCS-2", 1, 1)),  # backtick is not GSM-7
    ("\x00", False, ("UCS-2", 1, 1)),
    ("\ud83d", False, ("UCS-2", 1, 1)),  # a lone surrogate is one unit
    # GSM-PT: declared at 152 / 146 septets
    ("ç" * 70, True, ("GSM-PT", 70, 1)),
    ("ã" * 152, True, ("GSM-PT", 152, 1)),
    ("ã" * 153, True, ("GSM-PT", 153, 2)),
    ("ã" * 292, True, ("GSM-PT", 292, 2)),
    ("ã" * 293, True, ("GSM-PT", 293, 3)),
    ("ã" + "{" * 75, True, ("GSM-PT", 151, 1)),
    ("ã" * 145 + "[" + "ã", True, ("GSM-PT", 148, 1)),
    ("ã" * 145 + "[" + "ã" * 7, True, ("GSM-PT", 154, 2)),
    ("ã" * 145 + "[" + "ã" * 146, True, ("GSM-PT", 293, 3)),  # pair straddles septet 146
    ("ã" * 144 + "[" + "ã" * 146, True, ("GSM-PT", 292, 2)),
    ("hello", True, ("GSM-7", 5, 1)),  # GSM-7 first
    ("a" * 300, True, ("GSM-7", 300, 2)),
    ("ñã", True, ("UCS-2", 2, 1)),  # neither alphabet has both
    ("ã😀", True, ("UCS-2", 3, 1)),
]


@pytest.mark.parametrize(("text", "gsm_pt", "expected"), COUNT_CASES)
def test_reference_count(text, gsm_pt, expected):
    assert reference.count(text, gsm_pt=gsm_pt) == expected


@pytest.mark.parametrize(("text", "gsm_pt", "expected"), COUNT_CASES)
def test_analyze_fixed_cases(text, gsm_pt, expected):
    a = analyze([text], gsm_pt=gsm_pt)
    assert (ENCODINGS[a.encoding[0]], int(a.units[0]), int(a.parts[0])) == expected


@pytest.mark.parametrize(("text", "gsm_pt", "expected"), COUNT_CASES)
def test_segment_fixed_cases(text, gsm_pt, expected):
    seg = segment(text, gsm_pt=gsm_pt)
    assert (seg.encoding, seg.units, seg.declared_parts) == expected
    _check_segmentation(seg)


def test_escape_pair_straddling_part_boundary():
    seg = segment(A152_EURO_A152)
    assert seg.parts == ["a" * 152, "€" + "a" * 151, "a"]
    assert seg.part_units == [152, 153, 1]


def test_surrogate_pair_straddling_part_boundary():
    seg = segment("a" * 66 + "😀" + "a" * 66)
    assert seg.parts == ["a" * 66, "😀" + "a" * 65, "a"]
    assert seg.part_units == [66, 67, 1]


def test_gsm_pt_exact_versus_declared():
    # no extension character: locking shift only, 155 / 149 exactly; declared at 152 / 146
    seg = segment("ã" * 155, gsm_pt=True)
    assert seg.encoding == "GSM-PT"
    assert len(seg.parts) == 1 and seg.capacity == (155, 149)
    assert seg.declared_parts == 2
    seg = segment("ã" * 156, gsm_pt=True)
    assert [len(p) for p in seg.parts] == [149, 7]
    seg = segment("ã" * 298, gsm_pt=True)
    assert len(seg.parts) == 2 and seg.declared_parts == 3
    # with an extension character: both shift tables, 152 / 146 either way
    seg = segment("ã" * 150 + "{", gsm_pt=True)
    assert seg.capacity == (152, 146)
    assert seg.units == 152 and len(seg.parts) == 1 and seg.declared_parts == 1
    seg = segment("ã" * 151 + "{", gsm_pt=True)
    assert len(seg.parts) == 2 and seg.declared_parts == 2


def test_max_parts():
    seg = segment("a" * 153 * 15, max_parts=15)
    assert seg.declared_parts == 15 and not seg.too_many_parts
    seg = segment("a" * (153 * 15 + 1), max_parts=15)
    assert seg.declared_parts == 16 and seg.too_many_parts
    a = analyze(["a" * 2296, "a" * 2295, "x"], max_parts=15)
    assert a.parts.tolist() == [16, 15, 1]
    assert a.too_many_parts.tolist() == [True, False, False]
    assert not analyze(["a" * 5000]).too_many_parts.any()


def test_non_gsm_characters():
    assert segment("hello").non_gsm == ()
    assert segment("olá 😀 olá").non_gsm == ("á", "😀")
    # with GSM-PT the smaller set whose removal makes the text fit some GSM alphabet
    assert segment("ñ ã ç", gsm_pt=True).non_gsm == ("ñ",)
    assert segment("ñ ö 😀", gsm_pt=True).non_gsm == ("😀",)
    assert segment("ação", gsm_pt=True).non_gsm == ()


# --------------------------------------------------------------------------------------------
# Payloads.


def test_packed_septets_known_values():
    assert segment("hello").payloads == [bytes.fromhex("e8329bfd06")]
    assert pack_septets([]) == b""
    assert pack_septets([0x7F] * 8) == b"\xff" * 7
    # 3GPP TS 23.038 example: "hellohello" -> E8 32 9B FD 46 97 D9 EC 37
    assert pack_septets(reference.septets("hellohello", "GSM-7")) == bytes.fromhex("e8329bfd4697d9ec37")


def test_extension_payload_uses_escape():
    seg = segment("€")
    assert reference.septets("€", "GSM-7") == [0x1B, 0x65]
    assert seg.payloads == [pack_septets([0x1B, 0x65])]
    seg = segment("ã{", gsm_pt=True)
    assert reference.septets("ã{", "GSM-PT") == [0x7B, 0x1B, 0x28]


def test_ucs2_payload_is_utf16_be():
    seg = segment("olá😀")
    assert seg.encoding == "UCS-2"
    assert seg.payloads == ["olá😀".encode("utf-16-be")]
    assert seg.payloads[0] == bytes.fromhex("006f006c00e1d83dde00")


def _unpack_septets(data: bytes, count: int) -> list[int]:
    bits = int.from_bytes(data, "little")
    return [(bits >> (7 * i)) & 0x7F for i in range(count)]


def _decode(septets: list[int], basic: str, ext: dict[int, str]) -> str:
    out, i = [], 0
    while i < len(septets):
        if septets[i] == 0x1B:
            out.append(ext[septets[i + 1]])
            i += 2
        else:
            out.append(basic[septets[i]])
            i += 1
    return "".join(out)


def _check_segmentation(seg: Segmentation) -> None:
    """Invariants of any segmentation, decoding each payload independently."""
    assert "".join(seg.parts) == seg.text
    assert len(seg.parts) == len(seg.payloads) == len(seg.part_units)
    assert sum(seg.part_units) == seg.units
    single, concat = seg.capacity
    if len(seg.parts) == 1:
        assert seg.units <= single
    else:
        assert seg.units > single
        assert all(0 < u <= concat for u in seg.part_units)
    assert seg.declared_parts >= len(seg.parts)
    if seg.encoding != "GSM-PT":
        assert seg.declared_parts == len(seg.parts)
    for part, units, payload in zip(seg.parts, seg.part_units, seg.payloads, strict=True):
        if seg.encoding == "UCS-2":
            assert payload == part.encode("utf-16-be", "surrogatepass")
            assert len(payload) == 2 * units
        else:
            assert len(payload) == (units * 7 + 7) // 8
            septets = _unpack_septets(payload, units)
            if seg.encoding == "GSM-7":
                assert bytes(septets).decode("gsm03.38") == part
            else:
                assert _decode(septets, PT_BASIC, PT_EXT) == part


# --------------------------------------------------------------------------------------------
# Transliteration.


def test_curly_quotes_do_not_force_ucs2():
    text = "Hello “friend” – it’s 10€… see you"
    assert segment(text).encoding == "UCS-2"
    seg = segment(text, transliterate=True)
    assert seg.encoding == "GSM-7" and seg.transliterated
    assert seg.text == 'Hello "friend" - it\'s 10€... see you'
    a = analyze([text, "plain"], transliterate=True)
    assert a.encoding.tolist() == [0, 0]
    assert a.transliterated.tolist() == [True, False]
    assert a.texts == [seg.text, "plain"]


def test_transliteration_only_when_it_helps():
    # an emoji stays UCS-2 whatever: the text is left alone
    seg = segment("Olá “amigo” 😀", transliterate=True)
    assert seg.encoding == "UCS-2" and not seg.transliterated and seg.text == "Olá “amigo” 😀"
    # GSM-PT already fits in as many parts: keep the accents
    seg = segment("ação", gsm_pt=True, transliterate=True)
    assert seg.encoding == "GSM-PT" and not seg.transliterated
    # GSM-PT in 2 declared parts, GSM-7 in 1 after transliteration: use it
    text = "ação " * 31  # 155 septets
    assert segment(text, gsm_pt=True).declared_parts == 2
    seg = segment(text, gsm_pt=True, transliterate=True)
    assert seg.transliterated and seg.encoding == "GSM-7" and seg.declared_parts == 1
    # UCS-2 in 2 parts, but GSM-7 in 3 after expanding ellipses: keep UCS-2
    text = "…" * 134
    assert reference.count(text) == ("UCS-2", 134, 2)
    assert reference.count(text, transliterate=True) == ("UCS-2", 134, 2)
    a = analyze([text], transliterate=True)
    assert a.parts.tolist() == [2] and not a.transliterated[0] and a.texts[0] == text
    # plain GSM-7 text is never changed
    assert not segment("plain text", transliterate=True).transliterated


def test_seed_trans_examples():
    assert reference.transliterate("ação º ª Ôô") == "aÇao   Oo"
    assert segment("Coração", transliterate=True).text == "CoraÇao"


def test_analyze_texts_identity():
    texts = ["a", "b“"]
    assert analyze(texts).texts is texts
    assert analyze(texts, transliterate=True).texts == ["a", 'b"']
    assert texts == ["a", "b“"]  # the caller's list is not modified
    plain = ["a", "b"]
    assert analyze(plain, transliterate=True).texts == plain


# --------------------------------------------------------------------------------------------
# analyze() contract.


def test_analysis_contract():
    a = analyze(["hello", "ação", "😀"], gsm_pt=True)
    assert isinstance(a, Analysis) and len(a) == 3
    assert ENCODINGS == ("GSM-7", "GSM-PT", "UCS-2")
    assert a.encoding.dtype == np.uint8 and a.units.dtype == np.int32 and a.parts.dtype == np.int32
    assert a.transliterated.dtype == np.bool_ and a.too_many_parts.dtype == np.bool_
    assert a.encoding.tolist() == [0, 1, 2]
    assert a.encoding_name(1) == "GSM-PT"


def test_analyze_empty_inputs():
    a = analyze([])
    assert a.encoding.shape == (0,) and a.texts == []
    a = analyze([""] * 3)
    assert (
        a.encoding.tolist() == [0, 0, 0] and a.units.tolist() == [0, 0, 0] and a.parts.tolist() == [1, 1, 1]
    )
    a = analyze(["", "😀", ""])
    assert a.encoding.tolist() == [0, 2, 0] and a.units.tolist() == [0, 2, 0]


def test_warm_up_loads_every_input_width():
    from dispatcher.codecs import kernels, warm_up

    warm_up()
    widths = {sig[0].dtype.bitwidth for sig in kernels.classify.signatures}
    assert widths >= {8, 16, 32}


def test_analyze_accepts_any_iterable():
    a = analyze(t for t in ["x", "y"])
    assert a.texts == ["x", "y"]
    assert analyze(("x",)).texts == ["x"]


@pytest.mark.parametrize("zero_copy", [True, False])
def test_codepoint_conversion_paths(zero_copy):
    def conv(texts):
        cps, lens = to_codepoints(texts, zero_copy=zero_copy)
        assert not cps.flags.writeable
        return cps.dtype, cps.tolist(), lens.tolist()

    assert conv(["abc", "de"]) == (np.uint8, [97, 98, 99, 100, 101], [3, 2])
    assert conv(["olá", "ñ"]) == (np.uint8, [111, 108, 225, 241], [3, 1])
    assert conv(["a“", "b"]) == (np.uint16, [97, 0x201C, 98], [2, 1])
    assert conv(["a", "\ud800", "\udc00"]) == (np.uint16, [97, 0xD800, 0xDC00], [1, 1, 1])
    assert conv(["a😀", "\ud800\udc00", ""]) == (np.uint32, [97, 0x1F600, 0xD800, 0xDC00], [2, 2, 0])
    assert conv(["😀"]) == (np.uint32, [0x1F600], [1])
    assert conv(["x"]) == (np.uint8, [120], [1])
    assert conv([]) == (np.uint8, [], [])
    assert conv(["", ""]) == (np.uint8, [], [0, 0])


def test_zero_copy_view_is_available_and_keeps_the_str_alive():
    from dispatcher.codecs import batch

    assert batch._OFFSETS is not None  # CPython: the probe recognised the str layout
    texts = ["x" * 1000 + str(i) for i in range(3)] + ["ü€😀"]
    cps, _ = to_codepoints(texts)
    del texts
    import gc

    gc.collect()
    assert cps[:3].tolist() == [120, 120, 120] and cps[-3:].tolist() == [0xFC, 0x20AC, 0x1F600]


def test_long_text_path():
    # texts of 2**20 characters and more take the kernel's unpacked loop
    text = "a" * (1 << 20) + "€"
    expected = reference.count(text)
    a = analyze([text, "x"])
    assert (ENCODINGS[a.encoding[0]], int(a.units[0]), int(a.parts[0])) == expected


def test_reference_does_not_import_numba():
    code = (
        "import sys; from dispatcher.codecs.reference import count; from dispatcher.codecs import segment; "
        "assert count('hi') == ('GSM-7', 2, 1); assert 'numba' not in sys.modules, 'numba imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --------------------------------------------------------------------------------------------
# Property tests: the numba kernels against the reference on random text.

SPECIALS = [
    "😀", "👍", "🏽", "𝄞", "\U0010ffff", "\ud83d", "\ude00", "\udfff", "\x00", "\t", "\u00a0", "\ufeff",
    "“", "”", "‘", "’", "…", "–", "—", "«", "»", "´", "`", "º", "ª",
    "ñ", "ç", "Ç", "é", "è", "ü", "ß", "Я", "中", "ع", "∞", "Λ", "Ξ", "€", "\f", "\n", "\r", "\x1b",
]  # fmt: skip

char = st.one_of(
    st.sampled_from(sorted(GSM7_SEPTETS)),
    st.sampled_from(sorted(PT_SEPTETS)),
    st.sampled_from(sorted(TRANSLITERATION)),
    st.sampled_from(SPECIALS),
    st.characters(codec=None, categories=None),
)
texts_random = st.lists(char, max_size=400).map("".join)

BOUNDARIES = [66, 67, 68, 69, 70, 71, 133, 134, 135, 145, 146, 147, 151, 152, 153, 154, 155, 156, 159, 160,
              161, 292, 293, 297, 298, 299, 305, 306, 307, 459, 460]  # fmt: skip


@st.composite
def texts_near_boundaries(draw):
    """A run of one character to a boundary length, with a few other characters spliced in."""
    base = draw(st.sampled_from(["a", "ã", "ç", "€", "{", "😀", " "]))
    n = draw(st.sampled_from(BOUNDARIES)) + draw(st.integers(-2, 2))
    chars = [base] * max(n, 0)
    for _ in range(draw(st.integers(0, 3))):
        chars.insert(draw(st.integers(0, len(chars))), draw(char))
    return "".join(chars)


any_text = st.one_of(texts_random, texts_near_boundaries())
all_latin1 = st.lists(st.characters(max_codepoint=0xFF), max_size=300).map("".join)


def _assert_kernel_matches_reference(texts: list[str], gsm_pt: bool, transliterate: bool) -> None:
    a = analyze(texts, gsm_pt=gsm_pt, transliterate=transliterate)
    for i, text in enumerate(texts):
        expected = reference.count(text, gsm_pt=gsm_pt, transliterate=transliterate)
        got = (ENCODINGS[a.encoding[i]], int(a.units[i]), int(a.parts[i]))
        assert got == expected, (text, gsm_pt, transliterate)
        chosen, changed = reference.choose(text, gsm_pt=gsm_pt, use_transliteration=transliterate)
        assert bool(a.transliterated[i]) == changed
        assert a.texts[i] == chosen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(any_text, min_size=1, max_size=12), gsm_pt=st.booleans(), transliterate=st.booleans())
@example(texts=[A152_EURO_A152, "a" * 66 + "😀" + "a" * 66, ""], gsm_pt=False, transliterate=False)
@example(texts=["ação " * 31, "“x”", "…" * 134], gsm_pt=True, transliterate=True)
def test_kernel_matches_reference(texts, gsm_pt, transliterate):
    _assert_kernel_matches_reference(texts, gsm_pt, transliterate)


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(all_latin1, min_size=1, max_size=12), gsm_pt=st.booleans(), transliterate=st.booleans())
def test_kernel_matches_reference_latin1_chunks(texts, gsm_pt, transliterate):
    # whole chunk below U+0100: the uint8 input path
    assert to_codepoints(texts)[0].dtype == np.uint8
    _assert_kernel_matches_reference(texts, gsm_pt, transliterate)


bmp_chars = st.one_of(
    st.sampled_from(sorted(ch for ch in {*GSM7_SEPTETS, *PT_SEPTETS, *TRANSLITERATION} if ch <= "\uffff")),
    st.characters(max_codepoint=0xFFFF),
)


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(st.lists(bmp_chars, max_size=400).map("".join), min_size=1, max_size=12),
    gsm_pt=st.booleans(),
    transliterate=st.booleans(),
)
def test_kernel_matches_reference_bmp_chunks(texts, gsm_pt, transliterate):
    # nothing above U+FFFF: the uint16 input path (or uint8 if all below U+0100)
    texts = [*texts, "€"]
    assert to_codepoints(texts)[0].dtype == np.uint16
    _assert_kernel_matches_reference(texts, gsm_pt, transliterate)


@settings(max_examples=200, deadline=None)
@given(text=any_text, gsm_pt=st.booleans(), transliterate=st.booleans())
def test_segment_agrees_with_analyze_and_decodes(text, gsm_pt, transliterate):
    seg = segment(text, gsm_pt=gsm_pt, transliterate=transliterate)
    _check_segmentation(seg)
    a = analyze([text], gsm_pt=gsm_pt, transliterate=transliterate)
    assert (seg.encoding, seg.units, seg.declared_parts) == (
        ENCODINGS[a.encoding[0]],
        int(a.units[0]),
        int(a.parts[0]),
    )
    assert seg.text == a.texts[0] and seg.transliterated == bool(a.transliterated[0])
    if seg.encoding == "UCS-2":
        assert seg.non_gsm
        cleaned = "".join(ch for ch in seg.text if ch not in seg.non_gsm)
        assert reference.encoding_of(cleaned, gsm_pt) != "UCS-2"


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(any_text, max_size=8))
def test_zero_copy_matches_copy(texts):
    a, la = to_codepoints(texts)
    b, lb = to_codepoints(texts, zero_copy=False)
    assert a.dtype == b.dtype and np.array_equal(a, b) and np.array_equal(la, lb)
    assert a.tolist() == [ord(c) for c in "".join(texts)]


# --------------------------------------------------------------------------------------------
# CLI.


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    rc = cli_main(list(argv))
    return rc, capsys.readouterr().out


def test_cli_gsm7(capsys):
    rc, out = run_cli(capsys, "Hello world", "--price", "0.045")
    assert rc == 0
    assert re.search(r"^encoding\s+GSM-7$", out, re.M)
    assert re.search(r"^characters\s+11$", out, re.M)
    assert re.search(r"^units\s+11 septets$", out, re.M)
    assert re.search(r"^parts\s+1\b", out, re.M)
    assert '"Hello world"' in out
    assert re.search(r"^cost\s+1 x 0\.045 = 0\.045$", out, re.M)


def test_cli_ucs2_and_transliteration_hint(capsys):
    text = "“Olá” " + "x" * 70
    rc, out = run_cli(capsys, text, "--price", "0.05")
    assert rc == 0
    assert re.search(r"^encoding\s+UCS-2$", out, re.M)
    assert re.search(r"^parts\s+2\b", out, re.M)
    assert "U+201C" in out and "U+00E1" in out  # what forced UCS-2
    assert "transliteration would give GSM-7 (1 part) instead of UCS-2 (2 parts), saving 1 part" in out
    assert re.search(r"^cost\s+2 x 0\.05 = 0\.10$", out, re.M)
    rc, out = run_cli(capsys, text, "--transliterate", "--price", "0.05")
    assert re.search(r"^encoding\s+GSM-7$", out, re.M)
    assert "transliteration applied: UCS-2 (2 parts) -> GSM-7 (1 part), saves 1 part" in out
    assert re.search(r"^cost\s+1 x 0\.05 = 0\.05$", out, re.M)


def test_cli_transliteration_cannot_help(capsys):
    rc, out = run_cli(capsys, "Olá 😀")
    assert rc == 0
    assert "still UCS-2 because of" in out and "U+1F600" in out


def test_cli_transliteration_would_cost_more(capsys):
    _, out = run_cli(capsys, "…" * 134)
    assert "transliteration would not help: GSM-7 would need 3 parts instead of 2" in out


def test_cli_parts_listing(capsys):
    _rc, out = run_cli(capsys, A152_EURO_A152)
    assert re.search(r"^parts\s+3\s+\(concatenated, up to 153 septets per part\)$", out, re.M)
    assert re.search(r"^part 1/3\s+152 septets", out, re.M)
    assert re.search(r"^part 2/3\s+153 septets\s+\"€a+\"$", out, re.M)
    assert re.search(r"^part 3/3\s+1 septets\s+\"a\"$", out, re.M)


def test_cli_gsm_pt(capsys):
    rc, out = run_cli(capsys, "ã" * 155, "--gsm-pt")
    assert rc == 0
    assert re.search(r"^encoding\s+GSM-PT$", out, re.M)
    assert re.search(r"^parts\s+2\b", out, re.M)
    assert "conservative 152/146" in out


def test_cli_max_parts(capsys):
    rc, out = run_cli(capsys, "a" * 400, "--max-parts", "2")
    assert rc == 1
    assert "needs 3 parts, more than --max-parts 2" in out
    rc, _ = run_cli(capsys, "a" * 300, "--max-parts", "2")
    assert rc == 0


def test_cli_json(capsys):
    rc, out = run_cli(capsys, "hello “x”", "--json", "--price", "0.1", "--transliterate")
    assert rc == 0
    data = json.loads(out)
    assert data["encoding"] == "GSM-7" and data["parts"] == 1 and data["transliterated"] is True
    assert data["text"] == 'hello "x"'
    assert data["without_transliteration"] == {"encoding": "UCS-2", "units": 9, "parts": 1}
    assert data["with_transliteration"]["encoding"] == "GSM-7"
    assert data["cost"] == "0.1"
    assert data["part_texts"] == ['hello "x"']
    rc, out = run_cli(capsys, "hello", "--json")
    assert json.loads(out)["payloads"] == ["e8329bfd06"]


def test_cli_stdin(capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    rc, out = run_cli(capsys, "-")
    assert rc == 0 and '"from stdin"' in out


def test_cli_usage_errors(capsys):
    assert cli_main(["x", "--price", "abc"]) == 2
    assert cli_main(["x", "--max-parts", "0"]) == 2
    assert cli_main([]) == 2
    assert cli_main(["--help"]) == 0
    capsys.readouterr()


def test_cli_kaleyra_warning(capsys):
    _, out = run_cli(capsys, "a" * 4001)
    assert "Kaleyra refuses this body" in out


def test_a_latin1_text_whose_utf8_form_is_cached_is_read_as_uint8() -> None:
    """sys.getsizeof counts a cached UTF-8 form: the copying path must not take it for a wider text
    (hypothesis' strings sometimes have one, which made the latin-1 chunk test fail now and then)."""
    import ctypes

    s = "caf\xe9 au lait " + str(id(object()))  # a new string, not an interned one
    as_utf8 = ctypes.pythonapi.PyUnicode_AsUTF8
    as_utf8.restype = ctypes.c_char_p
    as_utf8(ctypes.py_object(s))  # caches the UTF-8 form inside the string
    cps, lens = to_codepoints([s])
    assert cps.dtype == np.uint8 and cps.tobytes() == s.encode("latin-1") and lens.tolist() == [len(s)]


_piece = st.lists(st.sampled_from(["a", "é", "ã", "ç", "€", "{", "^", "😀", "ß", "ë", " ", "x" * 40, "\x00"]),
                  max_size=6).map("".join)  # U+0000 too: values holding one are scanned by their lengths


@settings(max_examples=400, deadline=None)
@given(st.lists(_piece, min_size=1, max_size=4), st.integers(1, 5).flatmap(
    lambda n: st.lists(st.lists(_piece, min_size=n, max_size=n), min_size=1, max_size=3)),
    st.lists(st.integers(0, 2), max_size=4), st.booleans(), st.booleans())
def test_analyze_slots_is_analyze_of_the_rendered_texts(literals, columns, uses, gsm_pt, translit):
    """A template's texts classified from its literal pieces and its slots' values (the sums of their table
    entries, lengths and astral characters; the texts it cannot decide so rendered) are classified as
    `analyze` classifies the texts themselves: encoding, parts and transliteration, whatever the values."""
    uses = [u % len(columns) for u in uses]
    n = len(columns[0])

    def text(i):
        out = [literals[0]]
        for k, u in enumerate(uses):
            out += [columns[u][i], literals[(k + 1) % len(literals)] if k + 1 < len(literals) else ""]
        return "".join(out) + "".join(literals[len(uses) + 1:])

    texts = [text(i) for i in range(n)]
    literal = "".join(literals[:1] + [literals[k + 1] if k + 1 < len(literals) else "" for k in range(len(uses))]
                      + literals[len(uses) + 1:])
    enc, parts, trans = analyze_slots(literal, columns, uses, n, lambda rows: [texts[r] for r in rows],
                                      gsm_pt=gsm_pt, transliterate=translit)
    a = analyze(texts, gsm_pt=gsm_pt, transliterate=translit)
    assert enc.tolist() == a.encoding.tolist() and parts.tolist() == a.parts.tolist()
    assert trans.tolist() == a.transliterated.tolist()
