"""Shared fixtures: the simulators in their own process over local HTTP, a real PostgreSQL.

`sims` serves every simulator from `dispatcher simulate` (one process, ephemeral ports) for
the whole session; `sim` resets all of them before a test. `postgres_dsn` is a throwaway
PostgreSQL cluster: the one `make test` started (DISPATCHER_TEST_DSN), or one started
here (tests/pgserver.py, in a temp dir of its own) when that variable is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pgserver
import pytest

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {  # the simulators' defaults; the adapters read them from these variables
    "NRS360_USER": "demo", "NRS360_PASSWORD": "demo-secret",
    "SENDIX_USER": "demo", "SENDIX_PASSWORD": "demo-secret",
    "SENDX_API_KEY": "demo-team-key",
    "KALEYRA_SID": "HXAP1600000000IN", "KALEYRA_API_KEY": "A0123456789abcdef0123456789abcdef",
    "SMSGATEWAY24_EMAIL": "demo@example.com", "SMSGATEWAY24_PASSWORD": "demo-secret",
}


class Sims:
    """The simulator process: base URLs by kind, and its control endpoint."""

    def __init__(self, proc: subprocess.Popen[str], urls: dict[str, str]) -> None:
        self.proc = proc
        self.urls = urls

    def url(self, kind: str) -> str:
        return self.urls[kind]

    def _call(self, kind: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.urls[kind] + path, method="POST" if body is not None else "GET",
                                     data=orjson.dumps(body) if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return orjson.loads(r.read())

    def ledger(self, kind: str) -> list[dict]:
        return self._call(kind, "/_sim/ledger")["entries"]

    def stats(self, kind: str) -> dict:
        return self._call(kind, "/_sim/stats")

    def config(self, kind: str, **faults: object) -> dict:
        return self._call(kind, "/_sim/config", faults)

    def reset(self, kind: str | None = None) -> None:
        defaults = {"rate": 0.0, "latency_ms": 0.0, "jitter_ms": 0.0, "error_rate": 0.0, "drop_rate": 0.0,
                    "drop_after_rate": 0.0, "throttle_rate": 0.0, "throttle_retry_after": 0.0, "max_batch": 0,
                    "credits": -1.0, "dlr_delay_ms": 0.0, "ledger": True}
        for k in [kind] if kind else list(self.urls):
            self._call(k, "/_sim/reset", {})
            self._call(k, "/_sim/config", defaults)


def start_simulators(*extra: str) -> Sims:
    proc = subprocess.Popen([sys.executable, "-m", "dispatcher", "simulate", "--base-port", "0", "--seed", "7", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simulators exited: {proc.stderr.read() if proc.stderr else ''}")
        line = line.strip()
        if line == "ready":
            return Sims(proc, urls)
        kind, url = line.split()
        urls[kind] = url
    proc.kill()
    raise RuntimeError("simulators did not start within 60 s")


@pytest.fixture(scope="session")
def sims() -> Iterator[Sims]:
    s = start_simulators()
    try:
        yield s
    finally:
        s.proc.terminate()
        try:
            s.proc.wait(10)
        except subprocess.TimeoutExpired:
            s.proc.kill()


@pytest.fixture
def sim(sims: Sims, monkeypatch: pytest.MonkeyPatch) -> Sims:
    sims.reset()
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    return sims


@pytest.fixture(autouse=True, scope="session")
def _credentials() -> None:
    for k, v in CREDENTIALS.items():
        os.environ.setdefault(k, v)


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    dsn = os.environ.get("DISPATCHER_TEST_DSN")
    if dsn:
        yield dsn
        return
    try:
        root, dsn = pgserver.start()
    except pgserver.PgServerError as e:  # the cause in one line: no traceback, nor the exception it came from
        raise pytest.fail.Exception(f"pgserver: {e}", pytrace=False) from None
    try:
        yield dsn
    finally:
        pgserver.stop(root)
