"""`dispatcher blast | simulate | segment | daemon`: parse, build, run. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import uvloop

from . import logs

log = logging.getLogger("dispatcher.blast")


def version() -> str:
    """The installed package's version; from pyproject.toml when run from a checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("dispatcher")
    except PackageNotFoundError:
        import tomllib
        try:
            with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"

EXIT_OK, EXIT_FAILURES, EXIT_CONFIG, EXIT_DEFERRED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXITED = "dispatcher: exited at once; requests that were on the wire are in doubt and resent by a resume"


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
    p.add_argument("-V", "--version", action="version", version=f"dispatcher {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("blast", help="send one campaign file to its audience")
    b.add_argument("campaign", help="campaign TOML file")
    b.add_argument("--run-id", help="name of this run; the same id resumes it, skipping finished records")
    b.add_argument("--source", help="recipients file, instead of the campaign's [source] path")
    b.add_argument("--rate", type=_positive(float), help="requests/s for every provider, instead of the configured rate")
    b.add_argument("--concurrency", type=_positive(int), help="requests in flight per provider")
    b.add_argument("--workers", type=_positive(int),
                   help="processes that share the run, each reading its part of the file (default: engine.workers, 1)")
    b.add_argument("--url", help="base URL for every provider (e.g. a simulator)")
    b.add_argument("--on-doubt", choices=("resend", "hold"),
                   help="records in flight when an earlier attempt died: resend them (default) or hold them as failed")
    b.add_argument("--state-dir", help="where run journals live (default: .dispatcher beside the campaign)")
    b.add_argument("--retry-failed", metavar="RUN_ID",
                   help="a new run over the same source that sends only the records RUN_ID failed "
                        "(not the rejected ones: those are bad input); its run id is RUN_ID-retry unless --run-id")
    b.add_argument("--allow-changed", action="store_true",
                   help="resume (or retry) although the source file or the campaign's messages changed")
    b.add_argument("--limit", type=_positive(int), metavar="N",
                   help="a test send: only the first N sendable records of the source, as a run of its own "
                        "(its id is the campaign's with -limitN-TIME unless --run-id)")
    b.add_argument("--dry-run", action="store_true", help="render, encode, count parts and cost; send nothing")
    b.add_argument("--rejects", metavar="FILE", help="with --dry-run: write the rejected rows with their reasons "
                   "(CSV if FILE ends in .csv, else JSONL)")
    b.add_argument("--quiet", action="store_true", help="no live progress; a one-line JSON summary")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    logs.add_arguments(b)

    r = sub.add_parser("runs", help="list the blast runs under a state directory, with counts and whether resumable")
    r.add_argument("campaign", nargs="?", help="a campaign file: its runs (default: the state directory given)")
    r.add_argument("--state-dir", help="where run journals live (default: .dispatcher beside the campaign, or here)")
    t = sub.add_parser("status", help="one run: its source, every attempt, totals, and how to resume it")
    t.add_argument("run_id")
    t.add_argument("campaign", nargs="?", help="the campaign file (to find its state directory)")
    t.add_argument("--state-dir", help="where run journals live")

    x = sub.add_parser("results", help="each record's final outcome across a run and its retries")
    x.add_argument("run_id")
    x.add_argument("campaign", nargs="?", help="the campaign file (to find its state directory)")
    x.add_argument("--state-dir", help="where run journals live")
    x.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")

    e = sub.add_parser("reports", help="listen for a run's late delivery reports (where its providers were told)")
    e.add_argument("run_id")
    e.add_argument("campaign", nargs="?", help="the campaign file (default: the one the run recorded)")
    e.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="where to listen: the address the run's report URL reaches")
    e.add_argument("--linger", type=float, metavar="S",
                   help="seconds to listen at most (default: the campaign's [reports] linger)")
    e.add_argument("--state-dir", help="where run journals live")
    e.add_argument("--quiet", action="store_true", help="a one-line JSON summary")

    s = sub.add_parser("simulate", help="serve the provider simulators on local ports")
    from .simulators.serve import add_arguments
    add_arguments(s)
    logs.add_arguments(s)

    g = sub.add_parser("segment", help="encoding, parts and cost of an SMS text", add_help=False)
    g.add_argument("rest", nargs=argparse.REMAINDER)

    d = sub.add_parser("daemon", help="drain a PostgreSQL outbox, receive delivery reports", add_help=False)
    d.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("segment", "daemon"):
        parser.parse_args(argv)  # the usual error for unknown arguments
    if args.command in ("segment", "daemon"):
        args.rest = [*extra, *args.rest]  # their own parsers read them (--help and logging flags included)
    if args.command == "blast":
        if args.rejects and not args.dry_run:
            parser.error("--rejects goes with --dry-run")
        if args.limit and args.dry_run:
            parser.error("--limit does not go with --dry-run (a dry run reads the whole source)")
        logs.setup_logging(logs.level_of(args), args.log_format)
        return _blast(args)
    if args.command in ("runs", "status", "results", "reports"):
        return _runs(args)
    if args.command == "simulate":
        from .simulators.serve import serve
        logs.setup_logging(logs.level_of(args), args.log_format)
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
    if args.campaign and not args.state_dir:
        from .config import read_toml, state_dir_of
        from .errors import ConfigError
        try:
            data, _ = read_toml(Path(args.campaign), "campaign")
        except ConfigError as e:
            print(f"dispatcher: {e}", file=sys.stderr)
            return EXIT_CONFIG
        state = state_dir_of(Path(args.campaign), data)
    else:
        state = Path(args.state_dir or ".dispatcher")
    if args.command == "reports":
        from .blast.late import main as late
        return late(args, state)
    if args.command == "runs":
        print(list_runs(state))
        return EXIT_OK
    if args.command == "results":
        from .runs import write_results
        n = write_results(state, args.run_id, args.format, sys.stdout)
        if n is None:
            print(f"dispatcher: no run '{args.run_id}' with a results file under {state}", file=sys.stderr)
            return EXIT_CONFIG
        return EXIT_OK
    shown = show_run(state, args.run_id)
    if shown is None:
        print(f"dispatcher: no run '{args.run_id}' under {state}", file=sys.stderr)
        return EXIT_CONFIG
    print(shown)
    return EXIT_OK


def _blast(args: argparse.Namespace) -> int:
    from .config import Overrides, load_campaign
    from .config.reports import load_report_settings
    from .errors import ConfigError

    o = Overrides(run_id=args.run_id, source=args.source, rate=args.rate, concurrency=args.concurrency, url=args.url,
                  on_doubt=args.on_doubt, state_dir=args.state_dir, dry_run=args.dry_run,
                  retry_failed=args.retry_failed, allow_changed=args.allow_changed, workers=args.workers,
                  limit=args.limit)
    try:
        campaign = load_campaign(args.campaign, o)
        args.reports = None if args.dry_run else load_report_settings(args.campaign)
    except ConfigError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.dry_run:
        from .blast.dry import dry
        return uvloop.run(dry(campaign, args))
    args.limit = (campaign.origin.get("overrides") or {}).get("limit")  # a resume of a test send keeps its limit
    if args.limit and campaign.workers > 1:
        if args.workers:
            print("dispatcher: --limit sends in one process: it does not go with --workers", file=sys.stderr)
            return EXIT_CONFIG
        campaign.workers = 1
    if campaign.workers > 1:
        if args.reports is not None:
            print("dispatcher: [reports] listens in one process: it does not go with workers > 1 yet "
                  "(run with --workers 1)", file=sys.stderr)
            return EXIT_CONFIG
        return _run_shared(campaign, args)
    return uvloop.run(_run(campaign, args))


def resume_command(args: argparse.Namespace, run_id: str) -> str:
    """The command that resumes this run: the same campaign and run id, and every override in force."""
    words = ["dispatcher", "blast", args.campaign, "--run-id", run_id]
    for flag, value in (("--source", args.source), ("--rate", args.rate), ("--concurrency", args.concurrency),
                        ("--workers", args.workers), ("--url", args.url), ("--on-doubt", args.on_doubt),
                        ("--state-dir", args.state_dir), ("--limit", args.limit)):
        if value is not None:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(w) for w in words)


def retry_command(args: argparse.Namespace, run_id: str) -> str:
    """The command that sends the failed records of this run again: a retry reads the run's own source and
    overrides, so only the campaign and the run id are needed."""
    words = ["dispatcher", "blast", args.campaign, "--retry-failed", run_id]
    if args.state_dir is not None:
        words += ["--state-dir", args.state_dir]
    return " ".join(shlex.quote(w) for w in words)


async def _run(campaign, args: argparse.Namespace) -> int:
    """The run in this process; with `[reports]`, a listener for its delivery reports around it."""
    if args.reports is None:
        return await _send(campaign, args, None)
    from .blast import listener
    from .errors import ConfigError
    try:
        heard = await listener.open_for(campaign, args.reports)
    except ConfigError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return await _send(campaign, args, heard)
    finally:
        await heard[0].close()


async def _send(campaign, args: argparse.Namespace, heard) -> int:
    from .engine import Engine
    from .errors import RunError, SinkError, SourceError
    from .progress import Progress
    from .signals import on_signals

    preparer = _limited(campaign, args.limit) if args.limit else None
    progress = None if args.quiet else Progress(campaign.source, json=args.log_format == "json")
    engine = Engine(campaign, on_progress=progress, preparer=preparer)
    hint = resume_command(args, campaign.run_id)
    on_signals(engine, _stop_notice)
    log.info("run %s: source %s, providers %s, results %s", campaign.run_id, campaign.source.name,
             ", ".join(f"{a} ({p.kind})" for a, p in campaign.providers.items()),
             ", ".join(s.name for s in campaign.sinks))
    try:
        st = await engine.run()
    except RunError as e:
        _end(progress)
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (SinkError, SourceError, OSError) as e:
        _end(progress)
        print(f"dispatcher: {logs.error_text(e)}", file=sys.stderr)
        if engine.running:  # it failed mid-run: what was written stays, a resume goes on from there
            print(f"dispatcher: stopped; what was written is kept. Resume with: {hint}", file=sys.stderr)
        return EXIT_CONFIG
    except asyncio.CancelledError:
        _end(progress)
        print(EXITED, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _end(progress)  # whatever happens, the terminal (and sys.stdout / sys.stderr) is given back
    delivery = None
    if heard is not None:
        from .blast.listener import hear_out
        linger = 0.0 if engine.interrupted else args.reports.linger
        delivery = await hear_out(heard[0], heard[1], linger, say=not args.quiet)
    return _report(campaign, args, st, interrupted=engine.interrupted, halted_all=engine.halted_all,
                   delivery=delivery)


def _report(campaign, args: argparse.Namespace, st, *, interrupted: bool, halted_all: bool,
            delivery: dict[str, int] | None = None) -> int:
    """The run's summary (one JSON line with --quiet / --json) and its exit code."""
    from .blast import account
    from .progress import summary

    hint = resume_command(args, campaign.run_id)
    failed = st.failed + _earlier_failures(campaign, st)
    retry = retry_command(args, campaign.run_id) if failed else None
    state = account.state_word(interrupted=interrupted, deferred=st.deferred, halted_all=halted_all)
    total = account.source_total(campaign.source, st)
    unsent = account.unsent(total, st)
    cost = account.cost(st, [p.settings.price for p in campaign.providers.values()])
    log.info("run %s %s: %d sent, %d failed, %d rejected, %d unsent", campaign.run_id, state,
             st.sent, st.failed, st.rejected, unsent)
    results = [s.name for s in campaign.sinks]
    if args.quiet or args.json:
        d = {k: v for k, v in asdict(st).items()
             if k not in ("codes", "texts", "by_encoding", "started", "cost", "timeline")}
        if args.json:
            d["timeline"] = st.timeline
        elapsed = time.monotonic() - st.started
        d.update(run_id=campaign.run_id, state=state, interrupted=interrupted, results=results, unsent=unsent,
                 total=total.records, total_exact=total.exact, cost=cost,
                 elapsed_s=round(elapsed, 3), msgs_per_s=round(st.done / elapsed, 1) if elapsed > 0 else None,
                 codes=dict(st.codes), errors={k: st.texts.get(k, "") for k in st.codes},
                 halts={a: list(w) for a, w in st.halts.items()}, halted_all=halted_all,
                 resume=hint if unsent else None, retry=retry, **_delivery_fields(delivery))
        print(orjson.dumps(d).decode())
    else:
        shown = "unknown" if total.records is None else f"{'' if total.exact else '~'}{total.records:,}"
        print(summary(st, run_id=campaign.run_id, results=results, resume_hint=hint, state=state, unsent=unsent,
                      total=shown + ("" if total.exact else " (estimate)"), cost=cost, retry_hint=retry, failed=failed,
                      halted_all=halted_all, delivery=delivery))
    if interrupted:
        return EXIT_INTERRUPTED
    if st.deferred or halted_all:
        return EXIT_DEFERRED
    return EXIT_OK if not (failed or st.rejected) else EXIT_FAILURES


def _limited(campaign, n: int):
    """`--limit N`: the campaign's source cut after its first N sendable records (those an earlier attempt
    of this run finished count), and the preparer that goes with it."""
    from .blast.limit import Limit
    from .engine import CampaignPreparer
    from .runs import totals
    from .state import RunState
    m = RunState(campaign.state_dir, campaign.run_id).manifest
    done = sum(totals(m)[k] for k in ("sent", "failed")) if m else 0
    limit = Limit(campaign.source, CampaignPreparer(campaign), n - done)
    campaign.source = limit.source
    return limit.preparer


def _delivery_fields(delivery: dict[str, int] | None) -> dict[str, int | None]:
    """The JSON summary's delivery counts (null when the run listened for no reports)."""
    from .blast.delivery import DELIVERED, PENDING, UNDELIVERED
    return {k: None if delivery is None else delivery[k] for k in (DELIVERED, UNDELIVERED, PENDING)}


def _earlier_failures(campaign, st) -> int:
    """Records an earlier attempt of this run failed (a resume skips them): their failures stand, so the
    run still exits 1 and says how to retry them."""
    if not st.skipped or campaign.retry_of is not None:
        return 0
    from .runs import totals
    from .state import RunState
    m = RunState(campaign.state_dir, campaign.run_id).manifest
    return max(totals(m)["failed"] - st.failed, 0) if m else 0


def _run_shared(campaign, args: argparse.Namespace) -> int:
    """The run by `campaign.workers` processes (dispatcher/workers.py): the same errors, signals, progress
    and summary as a run in one process."""
    from . import workers
    from .errors import RunError, SinkError, SourceError
    from .progress import Progress, Totals

    totals = Totals()
    progress = None if args.quiet else Progress(totals, json=args.log_format == "json")

    def show(st, lanes, total) -> None:
        totals.total = total
        progress.show(st, lanes)

    hint = resume_command(args, campaign.run_id)
    log.info("run %s: source %s, providers %s, results %s, %d workers", campaign.run_id, campaign.source.name,
             ", ".join(f"{a} ({p.kind})" for a, p in campaign.providers.items()),
             ", ".join(s.name for s in campaign.sinks), campaign.workers)
    try:
        ran = workers.run(campaign, show if progress is not None else None, _stop_notice)
    except RunError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (SinkError, SourceError, OSError) as e:
        print(f"dispatcher: {logs.error_text(e)}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        _end(progress)
    if ran.exited:
        print(EXITED, file=sys.stderr)
        return EXIT_INTERRUPTED
    if ran.failures:
        for line in ran.failures:
            print(f"dispatcher: {line}", file=sys.stderr)
        print(f"dispatcher: stopped; what was written is kept. Resume with: {hint}", file=sys.stderr)
        return EXIT_CONFIG
    return _report(campaign, args, ran.stats, interrupted=ran.interrupted, halted_all=ran.halted_all)


def _stop_notice(signals: int) -> None:
    """What the n-th Ctrl-C / SIGTERM of a run does, said once, as it happens."""
    if signals == 1:
        print("\nstopping: no more reading; waiting for requests on the wire (signal again to abandon them)",
              file=sys.stderr, flush=True)
    elif signals == 2:
        print("\nabandoning the requests on the wire (in doubt: a resume resends them); writing what is "
              "settled (signal again to exit at once)", file=sys.stderr, flush=True)


def _end(progress: Any) -> None:
    if progress is not None:
        progress.end()
