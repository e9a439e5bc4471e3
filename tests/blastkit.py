"""Helpers for end-to-end blast tests: write a campaign and an audience, run, read results."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent


def audience(path: Path, n: int, *, start: int = 1, bad_every: int = 0) -> dict[int, str]:
    """A CSV of n recipients; every `bad_every`-th row malformed in turn (field count, number, UTF-8).

    Returns {line number: expected status} for every data line.
    """
    expected: dict[int, str] = {}
    lines = ["id,phone,name,amount\n"]
    for i in range(start, start + n):
        line_no = len(lines) + 1
        kind = (i // bad_every) % 3 if bad_every and i % bad_every == 0 else -1
        if kind == 0:
            lines.append(f"r{i},+3460{i:07d}\n")  # too few fields
            expected[line_no] = "rejected"
        elif kind == 1:
            lines.append(f"r{i},+34 12,name{i},1.00\n")  # not a valid number
            expected[line_no] = "rejected"
        elif kind == 2:
            lines.append(f"r{i},+3460{i:07d},caf\udcff{i},1.00\n")  # invalid UTF-8 (written below)
            expected[line_no] = "rejected"
        else:
            lines.append(f"r{i},+3460{i:07d},name{i},{i}.50\n")
            expected[line_no] = "sent"
    with open(path, "wb") as f:
        for line in lines:
            f.write(line.encode("utf-8", "surrogateescape"))
    return expected


def campaign(tmp: Path, url: str, *, source: str = "audience.csv", template: str = "Hi {name|capitalize}, "
             "you owe {amount|formatDotComma} EUR", provider: dict[str, Any] | None = None,
             extra: str = "", sinks: str | None = None) -> Path:
    p = {"type": "nrs360", "url": url, "username_env": "NRS360_USER", "password_env": "NRS360_PASSWORD",
         "rate": 200, "batch_size": 50, "concurrency": 4, "backoff_base": 0.01, "backoff_max": 0.2,
         "max_attempts": 8, "timeout": 5}
    p.update(provider or {})
    body = "\n".join(f"{k} = {orjson.dumps(v).decode()}" for k, v in p.items())
    toml = f"""
{extra}
[source]
path = "{source}"
recipient = "phone"

[message]
sender = "ACME"
region = "ES"
template = "{template}"

[providers.sms]
{body}
""" + (sinks if sinks is not None else """
[[sinks]]
type = "jsonl"
path = "out/{run_id}.jsonl"
""")
    path = tmp / "campaign.toml"
    path.write_text(toml)
    return path


def results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dispatcher", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def statuses(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["status"] for r in rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
