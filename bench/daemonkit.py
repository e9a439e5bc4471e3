"""Daemon worker processes for the benchmarks: start N `python -m dispatcher daemon` workers (or, in quick
mode, fork them from a warm bench/zygote.py), wait until they have joined, reset a schema between runs.
Shared by bench/daemon.py, bench/daemon_service.py, bench/daemon_events.py and bench/api.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT


class Zygote:
    """bench/zygote.py for a scenario in quick mode: a warm process that forks its daemon workers (each pays
    its own rows, not the 0.9 s of imports and kernels before them). Closed, it ends once its workers have,
    and this process reaps it: their CPU is the scenario's. Threads share it (one request at a time)."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        assert self.proc.stdout is not None and self.proc.stdin is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"bench.zygote did not start (exit {self.proc.wait(10)})")
        self.lock = threading.Lock()

    def fork(self, argv: list[str], env: dict[str, str], where: Path) -> int:
        """A child running `dispatcher.cli.main(argv)`, its files in `where`: its pid."""
        assert self.proc.stdout is not None and self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(orjson.dumps({"argv": argv, "env": env, "cwd": str(self.root),
                                                "dir": str(where)}).decode() + "\n")
            self.proc.stdin.flush()
            return int(self.proc.stdout.readline())

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(90)


class Forked:
    """A worker forked by a Zygote, as Workers uses a Popen: pid, terminate, wait (its exit code)."""

    def __init__(self, zygote: Zygote, argv: list[str], env: dict[str, str]) -> None:
        self.where = Path(tempfile.mkdtemp(prefix="bench-worker-"))
        self.pid = zygote.fork(argv, env, self.where)

    def ready(self, timeout: float = 60) -> None:
        """Until its stdout says `ready` (polled: the file is written by a process that is not our child)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.where / "stdout"
            if out.exists() and "ready" in out.read_text().split():
                return
            if (self.where / "exit").exists():
                break
            time.sleep(0.02)
        raise RuntimeError(f"daemon did not start: {(self.where / 'stderr').read_text(errors='replace')[-2000:]}")

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not (self.where / "exit").exists():
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            time.sleep(0.02)
        code = int((self.where / "exit").read_text())
        shutil.rmtree(self.where, ignore_errors=True)
        return code


class Workers:
    def __init__(self, config: Path, dsn: str, n: int, root: Path = ROOT, first: int = 0,
                 zygote: Zygote | None = None) -> None:
        """`root`: the checkout whose code the workers run (bench/daemon_service.py runs an older one beside);
        `first`: the first worker's number (w0, w1, ...: a set joining another on the same outbox); `zygote`:
        forked from it (quick mode), not started by exec."""
        env = {**os.environ, "DISPATCHER_DSN": dsn, "PYTHONPATH": str(root)}
        argv = [["daemon", str(config), "--worker", f"w{i}"] for i in range(first, first + n)]
        if zygote is not None:
            self.procs: list[Any] = [Forked(zygote, a, env) for a in argv]
            for f in self.procs:
                f.ready()
            return
        self.procs = [subprocess.Popen([sys.executable, "-m", "dispatcher", *a], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, cwd=root, env=env) for a in argv]
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


async def clear(dsn: str, table: str) -> None:
    """The outbox's rows deleted (every one finished): the next part on the same workers starts empty."""
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DELETE FROM {table}")
    finally:
        await conn.close()


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
