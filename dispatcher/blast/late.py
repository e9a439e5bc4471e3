"""`dispatcher reports RUN [CAMPAIGN] --listen HOST:PORT`: the delivery reports of a run that come after it
ended (a provider that reports in minutes, a run without `linger`, a listener that was down: providers
retry). It listens where the run's providers were told (the same secret: the run's, or `secret_env`'s),
reads each report with the provider's own parsing, appends it to the run's reports file, and stops once
every sent record of the providers the run asked (of every provider, when it asked none: their consoles
may point here) has a final report, or after `--linger` seconds
(default: the campaign's `[reports] linger`). Exit 0 when none is pending, 3 when some still are.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import orjson
import uvloop

from ..config import Overrides, load_campaign
from ..config.reports import LINGER, ReportSettings, listen_address, load_report_settings
from ..errors import ConfigError
from ..state import RunState
from .exits import EXIT_CONFIG, EXIT_OK
from .exits import EXIT_DEFERRED as EXIT_PENDING
from .listener import Listener, hear_out, run_secret
from .report_store import store_for


def main(args: argparse.Namespace, state: Path) -> int:
    m = RunState(state, args.run_id).manifest
    if m is None:
        print(f"dispatcher: no run '{args.run_id}' under {state}", file=sys.stderr)
        return EXIT_CONFIG
    origin = m.get("origin") or {}
    where = listen_address(args.listen)
    if where is None:
        print(f"dispatcher: --listen {args.listen!r} must be HOST:PORT", file=sys.stderr)
        return EXIT_CONFIG
    path = args.campaign or origin.get("campaign")
    try:
        if not path:
            raise ConfigError(f"run '{args.run_id}' recorded no campaign file: name it")
        given = {k: v for k, v in (origin.get("overrides") or {}).items() if k in ("source", "url", "state_dir")}
        campaign = load_campaign(path, Overrides(run_id=args.run_id, dry_run=True, **given))
        settings = load_report_settings(path) or ReportSettings(where[0], where[1], "", LINGER, None)
        store = store_for(origin, campaign.sinks[0], args.run_id)
    except ConfigError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    linger = settings.linger if args.linger is None else max(args.linger, 0.0)
    recorded = origin.get("reports") or {}
    settings = dataclasses.replace(settings, host=where[0], port=where[1],
                                   public_url=recorded.get("public_url") or settings.public_url)
    secret = settings.secret or run_secret(state, args.run_id)
    return uvloop.run(_listen(Listener(settings, campaign.providers, secret, store), args,
                              list(recorded.get("asked") or campaign.providers), linger))


async def _listen(listener: Listener, args: argparse.Namespace, asked: list[str], linger: float) -> int:
    try:
        await listener.start()
    except ConfigError as e:
        print(f"dispatcher: {e}", file=sys.stderr)
        return EXIT_CONFIG
    before = listener.received
    got = await hear_out(listener, asked, linger, say=not args.quiet)
    heard = listener.received - before
    if args.quiet:
        print(orjson.dumps({"run_id": args.run_id, **got, "heard": heard}).decode())
    else:
        print(f"run {args.run_id}: {heard:,} report(s) heard now; delivered {got['delivered']:,}, undelivered "
              f"{got['undelivered']:,}, no final report yet {got['reports_pending']:,}")
    return EXIT_OK if not got["reports_pending"] else EXIT_PENDING
