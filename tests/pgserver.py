"""A throwaway PostgreSQL cluster on 127.0.0.1, run as the `postgres` user (postgres refuses root).

`python tests/pgserver.py start DIR` prints a DSN; `python tests/pgserver.py stop DIR` stops it.
The Makefile uses that around the test suite; conftest.py uses the class when run alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.data = self.root / "data"
        self.port_file = self.root / "port"

    def _as_postgres(self, *cmd: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return list(cmd)

    def start(self) -> str:
        if shutil.which("initdb") is None:
            raise RuntimeError("initdb not found: install PostgreSQL (apt-get install -y postgresql)")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        port = _free_port()
        subprocess.run(self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                         "--no-sync", "-E", "UTF8"), check=True, capture_output=True)
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c synchronous_commit=off " \
               f"-c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB"
        subprocess.run(self._as_postgres("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                                         "-w", "-t", "60", "start"), check=True, capture_output=True)
        self.port_file.write_text(str(port))
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return dsn
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections; see {self.root / 'log'}")

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                           capture_output=True)


if __name__ == "__main__":
    action, root = sys.argv[1], sys.argv[2]
    server = PgServer(root)
    if action == "start":
        print(server.start())
    else:
        server.stop()
