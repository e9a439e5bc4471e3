"""The suite's PostgreSQL start (tests/pgserver.py) from anywhere, and its one-line errors (issue 15).

Each start runs the script in its own process, as the Makefile does, with TMPDIR pointed at a directory
of the test's own, so "nothing is left behind" is checked exactly (other runs share the real /tmp).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

HERE = Path(__file__).resolve().parent
AS_ROOT = os.geteuid() == 0


@pytest.fixture
def clusters() -> Iterator[Path]:
    """Where the clusters go (TMPDIR): one the postgres user can traverse, as the system temp dir is."""
    path = Path(tempfile.mkdtemp(prefix="pgserver-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private_checkout() -> Iterator[Path]:
    """A checkout under a mode-700 directory owned by whoever runs the suite (root, under `make test`)."""
    path = Path(tempfile.mkdtemp(prefix="pgserver-checkout-"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700 and path.stat().st_uid == os.geteuid()
    (path / "tests").mkdir()
    shutil.copy(HERE / "pgserver.py", path / "tests" / "pgserver.py")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pgserver(*args: str, cwd: Path, tmpdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(cwd / "tests" / "pgserver.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmpdir), **env})


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgserver: "), done.stderr
    return lines[0]


async def _whoami(dsn: str) -> tuple[str, str]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval("SELECT current_user"), await conn.fetchval("SHOW data_directory")
    finally:
        await conn.close()


def _listening(dsn: str) -> bool:
    port = int(dsn.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_starts_and_stops_from_a_checkout_postgres_cannot_enter(private_checkout: Path, clusters: Path) -> None:
    started = pgserver("start", cwd=private_checkout, tmpdir=clusters)
    assert started.returncode == 0, started.stderr
    root_line, dsn = started.stdout.splitlines()
    root = Path(root_line)
    assert root.parent == clusters and root.name.startswith("dispatcher-pg-")
    assert not root.is_relative_to(private_checkout) and not list(private_checkout.rglob("data"))
    if AS_ROOT:
        assert root.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    user, data = asyncio.run(_whoami(dsn))
    assert user == "postgres" and Path(data) == root / "data"

    stopped = pgserver("stop", str(root), cwd=private_checkout, tmpdir=clusters)
    assert stopped.returncode == 0, stopped.stderr
    assert not root.exists() and not list(clusters.iterdir())
    assert not _listening(dsn)


def test_port_in_use_is_one_line_and_leaves_nothing(private_checkout: Path, clusters: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(pgserver("start", "--port", str(port), cwd=private_checkout, tmpdir=clusters))
    assert line.startswith("pgserver: pg_ctl start failed")
    assert "Address already in use" in line and str(port) in line
    assert not list(clusters.iterdir())


def test_missing_initdb_is_one_line(private_checkout: Path, clusters: Path, tmp_path: Path) -> None:
    line = one_line(pgserver("start", cwd=private_checkout, tmpdir=clusters, PATH=str(tmp_path)))
    assert line.startswith("pgserver: initdb not found on PATH")
    assert not list(clusters.iterdir())


@pytest.mark.skipif(not AS_ROOT, reason="needs root: a directory postgres cannot enter")
def test_initdb_failure_quotes_initdb_own_error(private_checkout: Path) -> None:
    """The issue's failure (the cluster where postgres cannot reach it): initdb's own words, one line."""
    unreachable = private_checkout / "tmp"  # inside a mode-700 root directory
    unreachable.mkdir()
    line = one_line(pgserver("start", cwd=private_checkout, tmpdir=unreachable))
    assert line.startswith("pgserver: initdb failed (exit 1): ") and "Permission denied" in line
    assert not list(unreachable.iterdir())


def test_stop_removes_only_a_directory_it_made(private_checkout: Path, clusters: Path) -> None:
    other = clusters / "keep-me"
    other.mkdir()
    line = one_line(pgserver("stop", str(other), cwd=private_checkout, tmpdir=clusters))
    assert "is not a directory made by pgserver.py" in line
    assert other.is_dir()


def test_conftest_fallback_fails_in_one_line(tmp_path: Path) -> None:
    """`postgres_dsn` without DISPATCHER_TEST_DSN starts its own cluster; when that fails the test errors
    with pgserver's line, no traceback, and the tests that need no database still run."""
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_needs_postgres(postgres_dsn):\n    pass\n\n\ndef test_needs_nothing():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "DISPATCHER_TEST_DSN"}
    env.update(PATH=str(tmp_path), PYTHONPATH=str(HERE))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(tmp_path), str(probe)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 passed, 1 error" in out
    assert "pgserver: initdb not found on PATH" in out
    assert "Traceback" not in out and "During handling" not in out and "pgserver.py:" not in out
