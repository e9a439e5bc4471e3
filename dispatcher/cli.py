"""`dispatcher blast | runs | status | results | reports | simulate | segment | daemon`: the arguments, and
the room each command lives in (a blast: dispatcher/blast/command.py). Nothing else lives here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvloop

from . import logs
from .blast.exits import EXIT_CONFIG, EXIT_DEFERRED, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK

# numpy's OpenBLAS starts a thread a core when numpy is imported: about 0.07 s of CPU in every `dispatcher`
# process here (a daemon's start-up is 0.9 s), and nothing in dispatcher calls BLAS. Set before numpy's first
# import (the commands import it lazily, after this), unless the environment says otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["EXIT_CONFIG", "EXIT_DEFERRED", "EXIT_FAILURES", "EXIT_INTERRUPTED", "EXIT_OK", "main", "version"]


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
        from .blast.command import blast
        return blast(args)
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

    from .blast.runs import list_runs, show_run
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
        from .blast.runs import write_results
        from .errors import ConfigError
        try:
            n = write_results(state, args.run_id, args.format, sys.stdout)
        except ConfigError as e:  # its PostgreSQL table cannot be read
            print(f"dispatcher: {e}", file=sys.stderr)
            return EXIT_CONFIG
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
