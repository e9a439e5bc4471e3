"""One run shared by several worker processes (`[engine] workers = N`, `--workers N`): the other cores.

The process the run starts in is its owner. It takes the run (the lock), notes the attempt, opens the
sinks and reads back what an earlier attempt finished (`Engine.begin`), with no event loop left
running, and then forks N workers. Worker K reads part K of the source (`Part`: runs of consecutive
seqs, every record in exactly one part), sends with 1/N of every provider's rate and concurrency, keeps
journal K, and appends its results to the sinks the owner opened (inherited descriptors, one write a
chunk). The owner relays signals (the workers have a process group of their own, so a terminal's
Ctrl-C reaches each of them once, through it, with the same first-stop, second-abandon meaning as a
run in one process), shows the progress they report, adds their counts up and ends the attempt.

If the owner dies, even by SIGKILL, the kernel kills its workers (PR_SET_PDEATHSIG): a run never goes
on unowned, and its lock, which the workers hold with it, goes with the last of them. A resume, with
any number of workers, reads every journal and the results, like any other.

Why fork: the workers start from the owner's warm interpreter (imports, compiled kernels, the resume
point) in milliseconds; a fresh interpreter costs each worker about 0.7 s of start-up, a quarter of a
million-message batched run at these speeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from ..engine import (
    Engine,
    LaneState,
    LaneStatus,
    Start,
    Stats,
    counts,
)
from ..logs import error_text
from ..sources.base import Part
from .campaign import Campaign
from .preparer import CampaignPreparer
from .signals import on_signals

_PR_SET_PDEATHSIG = 1
# a provider's numbers that add up across the processes (read from LaneStatus: a new count is summed)
_LANE_SUMMED = tuple(f.name for f in dataclasses.fields(LaneStatus) if f.type in ("int", "float") and f.name != "since")


@dataclass
class Ran:
    """How a shared run went: the workers' counts added up, and what the owner must say."""

    stats: Stats
    interrupted: bool = False
    halted_all: bool = False
    exited: bool = False  # the third signal: the workers left at once, their requests on the wire in doubt
    failures: list[str] = field(default_factory=list)  # a worker's source failure, crash or death, one line each


Progress = Callable[[Stats, list[LaneStatus], int | None], None]  # merged stats, lanes, the source's total


def run(campaign: Campaign, on_progress: Progress | None = None, on_stop: Callable[[int], None] | None = None,
        on_forked: Callable[[], None] | None = None) -> Ran:
    """The run of `campaign` by `campaign.processes` forked workers. Raises what `Engine.begin` raises
    (RunError, SinkError, ...) before anything is sent. `on_stop(n)` hears the owner's n-th signal;
    `on_forked()` is called in the owner once every worker is forked (where a thread may start)."""
    owner = Engine(campaign, preparer=CampaignPreparer(campaign))
    start = uvloop.run(owner.begin())  # the loop is gone before the fork: nothing of it is inherited
    owner.preparer.warm_up()  # the compiled kernels loaded once, for every worker
    try:
        ran = _supervise(campaign, start, on_progress, on_stop, on_forked)
        ran.stats.in_doubt = len(start.in_doubt)
        done = counts(ran.stats, interrupted=ran.interrupted, halted_all=ran.halted_all)
        # a failed or abandoned shared run leaves its attempt without counts: `runs` says it did not finish
        uvloop.run(owner.end(done) if not (ran.failures or ran.exited) else owner.close_sinks())
    finally:
        owner.state.close()
    return ran


def _supervise(campaign: Campaign, start: Start, on_progress: Progress | None,
               on_stop: Callable[[int], None] | None, on_forked: Callable[[], None] | None = None) -> Ran:
    n = campaign.processes
    sys.stdout.flush()
    sys.stderr.flush()
    children: dict[int, tuple[int, int]] = {}  # fd -> (worker, pid)
    owner = os.getpid()
    for k in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            try:
                os.close(r)
                for fd in children:
                    os.close(fd)
                _worker(campaign, start, k, n, w, owner, on_progress is not None)
            finally:
                os._exit(70)
        os.close(w)
        children[r] = (k, pid)
    if on_forked is not None:
        on_forked()
    signals = 0

    def relay(sig: int, _frame: Any) -> None:
        nonlocal signals
        signals += 1
        if on_stop is not None:
            on_stop(signals)
        for _, pid in children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    before = {sig: signal.signal(sig, relay) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        reports = _listen(children, on_progress)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    ran = Ran(_merge([r.get("stats") for r in reports.values() if r.get("stats")]))
    finals = [r for r in reports.values() if "final" in r]
    ran.interrupted = any(r["final"]["interrupted"] for r in finals)
    ran.halted_all = bool(finals) and all(r["final"]["halted_all"] for r in finals)
    ran.exited = any(r.get("exited") for r in reports.values())
    for _, (k, pid) in sorted(children.items(), key=lambda kv: kv[1][0]):
        _, status = os.waitpid(pid, 0)
        report = reports.get(k, {})
        if report.get("exited"):
            continue
        if report.get("failure"):
            ran.failures.append(f"worker {k}: {report['failure']}")
        elif "final" not in report:
            how = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else \
                f"exit code {os.WEXITSTATUS(status)}"
            ran.failures.append(f"worker {k} ended without a result ({how}): its records in flight are in doubt")
    return ran


def _listen(children: dict[int, tuple[int, int]], on_progress: Progress | None) -> dict[int, dict[str, Any]]:
    """Each worker's reports (one JSON line each) until every pipe is closed; the last of each kind kept."""
    reports: dict[int, dict[str, Any]] = {k: {} for k, _ in children.values()}
    pending = {fd: b"" for fd in children}
    sel = selectors.DefaultSelector()
    for fd in children:
        sel.register(fd, selectors.EVENT_READ)
    last = 0.0
    while sel.get_map():
        for key, _ in sel.select(timeout=0.5):
            fd = key.fd
            data = os.read(fd, 1 << 16)
            if not data:
                sel.unregister(fd)
                os.close(fd)
                continue
            *lines, pending[fd] = (pending[fd] + data).split(b"\n")
            for line in lines:
                reports[children[fd][0]].update(orjson.loads(line))
        now = time.monotonic()
        if on_progress is not None and now - last >= 0.5:
            last = now
            live = [r for r in reports.values() if r.get("stats")]
            if live:
                totals = [r["total"] for r in live if r.get("total") is not None]
                on_progress(_merge([r["stats"] for r in live]), _lanes([r.get("lanes", []) for r in live]),
                            max(totals) if totals else None)
    sel.close()
    return reports


def _merge(parts: list[dict[str, Any]]) -> Stats:
    """The workers' Stats added up; the run started when its first worker did."""
    st = Stats()
    if not parts:
        return st
    for d in parts:
        st.add(d)
    st.started = min(d["started"] for d in parts)
    lines = [d.get("timeline") or [] for d in parts]
    for i in range(max(map(len, lines))):  # sample i of each worker (each samples twice a second), added up
        at = [tl[min(i, len(tl) - 1)] for tl in lines if tl]
        st.timeline.append((max(a[0] for a in at), sum(a[1] for a in at), sum(a[2] for a in at)))
    return st


def _lanes(per_worker: list[list[dict[str, Any]]]) -> list[LaneStatus]:
    """One status a provider: the workers' counts added up, the worst state of any shown."""
    merged: dict[str, dict[str, Any]] = {}
    for lanes in per_worker:
        for d in lanes:
            m = merged.get(d["alias"])
            if m is None:
                merged[d["alias"]] = dict(d)
                continue
            for name in _LANE_SUMMED:
                m[name] = m.get(name, 0) + d.get(name, 0)
            if LaneState(d["state"]).severity > LaneState(m["state"]).severity:  # the merged lane shows the worst
                m.update(state=d["state"], since=d["since"], code=d["code"], reason=d["reason"])
    return [LaneStatus(**{**m, "state": LaneState(m["state"])}) for m in merged.values()]


def _worker(campaign: Campaign, start: Start, k: int, n: int, fd: int, owner: int, watched: bool) -> None:
    """Worker k of n: its part of the run, its reports on `fd` (progress too when `watched`); ends the
    process, whatever happens."""
    code = 70
    out = os.fdopen(fd, "wb")

    def say(report: dict[str, Any]) -> None:
        out.write(orjson.dumps(report, option=orjson.OPT_APPEND_NEWLINE))
        out.flush()

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the owner gone, so is this worker
        if os.getppid() != owner:  # the owner died before the line above
            os._exit(code)
        os.setpgid(0, 0)  # the owner relays signals; a terminal's Ctrl-C would reach this process twice
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        c = dataclasses.replace(campaign, part=Part(k, n))

        def report(engine: Engine) -> None:  # the timeline only in the last report: the summary's
            say({"stats": {**_fields(engine.stats), "timeline": []}, "lanes": engine.snapshot(),
                 "total": c.source.estimate_total()})

        engine = Engine(c, preparer=CampaignPreparer(c), on_progress=report if watched else None)
        try:
            failure = uvloop.run(_send(engine, start, k))
        except asyncio.CancelledError:  # the third signal: out at once, what was on the wire in doubt
            say({"exited": True})
            code = 0
            return
        final = {"interrupted": engine.interrupted, "halted_all": engine.halted_all}
        say({"stats": _fields(engine.stats), "final": final,
             "failure": error_text(failure) if failure is not None else None})
        code = 0
    except BaseException as e:  # the owner must hear of it, whatever it was
        with contextlib.suppress(Exception):
            say({"failure": error_text(e)})
    finally:
        os._exit(code)


def _fields(st: Stats) -> dict[str, Any]:
    """Stats as a dict, one level deep (`asdict` rebuilds a Counter from its items: a Counter of pairs)."""
    return {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}


async def _send(engine: Engine, start: Start, k: int) -> Exception | None:
    """The worker's part of the run, with a run's signal meanings: stop reading, abandon, exit."""
    on_signals(engine)
    try:
        return await engine.send(start, worker=k)
    finally:
        await engine.close_sinks()
        engine.state.close()
