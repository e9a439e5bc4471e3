"""`dispatcher blast CAMPAIGN.toml`: a campaign file sent once, resumably, with its account to the user.

The campaign is loaded (config/), then sent by one engine in this process (with a listener for its
delivery reports when the file has `[reports]`) or by `workers` forked processes (multiprocess.py); the
summary (progress.summary, or one JSON line) says what became of every record, and the exit code follows
the README's table (exits.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import time
from dataclasses import asdict
from typing import Any

import orjson
import uvloop

from .. import logs
from .exits import EXIT_CONFIG, EXIT_DEFERRED, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK

log = logging.getLogger("dispatcher.blast")
EXITED = "dispatcher: exited at once; requests that were on the wire are in doubt and resent by a resume"


def blast(args: argparse.Namespace) -> int:
    """`dispatcher blast CAMPAIGN`: load, then a dry run, a run in this process, or one shared by workers."""
    from ..config import Overrides, load_campaign
    from ..config.reports import load_report_settings
    from ..errors import ConfigError

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
        from .dry import dry
        return uvloop.run(dry(campaign, args))
    args.limit = (campaign.origin.get("overrides") or {}).get("limit")  # a resume of a test send keeps its limit
    if args.limit and campaign.processes > 1:
        if args.workers:
            print("dispatcher: --limit sends in one process: it does not go with --workers", file=sys.stderr)
            return EXIT_CONFIG
        campaign.processes = 1
    if campaign.processes > 1:
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
    from ..errors import ConfigError
    from . import listener
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
    from ..engine import Engine
    from ..errors import RunError, SinkError, SourceError
    from .preparer import CampaignPreparer
    from .progress import Progress
    from .signals import on_signals

    preparer = _limited(campaign, args.limit) if args.limit else CampaignPreparer(campaign)
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
    delivery, ended = None, time.monotonic()  # the speed is the sending's, not the linger's
    if heard is not None:
        from .listener import hear_out
        linger = 0.0 if engine.interrupted else args.reports.linger
        delivery = await hear_out(heard[0], heard[1], linger, say=not args.quiet)
    return _report(campaign, args, st, interrupted=engine.interrupted, halted_all=engine.halted_all,
                   delivery=delivery, ended=ended)


def _report(campaign, args: argparse.Namespace, st, *, interrupted: bool, halted_all: bool,
            delivery: dict[str, int] | None = None, ended: float | None = None) -> int:
    """The run's summary (one JSON line with --quiet / --json) and its exit code."""
    from . import account
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
        elapsed = (ended or time.monotonic()) - st.started
        d.update(run_id=campaign.run_id, state=state, interrupted=interrupted, results=results, unsent=unsent,
                 total=total.records, total_exact=total.exact, cost=cost,
                 elapsed_s=round(elapsed, 3), msgs_per_s=round(st.done / elapsed, 1) if elapsed > 0 else None,
                 codes=dict(st.codes), errors={k: st.texts.get(k, "") for k in st.codes},
                 halts={a: list(w) for a, w in st.halts.items()}, halted_all=halted_all,
                 resume=hint if unsent else None, retry=retry, **_delivery_fields(delivery))
        print(orjson.dumps(d).decode())
    else:
        shown = "unknown" if total.records is None else f"{'' if total.exact else '~'}{total.records:,}"
        kept = campaign.origin.get("reports") or {}
        if delivery is not None and (kept.get("path") or kept.get("table")):
            results = [*results, f"{kept.get('path') or kept.get('table')} (the delivery reports heard)"]
        print(summary(st, run_id=campaign.run_id, results=results, resume_hint=hint, state=state, unsent=unsent,
                      total=shown + ("" if total.exact else " (estimate)"), cost=cost, retry_hint=retry, failed=failed,
                      halted_all=halted_all, delivery=delivery, ended=ended))
    if interrupted:
        return EXIT_INTERRUPTED
    if st.deferred or halted_all:
        return EXIT_DEFERRED
    return EXIT_OK if not (failed or st.rejected) else EXIT_FAILURES


def _limited(campaign, n: int):
    """`--limit N`: the campaign's source cut after its first N sendable records (those an earlier attempt
    of this run finished count), and the preparer that goes with it."""
    from ..state import RunState
    from .limit import Limit
    from .preparer import CampaignPreparer
    from .runs import totals
    m = RunState(campaign.state_dir, campaign.run_id).manifest
    done = sum(totals(m)[k] for k in ("sent", "failed")) if m else 0
    limit = Limit(campaign.source, CampaignPreparer(campaign), n - done)
    campaign.source = limit.source
    return limit.preparer


def _delivery_fields(delivery: dict[str, int] | None) -> dict[str, int | None]:
    """The JSON summary's delivery counts (null when the run listened for no reports)."""
    from .heard import DELIVERED, PENDING, UNDELIVERED
    return {k: None if delivery is None else delivery[k] for k in (DELIVERED, UNDELIVERED, PENDING)}


def _earlier_failures(campaign, st) -> int:
    """Records an earlier attempt of this run failed (a resume skips them): their failures stand, so the
    run still exits 1 and says how to retry them."""
    if not st.skipped or campaign.retry_of is not None:
        return 0
    from ..state import RunState
    from .runs import totals
    m = RunState(campaign.state_dir, campaign.run_id).manifest
    return max(totals(m)["failed"] - st.failed, 0) if m else 0


def _run_shared(campaign, args: argparse.Namespace) -> int:
    """The run by `campaign.processes` processes (multiprocess.py): the same errors, signals, progress
    and summary as a run in one process."""
    from ..errors import RunError, SinkError, SourceError
    from . import multiprocess
    from .progress import Progress, Totals

    totals = Totals()
    progress = None if args.quiet else Progress(totals, json=args.log_format == "json")

    def show(st, lanes, total) -> None:
        totals.total = total
        progress.show(st, lanes)

    hint = resume_command(args, campaign.run_id)
    log.info("run %s: source %s, providers %s, results %s, %d workers", campaign.run_id, campaign.source.name,
             ", ".join(f"{a} ({p.kind})" for a, p in campaign.providers.items()),
             ", ".join(s.name for s in campaign.sinks), campaign.processes)
    shared = _shared_listener(campaign, args)
    if shared is False:
        return EXIT_CONFIG
    delivery = ran = None
    try:
        ran = multiprocess.run(campaign, show if progress is not None else None, _stop_notice,
                               shared.start if shared else None)
    except RunError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (SinkError, SourceError, OSError) as e:
        print(f"dispatcher: {logs.error_text(e)}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        _end(progress)
        ended = time.monotonic()
        if shared:  # after the last send: linger unless the run was stopped or failed
            fine = ran is not None and not (ran.interrupted or ran.exited or ran.failures)
            if fine and not args.quiet and args.reports.linger > 0:
                print(f"listening for delivery reports for up to {args.reports.linger:g} s at "
                      f"{shared.listener.public} (Ctrl-C to stop)", file=sys.stderr, flush=True)
            delivery = shared.finish(args.reports.linger if fine else 0.0)
    if ran.exited:
        print(EXITED, file=sys.stderr)
        return EXIT_INTERRUPTED
    if ran.failures:
        for line in ran.failures:
            print(f"dispatcher: {line}", file=sys.stderr)
        print(f"dispatcher: stopped; what was written is kept. Resume with: {hint}", file=sys.stderr)
        return EXIT_CONFIG
    return _report(campaign, args, ran.stats, interrupted=ran.interrupted, halted_all=ran.halted_all,
                   delivery=delivery, ended=ended)


def _shared_listener(campaign, args: argparse.Namespace):
    """The report listener of a shared run (None without [reports]; False when it cannot listen: said)."""
    if args.reports is None:
        return None
    from ..errors import ConfigError
    from .shared_listener import SharedListener
    try:
        return SharedListener(campaign, args.reports)
    except ConfigError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return False


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
