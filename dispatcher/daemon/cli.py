"""`dispatcher daemon DAEMON.toml [--worker NAME] [--check] [--init-db] [--print-schema]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import textwrap

import uvloop

from .. import logs
from ..providers.base import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatcher daemon",
                                description="Drain a PostgreSQL outbox through the providers, as fast as each "
                                "allows, and receive their delivery reports. SIGTERM stops gracefully.")
    p.add_argument("config", help="daemon TOML file (see examples/daemon.toml)")
    p.add_argument("--worker", help="this worker's name (default: [daemon] worker, else host-pid-random)")
    p.add_argument("--check", action="store_true", help="validate the file and exit")
    p.add_argument("--init-db", action="store_true", help="create or migrate the tables and exit")
    p.add_argument("--print-schema", action="store_true", help="print the tables' SQL and exit (no secrets needed)")
    logs.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from .config import load_daemon, outbox_table
    if args.print_schema:
        try:
            table = outbox_table(args.config)
        except ConfigError as e:
            print(f"dispatcher daemon: {e}", file=sys.stderr)
            return EXIT_CONFIG
        from .outbox import Names, schema_sql
        print(textwrap.dedent(schema_sql(Names(table))).strip())
        return EXIT_OK
    try:
        cfg = load_daemon(args.config, worker=args.worker)
    except ConfigError as e:
        print(f"dispatcher daemon: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        print(f"{args.config}: ok ({len(cfg.providers)} provider(s), {len(cfg.campaigns)} campaign(s))")
        return EXIT_OK
    logs.setup_logging(logs.level_of(args, cfg.log_level), args.log_format)
    return uvloop.run(_run(cfg, init_only=args.init_db))


async def _run(cfg, init_only: bool = False) -> int:
    from .service import Daemon, DaemonError

    daemon = Daemon(cfg)
    if init_only:
        import asyncpg

        from .outbox import init_connection
        conn = await asyncpg.connect(cfg.dsn, timeout=10)
        try:
            await init_connection(conn)
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
        return EXIT_FAILED
    print(f"dispatcher daemon {cfg.worker} {daemon.url}", flush=True)
    print("ready", flush=True)
    return await daemon.wait()
