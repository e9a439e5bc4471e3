"""`dispatcher segment TEXT`: what a message will cost before sending it.

    dispatcher segment TEXT [--gsm-pt] [--transliterate] [--shorten] [--price P] [--max-parts N] [--json]

TEXT "-" reads the text from standard input (one trailing newline, which `echo` and editors add,
is not part of the message). A `{url|shorten}` placeholder in TEXT is counted as the link 360nrs
sends in its place (https://sms.tl/xxxxxx); with --shorten every http(s) link in TEXT is counted
so, as a template sending it through `{url|shorten}` would be. Exit status: 0, or 1 when the text needs more than
--max-parts parts, or 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from decimal import Decimal, InvalidOperation

from .. import logs
from .reference import count, transliterate
from .segmentation import Segmentation, non_gsm_chars, segment
from .tables import SHORT_LINK

KALEYRA_MAX_CHARS = 4000  # Kaleyra refuses longer bodies
_SHORTENED = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.-]*(?:\|[A-Za-z]+)*\|shorten(?:\|[A-Za-z]+)*\}")
_LINK = re.compile(r"https?://[^\s]+", re.I)


def shortened(text: str, every_link: bool) -> tuple[str, int]:
    """The text as a shortening server sends it, and how many links were counted short."""
    text, n = _SHORTENED.subn(SHORT_LINK, text)
    if every_link:
        text, m = _LINK.subn(lambda x: x.group(0) if x.group(0) == SHORT_LINK else SHORT_LINK, text)
        n += m
    return text, n


def _price(value: str) -> Decimal:
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise argparse.ArgumentTypeError(f"price must be a non-negative number, not {value!r}")
    return price


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dispatcher segment",
        description="Show how an SMS text is encoded and split into parts, and what it costs.",
    )
    p.add_argument("text", metavar="TEXT", help='the message text ("-" reads standard input)')
    p.add_argument("--gsm-pt", action="store_true", help="allow the GSM-PT (Portuguese) alphabet (360nrs)")
    p.add_argument(
        "--transliterate",
        action="store_true",
        help="replace accented/typographic characters with GSM ones when that helps (360nrs trans=1)",
    )
    p.add_argument("--shorten", action="store_true",
                   help=f"count every http(s) link as {SHORT_LINK}, as 360nrs sends {{url|shorten}}")
    p.add_argument("--price", type=_price, metavar="P", help="price per part")
    p.add_argument("--max-parts", type=_positive_int, metavar="N", help="fail if more parts are needed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    logs.add_arguments(p)
    return p


def _char_name(ch: str) -> str:
    try:
        return unicodedata.name(ch)
    except ValueError:
        return "unnamed"


def _describe_char(ch: str) -> str:
    return f"{json.dumps(ch, ensure_ascii=False)} U+{ord(ch):04X} {_char_name(ch)}"


def _unit_name(seg: Segmentation) -> str:
    return "UTF-16 units" if seg.encoding == "UCS-2" else "septets"


def _brief(seg: Segmentation) -> str:
    return f"{seg.encoding} ({seg.declared_parts} part{'s' if seg.declared_parts != 1 else ''})"


def _why_not(plain: Segmentation, gsm_pt: bool) -> str:
    if plain.encoding != "UCS-2":
        return f"it saves no parts over {plain.encoding}"
    changed = transliterate(plain.text)
    left = non_gsm_chars(changed, gsm_pt)
    if left:
        return "still UCS-2 because of " + ", ".join(_describe_char(ch) for ch in left)
    enc, _, parts = count(changed, gsm_pt=gsm_pt)
    return f"{enc} would need {parts} parts instead of {plain.declared_parts}"


def _summary(seg: Segmentation) -> dict:
    return {"encoding": seg.encoding, "units": seg.units, "parts": seg.declared_parts}


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return int(exc.code or 0)
    logs.setup_logging(logs.level_of(args), args.log_format)
    text = args.text
    if text == "-":
        text = sys.stdin.read()
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    text, args.links = shortened(text, args.shorten)

    plain = segment(text, gsm_pt=args.gsm_pt, transliterate=False, max_parts=args.max_parts)
    trans = segment(text, gsm_pt=args.gsm_pt, transliterate=True, max_parts=args.max_parts)
    seg = trans if args.transliterate else plain
    cost = seg.declared_parts * args.price if args.price is not None else None

    if args.json:
        out = seg.to_dict()
        out["gsm_pt"] = args.gsm_pt
        out["without_transliteration"] = _summary(plain)
        out["with_transliteration"] = {**_summary(trans), "changes_text": trans.transliterated}
        out["non_gsm"] = [{"char": ch, "codepoint": f"U+{ord(ch):04X}"} for ch in seg.non_gsm]
        if cost is not None:
            out["price_per_part"] = str(args.price)
            out["cost"] = str(cost)
        if args.max_parts is not None:
            out["max_parts"] = args.max_parts
        out["links_counted_shortened"] = args.links
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        _print_text(seg, plain, trans, args, cost)
    return 1 if seg.too_many_parts else 0


def _print_text(seg: Segmentation, plain: Segmentation, trans: Segmentation, args, cost) -> None:
    unit = _unit_name(seg)
    single, concat = seg.capacity
    lines = [f"encoding        {seg.encoding}"]
    if seg.transliterated:
        lines.append(f"transliterated  {json.dumps(seg.text, ensure_ascii=False)}")
    lines.append(f"characters      {seg.characters}")
    if args.links:
        lines.append(f"links           {args.links} counted shortened, as {SHORT_LINK} ({len(SHORT_LINK)} characters): "
                     "360nrs sends {url|shorten} so")
    lines.append(f"units           {seg.units} {unit}")
    layout = (
        f"single message, up to {single} {unit}"
        if len(seg.parts) == 1
        else f"concatenated, up to {concat} {unit} per part"
    )
    lines.append(f"parts           {seg.declared_parts}  ({layout})")
    if seg.encoding == "GSM-PT" and seg.declared_parts != len(seg.parts):
        lines.append(
            f"                declared at the conservative 152/146 septets; {len(seg.parts)} by the exact "
            f"{single}/{concat} capacity"
        )
    width = len(str(len(seg.parts)))
    for i, (part, units) in enumerate(zip(seg.parts, seg.part_units, strict=True), 1):
        label = f"part {i:>{width}}/{len(seg.parts)}"
        lines.append(f"{label:<15} {units:>3} {unit}  {json.dumps(part, ensure_ascii=False)}")
    if seg.non_gsm:
        lines.append("forced UCS-2 by:")
        lines.extend(f"                {_describe_char(ch)}" for ch in seg.non_gsm)
    if args.transliterate:
        if seg.transliterated:
            saved = plain.declared_parts - seg.declared_parts
            lines.append(
                f"transliteration applied: {_brief(plain)} -> {_brief(seg)}"
                + (f", saves {saved} part(s)" if saved > 0 else "")
            )
        else:
            lines.append("transliteration not applied: " + _why_not(plain, args.gsm_pt))
    elif trans.transliterated:
        saved = plain.declared_parts - trans.declared_parts
        lines.append(
            f"transliteration would give {_brief(trans)} instead of {_brief(plain)}"
            + (f", saving {saved} part(s)" if saved > 0 else "")
            + f" (--transliterate): {json.dumps(trans.text, ensure_ascii=False)}"
        )
    elif seg.encoding != "GSM-7":
        lines.append("transliteration would not help: " + _why_not(plain, args.gsm_pt))
    if cost is not None:
        lines.append(f"cost            {seg.declared_parts} x {args.price} = {cost}")
    if seg.characters > KALEYRA_MAX_CHARS:
        lines.append(f"warning         over {KALEYRA_MAX_CHARS} characters: Kaleyra refuses this body")
    if seg.too_many_parts:
        lines.append(
            f"error           needs {seg.declared_parts} parts, more than --max-parts {args.max_parts}"
        )
    print("\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
