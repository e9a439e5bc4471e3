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

SAMPLES = 3  # rendered messages per channel that --dry-run shows


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
        logs.setup_logging(logs.level_of(args), args.log_format)
        return _blast(args)
    if args.command in ("runs", "status", "results"):
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
    from .errors import ConfigError

    o = Overrides(run_id=args.run_id, source=args.source, rate=args.rate, concurrency=args.concurrency, url=args.url,
                  on_doubt=args.on_doubt, state_dir=args.state_dir, dry_run=args.dry_run,
                  retry_failed=args.retry_failed, allow_changed=args.allow_changed, workers=args.workers)
    try:
        campaign = load_campaign(args.campaign, o)
    except ConfigError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.dry_run:
        return uvloop.run(_dry(campaign, args))
    if campaign.workers > 1:
        return _run_shared(campaign, args)
    return uvloop.run(_run(campaign, args))


def resume_command(args: argparse.Namespace, run_id: str) -> str:
    """The command that resumes this run: the same campaign and run id, and every override in force."""
    words = ["dispatcher", "blast", args.campaign, "--run-id", run_id]
    for flag, value in (("--source", args.source), ("--rate", args.rate), ("--concurrency", args.concurrency),
                        ("--workers", args.workers), ("--url", args.url), ("--on-doubt", args.on_doubt),
                        ("--state-dir", args.state_dir)):
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


def _rejects_sink(path: str) -> Any:
    from .sinks.files import CsvSink, JsonlSink
    return (CsvSink if path.lower().endswith(".csv") else JsonlSink)(path)


async def _dry(campaign, args: argparse.Namespace) -> int:
    from .codecs.tables import SHORT_LINK
    from .engine import dry_run
    from .errors import SinkError
    from .model import Results

    samples: dict[str, list[dict[str, Any]]] = {}
    rejects = None
    if args.rejects:
        rejects = _rejects_sink(args.rejects)
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


async def _run(campaign, args: argparse.Namespace) -> int:
    from .engine import Engine
    from .errors import RunError, SinkError, SourceError
    from .progress import Progress
    from .signals import on_signals

    progress = None if args.quiet else Progress(campaign.source, json=args.log_format == "json")
    engine = Engine(campaign, on_progress=progress)
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
    return _report(campaign, args, st, interrupted=engine.interrupted, halted_all=engine.halted_all)


def _report(campaign, args: argparse.Namespace, st, *, interrupted: bool, halted_all: bool) -> int:
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
                 resume=hint if unsent else None, retry=retry)
        print(orjson.dumps(d).decode())
    else:
        shown = "unknown" if total.records is None else f"{'' if total.exact else '~'}{total.records:,}"
        print(summary(st, run_id=campaign.run_id, results=results, resume_hint=hint, state=state, unsent=unsent,
                      total=shown + ("" if total.exact else " (estimate)"), cost=cost, retry_hint=retry, failed=failed,
                      halted_all=halted_all))
    if interrupted:
        return EXIT_INTERRUPTED
    if st.deferred or halted_all:
        return EXIT_DEFERRED
    return EXIT_OK if not (failed or st.rejected) else EXIT_FAILURES


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
