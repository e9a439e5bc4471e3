"""Helpers for end-to-end blast tests: write a campaign and an audience, run, read results."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import tomli_w
from aiohttp import web

from dispatcher.cli import main

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
             extra: str = "", sinks: str | None = None, message_extra: str = "") -> Path:
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
{message_extra}

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


# -- used by the provider tests ---------------------------------------------------------------------


def people(n: int, start: int = 1) -> list[dict[str, str]]:
    return [{"id": f"r{i}", "phone": f"+3461{i:07d}", "name": f"name{i}", "amount": f"{i}.50"}
            for i in range(start, start + n)]

def quiet_blast(toml: Path, run_id: str = "x") -> tuple[int, dict[str, Any]]:
    """`dispatcher blast TOML --quiet` in this process: the exit code and its one-line JSON summary."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["blast", str(toml), "--quiet", "--run-id", run_id])
    lines = out.getvalue().strip().splitlines()
    return code, orjson.loads(lines[-1]) if lines else {}


def with_deferred(rows: list[dict[str, Any]], seqs: dict[int, str], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The results, plus one explicit `deferred` entry (the halt's code and text) for every record that has
    none: a deferred record writes no result line, and this checks that the two together cover every record
    exactly once and that the run counted as many deferred as are missing."""
    have = {r["seq"] for r in rows}
    assert len(have) == len(rows), "a record with two results"
    missing = [s for s in seqs if s not in have]
    assert len(missing) == summary.get("deferred", 0), "a record with neither a result nor a deferral"
    halts = list(summary.get("halts", {}).values())
    code, error = halts[0] if halts else (None, None)
    extra = [{"seq": s, "id": seqs[s], "status": "deferred", "code": code, "error": error, "attempts": 0}
             for s in missing]
    return sorted(rows + extra, key=lambda r: r["seq"])


def write_toml(path: Path, doc: dict[str, Any]) -> Path:
    """A campaign or daemon file from its tables, written by tomli_w (the one TOML writer of the tests)."""
    path.write_text(tomli_w.dumps(doc))
    return path


def blast(tmp: Path, rows: list[dict[str, str]], provider: dict[str, Any], message: dict[str, Any],
          recipient: str = "phone") -> tuple[int, dict[str, dict[str, Any]]]:
    """Write the audience and the campaign, run `dispatcher blast` as a user does, return the exit
    code and the results by record id (checking there is exactly one per record)."""
    with open(tmp / "audience.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    p = {"backoff_base": 0.01, "backoff_max": 0.2, "timeout": 5, **provider}
    write_toml(tmp / "campaign.toml", {"source": {"path": "audience.csv", "recipient": recipient, "id": "id"},
                                       "message": message, "providers": {"p": p},
                                       "sinks": [{"type": "jsonl", "path": "out/x.jsonl"}]})
    code, summary = quiet_blast(tmp / "campaign.toml")
    rows_out = with_deferred(results(tmp / "out" / "x.jsonl"), {i + 2: r["id"] for i, r in enumerate(rows)}, summary)
    by_id = {r["id"]: r for r in rows_out}
    assert len(by_id) == len(rows_out) == len(rows), "one result (or deferral) per record"
    return code, by_id

def call(url: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         method: str | None = None) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url + path, data=orjson.dumps(body) if body is not None else None,
                                 method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, headers, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, dict(e.headers), e.read()
    try:
        return status, headers, orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        return status, headers, raw.decode()

def sim_options(sim, kind: str, **options: Any) -> None:
    """A simulator's own settings (webhook URL, token lifetime...), restored by the reset before each test."""
    status, _, _ = call(sim.url(kind), "/_sim/options", options)
    assert status == 200

class Receiver:
    """A delivery-report endpoint on 127.0.0.1, in a thread of its own (the blast runs its own loop)."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.content_type == "application/json":
            data: Any = orjson.loads(raw)
        elif request.content_type == "application/x-www-form-urlencoded":
            data = dict(urllib.parse.parse_qsl(raw.decode()))
        else:
            data = None
        self.got.append({"method": request.method, "path": request.path, "query": dict(request.query), "data": data})
        return web.Response(text="ok")

    def wait(self, n: int | Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
        """What arrived once `n` calls did (then a tenth of a second more: nothing beyond them should come),
        or once `n(got)` holds; what arrived by `timeout` otherwise."""
        done = n if callable(n) else (lambda got: len(got) >= n)
        deadline = time.monotonic() + timeout
        while not done(self.got) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not callable(n):
            time.sleep(0.1)
        return list(self.got)


def blast_in_background(toml: Path, run_id: str, *extra: str) -> subprocess.Popen[str]:
    """`dispatcher blast --quiet` in its own process, for tests that signal or kill it mid-run."""
    return subprocess.Popen([sys.executable, "-m", "dispatcher", "blast", str(toml), "--run-id", run_id, "--quiet",
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_results(path: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until `path` holds n result lines (the run is mid-way); fails if the run ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"blast ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {n} results within {timeout} s")
