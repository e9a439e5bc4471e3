"""`dispatcher simulate`: serve simulators on local ports until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import fields

from aiohttp import web

from . import kinds
from .base import Faults

DEFAULT_PORTS = {"nrs360": 8360, "sendix": 8361, "sendx": 8362, "kaleyra": 8363, "smsgateway24": 8364}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", help="comma-separated simulators to serve (default: all)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--base-port", type=int, default=None,
                   help="first port (the rest follow); 0 = any free ports. Default: each simulator's own port")
    p.add_argument("--rate", action="append", default=[], metavar="KIND=N",
                   help="requests/s a simulator admits in any one-second window (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KIND.KEY=VALUE",
                   help="a simulator's own setting, e.g. nrs360.password=secret (repeatable)")
    p.add_argument("--seed", type=int, default=None)
    for f in fields(Faults):
        if f.name == "rate":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None)
        else:
            p.add_argument(flag, dest=f.name, type=float, default=None)


async def serve(args: argparse.Namespace) -> int:
    available = kinds()
    names = args.only.split(",") if args.only else sorted(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"simulate: unknown simulator(s) {', '.join(unknown)}; known: {', '.join(sorted(available))}",
              file=sys.stderr)
        return 2
    rates = dict(r.split("=", 1) for r in args.rate)
    own: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        kind, _, name = key.partition(".")
        own.setdefault(kind, {})[name] = value
    runners = []
    for i, name in enumerate(names):
        faults = Faults()
        for f in fields(Faults):
            v = getattr(args, f.name, None) if f.name != "rate" else None
            if v is not None:
                setattr(faults, f.name, type(getattr(faults, f.name))(v))
        if name in rates:
            faults.rate = float(rates[name])
        sim = available[name](faults, seed=args.seed, **own.get(name, {}))
        runner = web.AppRunner(sim.app(), access_log=None, handle_signals=False)
        await runner.setup()
        port = DEFAULT_PORTS.get(name, 8370 + i) if args.base_port is None else (args.base_port and args.base_port + i)
        site = web.TCPSite(runner, args.host, port, backlog=1024, reuse_address=True)
        try:
            await site.start()
        except OSError as e:  # one line, not a traceback: the usual cause is another simulator still running
            print(f"dispatcher simulate: {name}: cannot listen on {args.host}:{port} ({e.strerror or e}); "
                  f"is another simulator running? (--base-port 0 picks free ports)", file=sys.stderr)
            runners.append(runner)
            for r in runners:
                await r.cleanup()
            return 2
        bound = site._server.sockets[0].getsockname()[1] if site._server else port  # type: ignore[union-attr]
        print(f"{name} http://{args.host}:{bound}", flush=True)
        runners.append(runner)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for r in runners:
        await r.cleanup()
    return 0
