"""Daemon workers forked from one warm process (quick mode): the imports and kernels a `dispatcher daemon`
loads before its first row (about 0.9 s of CPU a worker here, 13 workers a quick run) paid once a scenario.

`python -m bench.zygote` imports what `dispatcher daemon` imports, loads the codec and phone kernels, prints
`ready`, then reads one JSON request a line on stdin: {"argv", "env", "cwd", "dir"}. For each it forks; the
child runs `dispatcher.cli.main(argv)` (what `python -m dispatcher ARGV` runs after its imports) with that
environment, its stdout and stderr in DIR/stdout and DIR/stderr; this answers the child's pid. When a child
ends, its exit code goes to DIR/exit. It exits at the end of its stdin, once its children have ended, so the
scenario that reaps it is charged their CPU (os.wait4). Single-threaded and without an event loop: a fork
takes nothing running with it. Each worker is still a process of its own running the product's code from
`main`; only the start-up is shared. Full mode starts every worker by exec, as an operator does.
"""

from __future__ import annotations

import os
import selectors
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson


def _child(request: dict[str, Any]) -> None:
    """In the fork: the request's files as stdin/stdout/stderr, its environment, `main(argv)`; never returns."""
    code = 1
    try:
        where = Path(request["dir"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(where / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(where / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        from dispatcher.cli import main
        code = main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    except BaseException:  # the fork never returns into the zygote's loop, whatever happens
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reap(children: dict[int, Path]) -> None:
    """Every ended child's exit code written to its DIR/exit (whole: written aside, then renamed)."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        where = children.pop(pid, None)
        if where is not None:
            (where / "exit.part").write_text(str(os.waitstatus_to_exitcode(status)))
            (where / "exit.part").rename(where / "exit")


def warm() -> None:
    """What a daemon imports and loads before its first row (dispatcher/daemon/cli.py, service.start)."""
    import dispatcher.cli
    import dispatcher.daemon.cli
    import dispatcher.daemon.config
    import dispatcher.daemon.service  # noqa: F401
    from dispatcher import codecs, phone
    codecs.warm_up()
    phone.warm_up("ES")


def main() -> int:
    warm()
    print("ready", flush=True)
    children: dict[int, Path] = {}
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    pending, reading = b"", True
    while reading or children:
        if reading and selector.select(timeout=0.05):
            data = os.read(0, 65536)
            reading = bool(data)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = orjson.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request)
                children[pid] = Path(request["dir"])
                print(pid, flush=True)
        elif not reading:
            time.sleep(0.05)  # polling its children's ends, not standing in for synchronisation
        _reap(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
