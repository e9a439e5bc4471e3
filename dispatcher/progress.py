"""What a person watching a blast sees: a live line while it runs and a summary at the end."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .engine import Engine, Stats


def _eta(seconds: float | None) -> str:
    if seconds is None or seconds < 0 or seconds > 360000:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A line redrawn twice a second on a terminal; one line every 10 s otherwise."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last = 0.0
        self._last_done = 0
        self._last_t = time.monotonic()
        self._rate = 0.0

    def __call__(self, engine: Engine) -> None:
        now = time.monotonic()
        st = engine.stats
        if not self.tty and now - self._last < 10:
            return
        self._last = now
        dt = now - self._last_t
        if dt > 0:
            inst = (st.done - self._last_done) / dt
            self._rate = inst if not self._rate else 0.7 * self._rate + 0.3 * inst
        self._last_done, self._last_t = st.done, now
        frac = engine.c.source.progress()
        elapsed = now - st.started
        eta = elapsed * (1 - frac) / frac if frac else None
        line = (f"sent {st.sent:,}  failed {st.failed:,}  rejected {st.rejected:,}  | {self._rate:,.0f} msg/s"
                f"  | 429s {st.throttled:,}  retries {st.retries:,}  | ETA {_eta(eta)}"
                + (f"  {frac:.0%}" if frac is not None else ""))
        if self.tty:
            self.out.write("\r\x1b[K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty:
            self.out.write("\r\x1b[K")
            self.out.flush()


def summary(st: Stats, *, run_id: str, results: list[str], resume_hint: str, interrupted: bool,
            halted_all: bool = False) -> str:
    elapsed = max(time.monotonic() - st.started, 1e-9)
    lines = [f"run {run_id} {'stopped' if interrupted else 'finished'} in {elapsed:,.1f} s"]
    lines.append(f"  read      {st.read:>12,}" + (f"   ({st.skipped:,} skipped: finished by an earlier attempt)"
                                                   if st.skipped else ""))
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
    lines.append(f"  speed     {st.done / elapsed:>12,.0f} msg/s, {st.requests / elapsed:,.0f} requests/s, "
                 f"{st.requests:,} requests, {st.retries:,} retries, {st.throttled:,} answered 429")
    if st.in_doubt:
        lines.append(f"  in doubt  {st.in_doubt:>12,}   in flight when an earlier attempt died: the provider may "
                     f"already hold them (at most {st.in_doubt:,} possible duplicates)")
    if st.ambiguous:
        lines.append(f"  unsure    {st.ambiguous:>12,}   retries after a request got no answer: the provider "
                     f"may hold up to {st.ambiguous:,} duplicates (results carry meta.unanswered_attempts)")
    for r in results:
        lines.append(f"  results   {r}")
    if interrupted:
        lines.append(f"  {st.unsent:,} records were not sent. Resume with:\n    {resume_hint}")
    elif st.deferred or halted_all:
        if halted_all:
            lines.append("  every provider halted: the rest of the source was not read")
        lines.append(f"  once the cause is fixed, resume with:\n    {resume_hint}")
    return "\n".join(lines)
