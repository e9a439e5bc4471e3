"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests and benchmarks, run as `postgres` (it refuses root).

The cluster lives in a fresh directory under the system temp dir, owned by `postgres`, never inside the
checkout: a checkout may sit where `postgres` cannot enter (root's home is mode 700). When initdb or
pg_ctl fails, the cause is in their own output (initdb's stderr, the server log), so a failed start is
one line naming the command and quoting the end of that output, not a traceback of this wrapper.

    python tests/pgserver.py start [--port N]   prints the cluster's directory, then its DSN (two lines)
    python tests/pgserver.py stop DIR            stops that cluster and removes DIR

The Makefile runs these around the suite; conftest.py and bench/common.py call `start` and `stop`.
Standard library only: the Makefile runs it before anything else is known to work.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PREFIX = "dispatcher-pg-"  # `stop` removes only directories named so: a wrong argument never deletes anything else
USER = "postgres"
TAIL = 5  # lines of a command's own output quoted in the one-line error
PORT_TRIES = 3  # a port picked free can be taken by another process before the server binds it


class PgServerError(RuntimeError):
    """The cluster did not start (or `stop` was given a directory it did not make): one line saying why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-TAIL:]) or "(no output)"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    hint = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    where = f"; it is in {Path(hint[-1]).parent}: add that to PATH" if hint else \
        ": install PostgreSQL (apt-get install -y postgresql)"
    raise PgServerError(f"{name} not found on PATH{where}")


def _as_postgres(cmd: list[str]) -> list[str]:
    """postgres refuses to run as root: root runs it as the `postgres` user, anyone else as themselves."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", USER, "--", *cmd]


def _run(label: str, cmd: list[str], cwd: Path, log: Path | None = None) -> None:
    # run where postgres surely can be: it may be unable to enter the caller's directory
    done = subprocess.run(_as_postgres(cmd), cwd=cwd, capture_output=True, text=True)
    if done.returncode == 0:
        return
    said = _tail(done.stderr or done.stdout)
    if log is not None and log.exists() and log.stat().st_size:  # pg_ctl itself only says "Examine the log output"
        said = "server log: " + _tail(log.read_text(errors="replace"))
    raise PgServerError(f"{label} failed (exit {done.returncode}): {said}")


def _make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            root.rmdir()
            raise PgServerError(f"running as root and there is no `{USER}` user to run PostgreSQL as "
                                "(installing PostgreSQL creates it)") from None
        shutil.chown(root, USER, USER)
    return root


def start(port: int | None = None) -> tuple[Path, str]:
    """Create, start and return (directory, DSN) of a new cluster; on any failure nothing is left behind."""
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    root = _make_root()
    data, log = root / "data", root / "log"
    try:
        _run("initdb", [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"], root)
        attempt = 0
        while True:  # tries again only on a race for a port it picked itself
            attempt += 1
            chosen = port or _free_port()
            opts = (f"-p {chosen} -c listen_addresses=127.0.0.1 -k {root} -c log_line_prefix= -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB")
            try:
                _run("pg_ctl start", [pg_ctl, "start", "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60"],
                     root, log)
                return root, f"postgresql://postgres@127.0.0.1:{chosen}/postgres"
            except PgServerError as e:
                if port or attempt == PORT_TRIES or "Address already in use" not in str(e):
                    raise
                log.unlink(missing_ok=True)
    except BaseException:  # KeyboardInterrupt too: an interrupted start leaves no cluster or directory
        stop(root)
        raise


def stop(root: str | Path) -> None:
    """Stop the cluster in `root` (if it runs) and remove the directory."""
    root = Path(root)
    if not root.name.startswith(PREFIX):
        raise PgServerError(f"{root} is not a directory made by pgserver.py (its name starts with {PREFIX})")
    if (root / "data").exists():  # not running (a failed start) is fine: pg_ctl says so and nothing is lost
        with contextlib.suppress(PgServerError):
            _run("pg_ctl stop", [_tool("pg_ctl"), "stop", "-D", str(root / "data"), "-m", "immediate", "-w"], root)
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pgserver.py", description="a throwaway PostgreSQL cluster for the tests")
    sub = p.add_subparsers(dest="action", required=True)
    up = sub.add_parser("start", help="start a cluster; print its directory and its DSN")
    up.add_argument("--port", type=int, help="listen on this port (default: a free one)")
    down = sub.add_parser("stop", help="stop the cluster in DIR and remove DIR")
    down.add_argument("dir")
    a = p.parse_args(argv)
    try:
        if a.action == "start":
            root, dsn = start(a.port)
            print(root, dsn, sep="\n", flush=True)
        else:
            stop(a.dir)
    except PgServerError as e:
        print(f"pgserver: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
