"""What a person watching a blast sees: a live view while it runs and a summary at the end.

Percent and ETA count records *done* (each with its result) against the source's total, so they
say how much of the audience has been dealt with, not how far the file has been read (the reader
runs ahead of sending by the whole in-flight window). The total comes from the source's own
estimate, exact once it has been read through. Provider lines come only from
`Engine.snapshot()`: this module never holds a Lane.

On a terminal the block is drawn by rich's Live display (widths, colour, NO_COLOR, and lines
printed meanwhile, such as the stop notice, land above the block instead of through it). The
engine calls it twice a second and it redraws at most that often: about 1 ms a redraw, nothing
measurable on the hot path (bench/display.py). Off a terminal it writes plain lines.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ..engine import CIRCUIT_OPEN, HALTED, THROTTLED, Engine, LaneStatus, Stats
from ..sources.base import Source

WINDOW = 10.0  # seconds of history that rates (and so the ETA) are measured over
TOP_ERRORS = 3


def clock_text(seconds: float | None) -> str:
    """`m:ss` or `h:mm:ss`; `--:--` when unknown or absurd."""
    if seconds is None or seconds < 0 or seconds > 360000:
        return "--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass(slots=True)
class LaneView:
    status: LaneStatus
    achieved: float | None  # requests/s over the window, from the delta of `requests` between snapshots


@dataclass(slots=True)
class View:
    """One reading of the run: what the display shows, and what tests check."""

    elapsed: float
    done: int  # records with a result, including those finished by an earlier attempt of this run
    total: int | None  # records in the source (estimated until it has been read through)
    rate: float | None  # records done per second over the window (None before a second reading)
    eta: float | None  # seconds until every record is done, at that rate (None: nothing can be sent now)
    lanes: list[LaneView]
    exact: bool = True  # the total is a count (the source was read through), not an estimate
    blocked: bool = False  # every provider halted or its circuit open: nothing can be sent now

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None


def top_errors(st: Stats, n: int = TOP_ERRORS) -> list[str]:
    """The commonest failure and rejection codes, each with the first error text seen for it."""
    out = []
    for key, count in st.codes.most_common(n):
        who, _, code = key.partition(":")
        text = st.texts.get(key, "")
        text = text if len(text) <= 70 else text[:67] + "..."
        out.append(f"{who} {code} x{count:,}" + (f": {text}" if text else ""))
    return out


def _lane_line(lv: LaneView, now: float) -> tuple[str, str]:
    """The text of one provider's line, and its state (for colour)."""
    s = lv.status
    configured = f"{s.rate:,.4g}" if s.rate else "unlimited"
    achieved = f"{lv.achieved:>8,.1f}" if lv.achieved is not None else f"{'--':>8}"
    line = (f"  {s.alias:<10} {s.kind:<12} {s.channel:<8} {achieved} / {configured} req/s"
            f"  429s {s.throttled:,}  in flight {s.in_flight}  ")
    state = s.state
    since = clock_text(max(0.0, now - s.since))
    if state == HALTED:
        line += f"halted {since} ago ({s.code}): {s.reason}"
    elif state == CIRCUIT_OPEN:
        line += f"circuit open for {since}: {s.reason}"
    elif state == THROTTLED:
        line += f"throttled for {since}, paced at {s.pace:,.4g}/s: {s.reason}"
    else:
        line += "sending"
    return line, state


_STYLES = {HALTED: "red", CIRCUIT_OPEN: "yellow", THROTTLED: "yellow"}


class Totals(Source):
    """The total a run's workers report (each reads the whole file's line count): what Progress shows
    of a shared run's source, which its owner never reads itself."""

    total: int | None = None

    def estimate_total(self) -> int | None:
        return self.total


class Progress:
    """Called by the engine twice a second. On a terminal: a block of lines redrawn in place (at
    most every `interval` s). Otherwise (a pipe, a log, TERM=dumb): plain lines every 10 s. No
    colour when NO_COLOR is set (to anything but the empty string)."""

    def __init__(self, source: Source, out: TextIO = sys.stderr, *, clock: Callable[[], float] = time.monotonic,
                 interval: float | None = None, json: bool = False) -> None:
        self.source = source
        self.out = out
        self.clock = clock
        self.json = json  # --log-format json: one JSON line a reading, the counts as fields
        self.tty = out.isatty() and os.environ.get("TERM") != "dumb" and not json
        self.colour = self.tty and not os.environ.get("NO_COLOR")
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self.view: View | None = None
        self._history: deque[tuple[float, int, dict[str, int]]] = deque()
        self._live: Any = None  # rich's Live display, started at the first draw on a terminal
        self._last_draw: float | None = None

    def __call__(self, engine: Engine) -> None:
        self.show(engine.stats, engine.snapshot())

    def show(self, st: Stats, lanes: list[LaneStatus]) -> None:
        """One reading (a run's stats, its lanes), drawn when the interval has passed."""
        self.view = self.read(st, lanes)
        now = self.clock()
        if self._last_draw is None or now - self._last_draw >= self.interval - 1e-3:
            self._last_draw = now
            if self.json:
                self.out.write(json_line(self.view, st))
                self.out.flush()
            else:
                self.draw(self.lines(self.view, st))

    def read(self, st: Stats, lanes: list[LaneStatus]) -> View:
        now = self.clock()
        hist = self._history
        hist.append((now, st.done, {s.alias: s.requests for s in lanes}))
        while len(hist) > 2 and now - hist[1][0] >= WINDOW:
            hist.popleft()
        t0, done0, requests0 = hist[0]
        dt = now - t0
        rate = (st.done - done0) / dt if dt > 0 else None  # no rate before a second reading: not a 0
        done = st.done + st.skipped
        total = self.source.estimate_total()
        exact = total is not None and st.read + st.skipped >= total  # read through: a count, not an estimate
        if total is not None:
            total = max(total, done)
        blocked = bool(lanes) and all(s.state in (HALTED, CIRCUIT_OPEN) for s in lanes)
        if total is not None and total == done:
            eta: float | None = 0.0
        elif blocked or not rate or total is None:
            eta = None  # nothing can be sent now (every provider halted or its circuit open), or no rate yet
        else:
            eta = (total - done) / rate
        views = [LaneView(s, (s.requests - requests0.get(s.alias, 0)) / dt if dt > 0 else None) for s in lanes]
        return View(now - st.started, done, total, rate, eta, views, exact, blocked)

    def lines(self, v: View, st: Stats) -> list[tuple[str, str | None]]:
        """The block's lines, each with the lane state that colours it (None: no colour)."""
        frac = v.fraction
        about = "" if v.exact else "~"
        head = (f"{frac:.0%} " if frac is not None else "") + (
            f"{v.done:,} / {about}{v.total:,} done" if v.total is not None else f"{v.done:,} done")
        eta = "none: nothing can be sent now" if v.blocked else clock_text(v.eta)
        rate = f"{v.rate:,.0f}" if v.rate is not None else "--"
        out: list[tuple[str, str | None]] = [(
            f"{head}  ETA {eta}  elapsed {clock_text(v.elapsed)}  {rate} msg/s"
            f"  | sent {st.sent:,}  failed {st.failed:,}  rejected {st.rejected:,}"
            f"  | retries {st.retries:,} requests ({st.retried:,} records)  429s {st.throttled:,}", None)]
        wall = time.time()
        out.extend(_lane_line(lv, wall) for lv in v.lanes)
        errors = top_errors(st)
        if errors:
            out.append(("  errors: " + "; ".join(errors), None))
        return out

    def draw(self, block: list[tuple[str, str | None]]) -> None:
        if not self.tty:
            self.out.write("".join(text + "\n" for text, _ in block))
            self.out.flush()
            return
        from rich.text import Text
        if self._live is None:
            from rich.console import Console
            from rich.live import Live
            console = Console(file=self.out, force_terminal=True, no_color=not self.colour, highlight=False)
            self._live = Live(console=console, auto_refresh=False, transient=True)
            self._live.start()
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (line, state) in enumerate(block):
            text.append(line + ("\n" if i < len(block) - 1 else ""), style=_STYLES.get(state or "") or "")
        self._live.update(text, refresh=True)

    def end(self) -> None:
        """Clear the live block before the summary."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def json_line(v: View, st: Stats) -> str:
    """One reading as a JSON log line (`--log-format json`): what the text view shows, as fields."""
    import orjson
    return orjson.dumps({
        "time": time.time(), "level": "INFO", "logger": "dispatcher.progress", "message": "progress",
        "done": v.done, "total": v.total, "total_exact": v.exact, "rate": v.rate, "eta_s": v.eta,
        "elapsed_s": round(v.elapsed, 3), "sent": st.sent, "failed": st.failed, "rejected": st.rejected,
        "deferred": st.deferred, "retries": st.retries, "retried": st.retried, "throttled": st.throttled,
        "lanes": [{"alias": lv.status.alias, "state": lv.status.state, "achieved": lv.achieved,
                   "reason": lv.status.reason} for lv in v.lanes]}).decode() + "\n"


def summary(st: Stats, *, run_id: str, results: list[str], resume_hint: str, state: str, unsent: int,
            total: str, cost: float | None = None, retry_hint: str | None = None, halted_all: bool = False,
            failed: int = 0, delivery: dict[str, int] | None = None, ended: float | None = None) -> str:
    """The run's summary: `state` is finished, halted or stopped; `unsent` every record with no result,
    read or not; `total` the source's records as text (an estimate says so)."""
    elapsed = max((ended or time.monotonic()) - st.started, 1e-9)  # the sending, not a linger after it
    lines = [f"run {run_id} {state} in {elapsed:,.1f} s", f"  records   {total:>12}"]
    lines.append(f"  read      {st.read:>12,}" + (f"   ({st.skipped:,} skipped: finished by an earlier attempt "
                                                   f"of run {run_id}, or not retried)" if st.skipped else ""))
    lines.append(f"  sent      {st.sent:>12,}   ({st.parts:,} SMS parts)" if st.parts else f"  sent      {st.sent:>12,}")
    fails = [(k.split(":", 1)[1], n) for k, n in st.codes.most_common() if not k.startswith("rejected:")]
    rejs = [(k.split(":", 1)[1], n) for k, n in st.codes.most_common() if k.startswith("rejected:")]
    lines.append(f"  failed    {st.failed:>12,}" + ("   " + ", ".join(f"{c} {n:,}" for c, n in fails[:5]) if fails else ""))
    lines.append(f"  rejected  {st.rejected:>12,}" + ("   " + ", ".join(f"{c} {n:,}" for c, n in rejs[:5]) if rejs else ""))
    if st.deferred or st.halts:
        lines.append(f"  deferred  {st.deferred:>12,}   no result yet: the provider could not take them; a resume "
                     f"sends them")
        for alias, (code, text) in st.halts.items():
            lines.append(f"            {alias} halted: {code or ''} {text or ''}".rstrip())
    for i, e in enumerate(top_errors(st, 5)):
        lines.append(("  errors    " if i == 0 else "            ") + e)
    lines.append(f"  speed     {st.done / elapsed:>12,.0f} msg/s, {st.requests / elapsed:,.0f} requests/s, "
                 f"{st.requests:,} requests, {st.retries:,} retried ({st.retried:,} records in them), "
                 f"{st.throttled:,} answered 429")
    if cost is not None:
        lines.append(f"  cost      {cost:>12,.4f}   the sent records, at the configured prices")
    if delivery is not None:
        lines.append(f"  delivered {delivery['delivered']:>12,}   undelivered {delivery['undelivered']:,}, "
                     f"no final report yet {delivery['reports_pending']:,} (delivery reports heard)")
    if st.in_doubt:
        lines.append(f"  in doubt  {st.in_doubt:>12,}   in flight when an earlier attempt died: the provider may "
                     f"already hold them (at most {st.in_doubt:,} possible duplicates)")
    if st.ambiguous:
        lines.append(f"  unsure    {st.ambiguous:>12,}   retries after a request got no answer: the provider "
                     f"may hold up to {st.ambiguous:,} duplicates (results carry meta.unanswered_attempts)")
    for r in results:
        lines.append(f"  results   {r}")
    if state == "stopped":
        lines.append(f"  {unsent:,} records have no result. Resume with:\n    {resume_hint}")
    elif state == "halted":
        if halted_all:
            lines.append("  every provider halted: the rest of the source was not read")
        lines.append(f"  {unsent:,} records have no result; once the cause is fixed, resume with:\n    {resume_hint}")
    if failed and retry_hint:
        lines.append(f"  {failed:,} records of run {run_id} failed; to send them again:\n    {retry_hint}")
    return "\n".join(lines)
