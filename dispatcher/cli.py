"""`dispatcher blast | simulate | segment | daemon`: parse, build, run. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
import time
from dataclasses import asdict

import orjson
import uvloop

EXIT_OK, EXIT_FAILURES, EXIT_CONFIG, EXIT_DEFERRED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _positive(kind: type[float] | type[int]):
    def parse(text: str) -> float | int:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
        return v
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatcher", description="Bulk SMS / WhatsApp / email through HTTP providers, "
                                "as fast as each provider allows and no faster.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("blast", help="send one campaign file to its audience")
    b.add_argument("campaign", help="campaign TOML file")
    b.add_argument("--run-id", help="name of this run; the same id resumes it, skipping finished records")
    b.add_argument("--source", help="recipients file, instead of the campaign's [source] path")
    b.add_argument("--rate", type=_positive(float), help="requests/s for every provider, instead of the configured rate")
    b.add_argument("--concurrency", type=_positive(int), help="requests in flight per provider")
    b.add_argument("--url", help="base URL for every provider (e.g. a simulator)")
    b.add_argument("--on-doubt", choices=("resend", "hold"),
                   help="records in flight when an earlier attempt died: resend them (default) or hold them as failed")
    b.add_argument("--state-dir", help="where run journals live (default: .dispatcher beside the campaign)")
    b.add_argument("--retry-failed", metavar="RUN_ID",
                   help="a new run over the same source that sends only the records RUN_ID failed "
                        "(not the rejected ones: those are bad input); its run id is RUN_ID-retry unless --run-id")
    b.add_argument("--allow-changed", action="store_true",
                   help="resume (or retry) although the source file or the campaign's messages changed")
    b.add_argument("--dry-run", action="store_true", help="render, encode, count parts and cost; send nothing")
    b.add_argument("--quiet", action="store_true", help="no live progress; a one-line JSON summary")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")

    r = sub.add_parser("runs", help="list the blast runs under a state directory, with counts and whether resumable")
    r.add_argument("campaign", nargs="?", help="a campaign file: its runs (default: the state directory given)")
    r.add_argument("--state-dir", help="where run journals live (default: .dispatcher beside the campaign, or here)")
    t = sub.add_parser("status", help="one run: its source, every attempt, totals, and how to resume it")
    t.add_argument("run_id")
    t.add_argument("campaign", nargs="?", help="the campaign file (to find its state directory)")
    t.add_argument("--state-dir", help="where run journals live")

    s = sub.add_parser("simulate", help="serve the provider simulators on local ports")
    from .simulators.serve import add_arguments
    add_arguments(s)

    g = sub.add_parser("segment", help="encoding, parts and cost of an SMS text", add_help=False)
    g.add_argument("rest", nargs=argparse.REMAINDER)

    d = sub.add_parser("daemon", help="drain a PostgreSQL outbox, receive delivery reports", add_help=False)
    d.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    if extra and args.command not in ("segment", "daemon"):
        _parser().parse_args(argv)  # the usual error for unknown arguments
    if args.command in ("segment", "daemon"):
        args.rest = [*extra, *args.rest]  # their own parsers read them (--help included)
    if args.command == "blast":
        return _blast(args)
    if args.command in ("runs", "status"):
        return _runs(args)
    if args.command == "simulate":
        from .simulators.serve import serve
        return uvloop.run(serve(args))
    if args.command == "segment":
        from .codecs.cli import main as segment
        return segment(args.rest)
    if args.command == "daemon":
        try:
            from .daemon.cli import main as daemon
        except ImportError:
            print("dispatcher daemon: not available in this build", file=sys.stderr)
            return EXIT_CONFIG
        return daemon(args.rest)
    return EXIT_CONFIG


def _runs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .runs import list_runs, show_run
    if args.state_dir:
        state = Path(args.state_dir)
    elif args.campaign:
        from .config import read_toml
        from .providers.base import ConfigError
        try:
            data, _ = read_toml(Path(args.campaign), "campaign")
        except ConfigError as e:
            print(f"dispatcher: {e}", file=sys.stderr)
            return EXIT_CONFIG
        state = Path(args.campaign).parent / str(data.get("state_dir", ".dispatcher"))
    else:
        state = Path(".dispatcher")
    if args.command == "runs":
        print(list_runs(state))
        return EXIT_OK
    shown = show_run(state, args.run_id)
    if shown is None:
        print(f"dispatcher: no run '{args.run_id}' under {state}", file=sys.stderr)
        return EXIT_CONFIG
    print(shown)
    return EXIT_OK


def _blast(args: argparse.Namespace) -> int:
    from .config import Overrides, load_campaign
    from .providers.base import ConfigError

    o = Overrides(run_id=args.run_id, source=args.source, rate=args.rate, concurrency=args.concurrency, url=args.url,
                  on_doubt=args.on_doubt, state_dir=args.state_dir, dry_run=args.dry_run,
                  retry_failed=args.retry_failed, allow_changed=args.allow_changed)
    try:
        campaign = load_campaign(args.campaign, o)
    except ConfigError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.dry_run:
        return uvloop.run(_dry(campaign, args))
    return uvloop.run(_run(campaign, args))


async def _dry(campaign, args: argparse.Namespace) -> int:
    from .codecs.tables import SHORT_LINK
    from .engine import dry_run
    st = await dry_run(campaign)
    report = {"records": st.read, "valid": st.sent, "rejected": st.rejected, "parts": st.parts,
              "cost": round(st.cost, 6), "by_encoding": dict(st.by_encoding),
              "rejected_by_code": {k.split(":", 1)[1]: n for k, n in st.codes.items()}}
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
    return EXIT_OK if not st.rejected else EXIT_FAILURES


async def _run(campaign, args: argparse.Namespace) -> int:
    from .engine import Engine
    from .progress import Progress, summary
    from .sinks.base import SinkError
    from .sources.base import SourceError
    from .state import RunError

    progress = None if args.quiet else Progress()
    engine = Engine(campaign, on_progress=progress)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print("\nstopping: no more reading; waiting for requests on the wire (signal again to abandon them)",
                  file=sys.stderr, flush=True)
            engine.stop()
        elif task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    try:
        st = await engine.run()
    except RunError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (SinkError, SourceError) as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        print(f"dispatcher: stopped; what was written is kept. Resume with: dispatcher blast {args.campaign} "
              f"--run-id {campaign.run_id}", file=sys.stderr)
        return EXIT_CONFIG
    except asyncio.CancelledError:
        print("dispatcher: abandoned; requests that were on the wire are in doubt and resent by a resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if progress is not None:
        progress.end()
    hint = "dispatcher blast " + " ".join(shlex.quote(a) for a in [args.campaign, "--run-id", campaign.run_id])
    results = [s.name for s in campaign.sinks]
    if args.quiet or args.json:
        d = {k: v for k, v in asdict(st).items() if k not in ("codes", "by_encoding", "started", "cost", "timeline")}
        if args.json:
            d["timeline"] = st.timeline
        elapsed = time.monotonic() - st.started
        d.update(run_id=campaign.run_id, interrupted=engine.interrupted, results=results,
                 elapsed_s=round(elapsed, 3), msgs_per_s=round(st.done / elapsed, 1) if elapsed > 0 else None,
                 codes=dict(st.codes), halts={a: list(w) for a, w in st.halts.items()}, halted_all=engine.halted_all,
                 resume=hint if engine.interrupted or st.deferred or engine.halted_all else None)
        print(orjson.dumps(d).decode())
    else:
        print(summary(st, run_id=campaign.run_id, results=results, resume_hint=hint, interrupted=engine.interrupted,
                      halted_all=engine.halted_all))
    if engine.interrupted:
        return EXIT_INTERRUPTED
    if st.deferred or engine.halted_all:
        return EXIT_DEFERRED
    return EXIT_OK if not (st.failed or st.rejected) else EXIT_FAILURES
