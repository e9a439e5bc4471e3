"""`dispatcher blast CAMPAIGN --dry-run`: render, encode, count parts and cost; send nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from .exits import EXIT_CONFIG, EXIT_FAILURES, EXIT_OK

SAMPLES = 3  # rendered messages per channel that --dry-run shows


def rejects_sink(path: str) -> Any:
    from ..sinks.files import CsvSink, JsonlSink
    return (CsvSink if path.lower().endswith(".csv") else JsonlSink)(path)


async def dry(campaign, args: argparse.Namespace) -> int:
    """`--dry-run`: the counts, cost and samples of what would be sent; the rejected rows with --rejects."""
    from ..codecs.tables import SHORT_LINK
    from ..engine import dry_run
    from ..errors import SinkError
    from ..model import Results

    samples: dict[str, list[dict[str, Any]]] = {}
    rejects = None
    if args.rejects:
        rejects = rejects_sink(args.rejects)
        try:
            Path(args.rejects).unlink(missing_ok=True)  # a new list each dry run, not an appended one
            await rejects.open(resume=False)
        except (OSError, SinkError) as e:
            print(f"dispatcher: --rejects {e}", file=sys.stderr)
            return EXIT_CONFIG

    async def look(by_alias, bad) -> None:
        for alias, msgs in by_alias.items():
            for m in msgs:
                got = samples.setdefault(m.channel, [])
                if len(got) >= SAMPLES:
                    break
                got.append({"id": m.rid, "to": m.to, "provider": alias, "text": m.text,
                            "encoding": m.encoding or None, "parts": m.parts or None})
        if bad and rejects is not None:
            await rejects.write(Results.of(bad))

    try:
        st = await dry_run(campaign, on_chunk=look)
    finally:
        if rejects is not None:
            await rejects.close()
    report = {"records": st.read, "valid": st.sent, "rejected": st.rejected, "parts": st.parts,
              "cost": round(st.cost, 6), "by_encoding": dict(st.by_encoding),
              "rejected_by_code": {k.split(":", 1)[1]: n for k, n in st.codes.items()},
              "samples": samples, "rejects": args.rejects}
    if any(c.template.shortens for c in campaign.contents.values()):
        report["links_counted_shortened"] = SHORT_LINK
    if args.json or args.quiet:
        print(orjson.dumps(report).decode())
    else:
        print(f"dry run of {args.campaign}: nothing sent")
        print(f"  records   {st.read:>12,}")
        print(f"  valid     {st.sent:>12,}   " + ", ".join(f"{k} {n:,}" for k, n in st.by_encoding.most_common()))
        print(f"  rejected  {st.rejected:>12,}   " + ", ".join(f"{k} {n:,}" for k, n in report["rejected_by_code"].items()))
        print(f"  parts     {st.parts:>12,}")
        print(f"  cost      {st.cost:>12,.4f}")
        if "links_counted_shortened" in report:
            print(f"  links     {{url|shorten}} counted shortened, as {SHORT_LINK} ({len(SHORT_LINK)} characters), "
                  "where the provider shortens links")
        if args.rejects:
            print(f"  rejects   {args.rejects} (one line per rejected row, with its code and reason)")
        for channel, got in samples.items():
            print(f"  samples of {channel}:")
            for smp in got:
                how = f"{smp['encoding']}, {smp['parts']} part{'s' if smp['parts'] != 1 else ''}" \
                    if smp["encoding"] else channel
                print(f"    {smp['id']} -> {smp['to']} via {smp['provider']} ({how})")
                print(f"      {orjson.dumps(smp['text']).decode()}")
    return EXIT_OK if not st.rejected else EXIT_FAILURES
