"""The stages a message passes through, and which functions belong to each: one table that the
deterministic profile (bench/profile.py) and the sampled one (bench/sampled.py) both attribute time by."""

from __future__ import annotations

from collections.abc import Callable

Key = tuple[str, int, str]  # pstats: (file, line, function)

PROVIDER = "/dispatcher/providers/"
BUILD = {"build", "_whatsapp", "_item", "_substituted", "_slot", "_recipients"}
BATCHING = {"batch_key", "batch_keys", "batch_limit", "check", "check_all", "checks_each", "_kinds", "batch_size"}
LANE_BATCHING = {"add", "_group", "flush", "flush_if_idle", "_requeue", "_sender"}
LANE_RESULTS = {"_after", "_accepted", "_settle", "_meta", "_fail_over"}


def _in(*parts: str) -> Callable[[str, str], bool]:
    return lambda file, _func: any(p in file for p in parts)


def _fn(part: str, names: set[str]) -> Callable[[str, str], bool]:
    return lambda file, func: part in file and func in names


# (stage, does this function belong to it), first match wins; a function matching none is its callers'
STAGES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("CSV read (source)", _in("/dispatcher/sources/")),
    ("prepare: phone number", _in("/dispatcher/phone/", "/phonenumbers/")),
    ("prepare: template", _in("/dispatcher/render.py")),
    ("codec (encoding, parts)", _in("/dispatcher/codecs/", "/numba/", "/llvmlite/")),
    ("prepare: routing, message objects", _in("/dispatcher/engine/prepare.py", "/dispatcher/blast/preparer.py",
                                              "/dispatcher/routing.py",
                                              "/dispatcher/model.py")),
    ("batching (lane, provider keys)", lambda f, n: "/dispatcher/engine/batcher.py" in f
     or _fn("/dispatcher/engine/lane.py", LANE_BATCHING)(f, n)
     or (PROVIDER in f and n in BATCHING)),
    ("pacing (limiter)", _in("/dispatcher/engine/pace/throttle.py", "/aiolimiter/", "/dispatcher/engine/circuit.py")),
    ("build request (provider)", lambda f, n: PROVIDER in f and n in BUILD),
    ("HTTP: our send path", lambda f, n: "/dispatcher/engine/transport.py" in f
     or _fn("/dispatcher/engine/lane.py", {"_send"})(f, n)),
    ("HTTP: client (engine/wire.py, aiohttp)", _in("/dispatcher/engine/wire.py", "/aiohttp/", "/multidict/", "/yarl/",
                                                  "/propcache/", "/aiohappyeyeballs/", "/httptools/")),
    ("parse response (provider)", _in(PROVIDER)),
    ("results (outcomes -> result columns)", _fn("/dispatcher/engine/lane.py", LANE_RESULTS)),
    ("ledger and run journal", _in("/dispatcher/engine/ledger.py", "/dispatcher/state.py", "/dispatcher/blast/runs.py")),
    ("JSON sink", lambda f, n: "/dispatcher/sinks/" in f or _fn("/dispatcher/engine/core.py", {"_writer"})(f, n)),
    ("event loop (asyncio, uvloop)", _in("/asyncio/", "/uvloop/")),
    ("engine core and CLI", _in("/dispatcher/")),
]
OTHER = "other (third-party, unattributed)"
OURS = {name for name, _ in STAGES if not name.startswith(("HTTP: client", "event loop"))}


# Kernels several stages call (JSON text a column at a time: the sink's lines, a request's substitutions;
# a journal line's runs): their time is their callers'.
SHARED = ("/dispatcher/jsoncols.py", "/dispatcher/ranges.py")


def own_stage(key: Key) -> str | None:
    file, _line, func = key
    if file.endswith(SHARED):
        return None
    for name, belongs in STAGES:
        if belongs(file, func):
            return name
    if "site-packages" in file and file != "~":  # a library we did not name: its own time, not its caller's
        return OTHER
    return None  # builtins, <string>, stdlib helpers: their callers'
