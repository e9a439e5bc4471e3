"""The README's first campaign, run as written: its files are taken from the README's own blocks and its
`$ ` commands are run by a shell from an empty directory, against the simulator (on a free port: the one
change made to what the README says). A command that no longer works, or an exit code the README states
(`echo $?`) that is not the one the command gives, fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from blastkit import ROOT

SECTION = "## Your first campaign in five minutes"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block of the first-campaign section."""
    section = text[text.index(SECTION):text.index("\n# Reference")]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", section, re.S)]


def commands(body: str) -> list[tuple[str, list[str]]]:
    """Each `$ ` line of a console block with the lines it printed."""
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def test_the_first_campaign_runs_as_written(sim, tmp_path):
    found = blocks((ROOT / "README.md").read_text())
    csv = next(b for lang, b in found if lang == "csv")
    toml = next(b for lang, b in found if lang == "toml" and "[source]" in b)
    (tmp_path / "audience.csv").write_text(csv)
    port = sim.url("nrs360").rsplit(":", 1)[1]
    assert 'url = "http://127.0.0.1:8360"' in toml
    (tmp_path / "campaign.toml").write_text(toml.replace("127.0.0.1:8360", f"127.0.0.1:{port}"))
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "dispatcher").write_text(f"#!/bin/sh\nexec {sys.executable} -m dispatcher \"$@\"\n")
    (shim / "dispatcher").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    env.pop("NRS360_USER", None)
    env.pop("NRS360_PASSWORD", None)  # the README's own export must set them
    script: list[str] = []
    ran = 0
    for lang, body in found:
        if lang != "console" or "^C" in body:  # the Ctrl-C walk-through needs a person at the keyboard
            continue
        for cmd, printed in commands(body):
            if cmd.startswith("dispatcher simulate"):
                continue  # served by the test, on a free port
            ran += 1
            if cmd == "echo $?":
                script.append(f'test "$rc" = "{printed[0].strip()}" || {{ echo "exit $rc, README says {printed[0]}"; exit 99; }}')
                continue
            script.append(f"{cmd}\nrc=$?")
            if "dispatcher blast" not in cmd:
                script.append('test "$rc" = 0 || { echo "failed: ' + cmd.replace('"', "'") + '"; exit 98; }')
    work = tmp_path / "work"
    work.mkdir()
    for name in ("audience.csv", "campaign.toml"):
        (work / name).write_bytes((tmp_path / name).read_bytes())
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ran >= 6 and (work / "results" / "first.jsonl").exists() and (work / "rejects.csv").exists()
    assert Path(work / "results" / "first.jsonl").read_text().count("\n") == 5
