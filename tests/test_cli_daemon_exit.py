"""The daemon's exit codes follow the blast's table (README "Exit codes"): 2 for configuration and for what
the configuration names that cannot be used (the database, the listen address), in one line, no traceback;
0 for a stop as asked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NRS = ('[providers.sms]\ntype = "nrs360"\nurl = "http://127.0.0.1:1"\nusername_env = "NRS360_USER"\n'
       'password_env = "NRS360_PASSWORD"\n')


def daemon_file(tmp: Path, listen: str = "127.0.0.1:0") -> Path:
    path = tmp / "daemon.toml"
    path.write_text(f'[daemon]\ndsn_env = "DISPATCHER_DSN"\nregion = "ES"\n\n[http]\nlisten = "{listen}"\n\n{NRS}\n'
                    '[defaults]\nsender = "ACME"\n')
    return path


def daemon(path: Path, *args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISPATCHER_DSN": dsn, "NRS360_USER": "u", "NRS360_PASSWORD": "p"}
    return subprocess.run([sys.executable, "-m", "dispatcher", "daemon", str(path), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)


def one_line(done: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("args", [(), ("--init-db",), ("--retry-failed",)])
def test_an_unreachable_database_is_exit_2_in_one_line(tmp_path, args):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = daemon(daemon_file(tmp_path), *args, dsn=f"postgresql://u@127.0.0.1:{port}/db")
    one_line(done, 2, "database: connection refused")


def test_a_listen_address_in_use_is_exit_2(tmp_path, postgres_dsn):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = daemon(daemon_file(tmp_path, f"127.0.0.1:{port}"), dsn=postgres_dsn)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_file_is_exit_2(tmp_path):
    path = daemon_file(tmp_path)
    path.write_text(path.read_text().replace('region = "ES"', 'region = "ES"\nclaim = 0'))
    one_line(daemon(path, dsn="postgresql://u@127.0.0.1:1/db"), 2, "daemon.claim: must be at least 1")
