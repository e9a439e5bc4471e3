"""`dispatcher blast CAMPAIGN --dry-run`: render, encode, count parts and cost; send nothing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from ..engine import Stats
from ..model import Message, Result, column
from .campaign import Campaign
from .exits import EXIT_CONFIG, EXIT_FAILURES, EXIT_OK
from .preparer import CampaignPreparer

SAMPLES = 3  # rendered messages per channel that --dry-run shows


def rejects_sink(path: str) -> Any:
    from ..sinks.files import CsvSink, JsonlSink
    return (CsvSink if path.lower().endswith(".csv") else JsonlSink)(path)


async def dry_run(campaign: Campaign,
                  on_chunk: Callable[[dict[str, list[Message]], list[Result]], Awaitable[None]] | None = None
                  ) -> Stats:
    """Render, normalise, encode and price every record; send nothing, write nothing.
    `on_chunk(messages by alias, rejected results)` sees each chunk (the CLI's samples and --rejects)."""
    st = Stats()
    preparer = CampaignPreparer(campaign)
    async for records, bad in campaign.source.chunks():
        st.read += len(records) + len(bad)
        by_lane, rejects = preparer.prepare(records)
        for r in (*bad, *rejects):
            st.rejected += 1
            st.codes[f"rejected:{r.code}"] += 1
        for alias, msgs in by_lane.items():
            price = campaign.providers[alias].settings.price
            channel = campaign.channels[alias]
            for p, e in zip(column(msgs, "parts"), column(msgs, "encoding"), strict=True):
                st.sent += 1
                units = p or 1
                st.parts += units
                st.cost += units * price
                st.by_encoding[e or channel] += 1
        if on_chunk is not None:
            await on_chunk(by_lane, bad + rejects if bad else rejects)
    await campaign.source.close()
    return st


async def dry(campaign, args: argparse.Namespace) -> int:
    """`--dry-run`: the counts, cost and samples of what would be sent; the rejected rows with --rejects."""
    from ..codecs.tables import SHORT_LINK
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
