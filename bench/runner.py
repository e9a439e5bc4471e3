"""Several `dispatcher` CLI runs in one process, each one's CPU measured by the process itself.

`python -m bench.runner '[["blast", "a.toml", "--quiet", "--json"], ...]'` calls `dispatcher.cli.main` on
each argv in turn and prints one JSON line a run: {"code", "summary" (the run's own last stdout line, parsed
when it is JSON), "cpu_s" (this process's user + system CPU over that call alone), "before_cpu_s" (the CPU
before it: interpreter, imports, and the runs before it)}; then {"vmhwm_kb"}, the process's peak RSS.

Why one process: a benchmark needs the CPU a run costs besides its messages (interpreter, imports, the numba
kernels loaded, phonenumbers' metadata read, the first connection), to leave it out of the CPU a message.
That used to be a one-recipient run in a process of its own before every measured run, one more interpreter
start-up (~0.7 s here) each time; here that warm-up run comes first in the same process, and the measured
run's CPU is read around its own call, so start-up is left out without being paid twice.

With `--floor` (and no runs) it imports `dispatcher.cli`, warms the codec (`dispatcher.codecs.warm_up()`) and
the phone kernel (`dispatcher.phone.warm_up("ES")`)
and reports its peak RSS: the import-and-warm floor the memory scenario measures a blast against, read the
same way as a blast's.
"""

from __future__ import annotations

import contextlib
import io
import resource
import sys

import orjson


def _cpu() -> float:
    """This process's CPU and its reaped children's: a run with workers (engine.workers) forks them."""
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def vmhwm_kb() -> int:
    """This process's peak RSS from /proc/self/status (VmHWM belongs to the address space made at exec;
    `ru_maxrss` of a child would include the harness it was forked from)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(argv: list[str]) -> int:
    from dispatcher.cli import main as cli

    if argv == ["--floor"]:
        from dispatcher.codecs import warm_up
        from dispatcher.phone import warm_up as warm_phones
        warm_up()
        warm_phones("ES")  # the audiences' region: the phone kernel and that country's tables, as a blast warms them
        print(orjson.dumps({"vmhwm_kb": vmhwm_kb()}).decode(), flush=True)
        return 0
    worst = 0
    for run in orjson.loads(argv[0]):
        out = io.StringIO()
        before = _cpu()
        with contextlib.redirect_stdout(out):
            code = cli(run)
        spent = _cpu() - before
        lines = out.getvalue().strip().splitlines()
        summary = None
        with contextlib.suppress(IndexError, orjson.JSONDecodeError):
            summary = orjson.loads(lines[-1])
        print(orjson.dumps({"code": code, "summary": summary, "cpu_s": spent, "before_cpu_s": before}).decode(),
              flush=True)
        worst = max(worst, code)
    print(orjson.dumps({"vmhwm_kb": vmhwm_kb()}).decode(), flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
