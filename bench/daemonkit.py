"""Daemon worker processes for the benchmarks: start N `python -m dispatcher daemon` workers, wait until
they have joined, reset a schema between runs. Shared by bench/daemon.py and bench/daemon_service.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT


class Workers:
    def __init__(self, config: Path, dsn: str, n: int, root: Path = ROOT) -> None:
        """`root`: the checkout whose code the workers run (bench/daemon_service.py runs an older one beside)."""
        env = {**os.environ, "DISPATCHER_DSN": dsn, "PYTHONPATH": str(root)}
        self.procs = [subprocess.Popen([sys.executable, "-m", "dispatcher", "daemon", str(config), "--worker", f"w{i}"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root, env=env)
                      for i in range(n)]
        for p in self.procs:
            assert p.stdout is not None
            for line in p.stdout:
                if line.strip() == "ready":
                    break
            else:
                raise RuntimeError(f"daemon did not start: {p.stderr.read() if p.stderr else ''}")

    def stop(self) -> list[int]:
        for p in self.procs:
            p.terminate()
        return [p.wait(60) for p in self.procs]


async def reset(dsn: str, schema: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if await conn.fetchval("SELECT to_regclass('dispatcher_schema') IS NOT NULL"):
            await conn.execute("DELETE FROM dispatcher_schema WHERE name = $1", f"daemon:{schema}.outbox")
    finally:
        await conn.close()


async def wait_live(dsn: str, table: str, n: int, heartbeat: float, timeout: float = 30) -> None:
    """Until every worker has joined (registered, waited its 1.5 heartbeats)."""
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = await conn.fetchval(f"SELECT count(*) FROM {table}_workers WHERE heartbeat_at > now() - interval '2 s'")
            if live >= n:
                await asyncio.sleep(1.5 * heartbeat + 0.25)  # the joining wait (1.5 heartbeats), and a margin
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{n} workers did not register within {timeout} s")
    finally:
        await conn.close()
