"""What every benchmark scenario shares: simulators in their own process, audiences, medians."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {"NRS360_USER": "demo", "NRS360_PASSWORD": "demo-secret", "SENDIX_USER": "demo",
               "SENDIX_PASSWORD": "demo-secret", "SENDX_API_KEY": "demo-team-key",
               "KALEYRA_SID": "HXAP1600000000IN", "KALEYRA_API_KEY": "A0123456789abcdef0123456789abcdef",
               "SMSGATEWAY24_EMAIL": "demo@example.com", "SMSGATEWAY24_PASSWORD": "demo-secret"}
for _k, _v in CREDENTIALS.items():
    os.environ.setdefault(_k, _v)


@contextlib.contextmanager
def simulator(kind: str, *args: str) -> Iterator[str]:
    """A simulator in its own process (its own core), with no ledger kept; yields its base URL."""
    with serving([sys.executable, "-m", "dispatcher", "simulate", "--only", kind, "--base-port", "0",
                  "--ledger", "false", *args], f"simulator {kind}") as url:
        yield url


@contextlib.contextmanager
def upstream(kind: str, latency_ms: float = 0) -> Iterator[str]:
    """The fast upstream of this provider's shape (bench/upstream.py) in its own process; yields its URL."""
    with upstreams([kind], latency_ms) as urls:
        yield urls[kind]


def upstreams(kinds: list[str], latency_ms: float = 0) -> contextlib.AbstractContextManager[dict[str, str]]:
    """The fast upstreams of these shapes in one process, each on a port of its own; yields {kind: URL}."""
    return serving_all([sys.executable, "-m", "bench.upstream", *kinds, "--latency-ms", str(latency_ms)],
                       f"upstream {','.join(kinds)}")


def unlimited_simulators(kinds: list[str], latency_ms: float = 0) -> contextlib.AbstractContextManager[dict[str, str]]:
    """The simulators of these kinds in one process (each on a port of its own), rate limits lifted (and a
    round trip added when asked), no ledger; yields {kind: URL}."""
    rates = [a for kind in kinds for a in ("--rate", f"{kind}=1000000000")]
    return serving_all([sys.executable, "-m", "dispatcher", "simulate", "--only", ",".join(kinds), "--base-port", "0",
                        "--ledger", "false", *rates, *(("--latency-ms", str(latency_ms)) if latency_ms else ())],
                       f"simulator {','.join(kinds)}")


# Every throughput figure is measured against both, in this order: the fast upstream says what the
# engine can do (the engine's ceiling), the simulator that it still does it against the real API (fidelity).
# Each is one process for every kind a scenario's jobs need: the jobs run one after another, so one kind
# is busy at a time, and a scenario pays one interpreter start a server, not one a kind.
SERVERS: dict[str, Callable[[list[str], float], contextlib.AbstractContextManager[dict[str, str]]]] = {
    "upstream": upstreams, "simulator": unlimited_simulators}


def child_cpu() -> float:
    """CPU seconds (user + system) of every child process waited for so far: deltas give one child's."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def serving(cmd: list[str], what: str) -> Iterator[str]:
    """A server process that prints `<word> URL` lines then `ready`; yields the last URL, stops it after."""
    with serving_all(cmd, what) as urls:
        yield list(urls.values())[-1]


@contextlib.contextmanager
def serving_all(cmd: list[str], what: str) -> Iterator[dict[str, str]]:
    """A server process that prints `<word> URL` lines then `ready`; yields {word: URL}, stops it after."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    try:
        for line in proc.stdout:
            if line.strip() == "ready":
                break
            word, url = line.split()[:2]
            urls[word] = url
        if not urls:
            raise RuntimeError(f"{what} did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield urls
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


_CLUSTER: dict[str, Any] = {}  # the throwaway cluster this process started: {"dsn": ...} or {"error": ...}


def on_postgres(measure: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """measure(dsn) on DISPATCHER_BENCH_DSN, else on a throwaway cluster (tests/pgserver.py: a temp dir of its own),
    started by the first scenario that needs one and shared by the others (each works in tables or schemas of
    its own and drops them), removed when this process exits. A cluster that does not start is this
    scenario's error, pgserver's one line that names the failed command and its output, not a traceback; the
    other scenarios still run."""
    dsn = os.environ.get("DISPATCHER_BENCH_DSN")
    if dsn:
        return measure(dsn)
    if not _CLUSTER:
        spec = importlib.util.spec_from_file_location("pgserver", ROOT / "tests" / "pgserver.py")
        assert spec is not None and spec.loader is not None
        pgserver = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pgserver)
        try:
            root, _CLUSTER["dsn"] = pgserver.start()
        except pgserver.PgServerError as e:
            _CLUSTER["error"] = f"pgserver: {e}"
        else:
            atexit.register(pgserver.stop, root)
    if "error" in _CLUSTER:
        return {"error": _CLUSTER["error"]}
    return measure(_CLUSTER["dsn"])


def sim_stats(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url + "/_sim/stats", timeout=10) as r:
        return orjson.loads(r.read())


def sim_reset(url: str) -> None:
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(url + "/_sim/reset", data=b"{}", method="POST"), timeout=10).read()


def audience(path: Path, n: int, *, seed: int = 1) -> Path:
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "audience.py"), str(path), str(n), "--seed", str(seed)],
                       check=True)
    return path


def median_of(reps: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(reps)]
    return statistics.median(values), values


def machine() -> dict[str, Any]:
    versions = {}
    for pkg in ("aiohttp", "uvloop", "orjson", "aiolimiter", "asyncpg", "numba", "numpy", "phonenumbers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": mem, "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def build_requests(toml: Path, out: Path) -> int:
    """The exact requests the dispatcher sends, built by its own adapter (authenticated first where it
    must be), one JSON line each: what the bare-loop baselines replay."""
    from dispatcher.blast.preparer import CampaignPreparer
    from dispatcher.config import load_campaign

    async def go() -> int:
        c = load_campaign(toml)
        preparer = CampaignPreparer(c)
        provider = next(iter(c.providers.values()))
        async with aiohttp.ClientSession() as session:
            await provider.authenticate(session)
        groups: dict[Any, list] = {}
        n = 0
        with open(out, "wb") as f:
            def emit(batch: list) -> None:
                nonlocal n
                r = provider.build(batch)
                f.write(orjson.dumps({"method": r.method, "url": r.url, "headers": dict(r.headers),
                                      "body": (r.body or b"").decode()}) + b"\n")
                n += 1
            async for records, _bad in c.source.chunks():
                by_lane, _ = preparer.prepare(records)
                for msgs in by_lane.values():
                    for m in msgs:
                        k = provider.batch_key(m)
                        g = groups.setdefault(k, [])
                        g.append(m)
                        if len(g) >= provider.batch_limit(k):
                            emit(g)
                            del groups[k]
            for g in groups.values():
                emit(g)
        return n
    return asyncio.run(go())
