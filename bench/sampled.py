"""Where the time goes, sampled: a blast run under py-spy, a sampling profiler that reads the process's
stacks from outside 1,000 times a second, each stack charged to the stage of its innermost frame that
names one (bench/profile.py's STAGES; a frame that names none, such as a template's generated code, is
its caller's, and a C function such as `orjson.dumps` is the Python line that called it).

cProfile times every Python call, which inflates many small calls far more than a few C ones, so its
shares overstate our code beside aiohttp's; sampling costs every frame the same, so its shares are the
better answer to "our code or aiohttp's". Only stacks inside the event loop count: the imports and the
codec's warm-up before the run are left out.

py-spy is a development dependency (pyproject's `dev` extra); where it is missing or may not read the
child's memory (a container without ptrace), `available()` says so and the profile goes without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 1000  # stacks a second
_FRAME = re.compile(r"(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter, or on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def available() -> bool:
    """Whether py-spy is installed and may sample a child of this process."""
    exe = py_spy()
    if exe is None:
        return False
    done = subprocess.run([exe, "record", "-r", "50", "-f", "raw", "-o", "/dev/null", "--",
                           sys.executable, "-c", "sum(range(3_000_000))"], capture_output=True, timeout=60)
    return done.returncode == 0


def record(args: list[str], out: Path) -> Path:
    """`python -m dispatcher ARGS` under py-spy; its stacks, folded, at `out`."""
    exe = py_spy()
    assert exe is not None
    subprocess.run([exe, "record", "-r", str(RATE), "-f", "raw", "-o", str(out), "--",
                    sys.executable, "-m", "dispatcher", *args], check=True, capture_output=True, timeout=1800)
    return out


def stages(folded: Path) -> dict[str, int]:
    """Samples by stage, of the stacks inside the run's event loop."""
    from bench.stages import OTHER, own_stage

    out: Counter[str] = Counter()
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "asyncio/runners.py" not in stack or "warm_up" in stack or "importlib._bootstrap" in stack:
            continue
        stage = OTHER
        for frame in reversed(stack.split(";")):
            m = _FRAME.match(frame)
            if m is None:
                continue
            own = own_stage(("/" + m["file"], int(m["line"]), m["func"].rsplit(".", 1)[-1]))  # py-spy shortens paths
            if own is not None:
                stage = own
                break
        out[stage] += int(count)
    return dict(out)


def profile(args: list[str], tmp: Path, name: str, cpu_us: float) -> dict[str, Any]:
    """The blast ARGS sampled: each stage's share, and that share of `cpu_us` (the unprofiled run's CPU a
    message) as its estimated microseconds."""
    by = stages(record(args, tmp / f"{name}.folded"))
    total = sum(by.values()) or 1
    return {"samples": total, "rate": RATE,
            "stages": [{"stage": k, "share": round(v / total, 4), "estimated_us_per_msg": round(v / total * cpu_us, 3)}
                       for k, v in sorted(by.items(), key=lambda kv: -kv[1])]}
