"""`dispatcher daemon DAEMON.toml [--worker NAME] [--check] [--init-db] [--print-schema]`.

Exit codes follow the blast's table (README "Exit codes"): 0 stopped as asked (SIGTERM, SIGINT) with what
was on the wire settled; 2 configuration or what it names cannot be used: the file, the database, the
listen address, a worker name in use, or the outbox failing under a running daemon (one line each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
import sys

import uvloop

from .. import logs
from ..errors import ConfigError

EXIT_OK, EXIT_CONFIG = 0, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatcher daemon",
                                description="Drain a PostgreSQL outbox through the providers, as fast as each "
                                "allows, and receive their delivery reports. SIGTERM stops gracefully.")
    p.add_argument("config", help="daemon TOML file (see examples/daemon.toml)")
    p.add_argument("--worker", help="this worker's name (default: [daemon] worker, else host-pid-random)")
    p.add_argument("--listen", metavar="HOST:PORT", type=_listen,
                   help="where the HTTP listener binds (instead of [http] listen; port 0: any free port)")
    p.add_argument("--check", action="store_true", help="validate the file and exit")
    p.add_argument("--init-db", action="store_true", help="create or migrate the tables and exit")
    p.add_argument("--print-schema", action="store_true", help="print the tables' SQL and exit (no secrets needed)")
    p.add_argument("--retry-failed", action="store_true",
                   help="put failed rows back to pending (narrowed by --campaign, --code, --since) and exit; "
                        "rejected rows stay: they are bad input")
    p.add_argument("--campaign", help="with --retry-failed: only this campaign's rows")
    p.add_argument("--code", help="with --retry-failed: only rows that failed with this provider code")
    p.add_argument("--since", type=_when, help="with --retry-failed: only rows that failed at or after this time "
                   "(ISO 8601, e.g. 2026-12-01T09:00:00+01:00; without an offset, UTC)")
    logs.add_arguments(p)
    return p


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' must be HOST:PORT (port 0: any free port)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _when(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an ISO 8601 time (e.g. 2026-12-01T09:00:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if (args.campaign or args.code or args.since) and not args.retry_failed:
        print("dispatcher daemon: --campaign, --code and --since go with --retry-failed", file=sys.stderr)
        return EXIT_CONFIG
    from .config import load_daemon, outbox_table
    if args.print_schema:
        try:
            table = outbox_table(args.config)
        except ConfigError as e:
            print(f"dispatcher daemon: {e}", file=sys.stderr)
            return EXIT_CONFIG
        from .outbox import TableNames, every_sql
        print(every_sql(TableNames(table)))  # every version: the campaigns table and the indexes of 003 and 004 too
        return EXIT_OK
    try:
        cfg = load_daemon(args.config, worker=args.worker)
    except ConfigError as e:
        print(f"dispatcher daemon: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.listen:
        cfg.listen_host, cfg.listen_port = args.listen
    if args.retry_failed:
        if args.campaign and args.campaign not in cfg.campaigns:
            print(f"dispatcher daemon: --campaign {args.campaign}: no such campaign in {args.config} "
                  f"(campaigns: {', '.join(sorted(cfg.campaigns)) or 'none'})", file=sys.stderr)
            return EXIT_CONFIG
        return uvloop.run(_retry_failed(cfg, args.campaign, args.code, args.since))
    if args.check:
        print(f"{args.config}: ok ({len(cfg.providers)} provider(s), {len(cfg.campaigns)} campaign(s))")
        return EXIT_OK
    logs.setup_logging(logs.level_of(args, cfg.log_level), args.log_format or cfg.log_format)
    return uvloop.run(_run(cfg, init_only=args.init_db))


async def _connect(cfg):
    """One connection for a one-shot command (named, as every connection of this project), or None once the
    reason it cannot be made is printed."""
    from .. import pg
    from .outbox import init_connection
    try:
        conn = await pg.connect(cfg.dsn, timeout=10)
    except pg.PG_ERRORS as e:
        print(f"dispatcher daemon: database: {pg.explain(e, cfg.dsn)}", file=sys.stderr)
        return None
    await init_connection(conn)
    return conn


async def _retry_failed(cfg, campaign: str | None, code: str | None, since: dt.datetime | None) -> int:
    from .outbox import OutboxQueries, TableNames
    conn = await _connect(cfg)
    if conn is None:
        return EXIT_CONFIG
    try:
        n = await OutboxQueries(cfg, TableNames(cfg.table)).retry_failed(conn, campaign, code, since)
    finally:
        await conn.close()
    what = " ".join(f for f in (f"of campaign {campaign}" if campaign else "", f"with code {code}" if code else "",
                                f"failed since {since.isoformat()}" if since else "") if f)
    print(f"outbox {cfg.table}: {n} failed row(s) {what + ' ' if what else ''}put back to pending")
    return EXIT_OK


async def _run(cfg, init_only: bool = False) -> int:
    from .service import Daemon, DaemonError

    daemon = Daemon(cfg)
    if init_only:
        conn = await _connect(cfg)
        if conn is None:
            return EXIT_CONFIG
        try:
            version = await daemon.store.migrate(conn)
        finally:
            await conn.close()
        print(f"outbox {cfg.table}: schema version {version}")
        return EXIT_OK
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, daemon.stop)
    try:
        await daemon.start()
    except DaemonError as e:
        print(f"dispatcher daemon: {e}", file=sys.stderr)
        await daemon.close()
        return EXIT_CONFIG
    print(f"dispatcher daemon {cfg.worker} {daemon.url}", flush=True)
    print("ready", flush=True)
    return EXIT_OK if await daemon.wait() == 0 else EXIT_CONFIG
