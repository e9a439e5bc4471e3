"""One logging setup for every command (blast, simulate, segment, daemon).

Logs go to stderr, as text for people or as one JSON object per line for collectors. The hot
path never logs per message: these are lifecycle events (a lane halted, a worker joined...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from typing import TextIO

import orjson

LEVELS = ("debug", "info", "warning", "error")


class JsonFormatter(logging.Formatter):
    """`{"time": ISO 8601 UTC, "level": ..., "logger": ..., "message": ...}` per record, one line each
    (a newline inside a message stays inside its JSON string), exception text included."""

    def format(self, record: logging.LogRecord) -> str:
        d = {"time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
             "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            d["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(d, default=str).decode()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`-v` (info; twice: debug), `--log-level LEVEL`, `--log-format text|json` on a command's parser."""
    g = p.add_argument_group("logging")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    g.add_argument("--log-level", choices=LEVELS, help="log level (default: warning; the daemon: its config's)")
    g.add_argument("--log-format", choices=("text", "json"),
                   help="text (default; the daemon: its config's log_format), or one JSON object per line")


def level_of(args: argparse.Namespace, default: str = "warning") -> str:
    """The level the flags ask for: --log-level wins, then -v / -vv, then the default."""
    if getattr(args, "log_level", None):
        return args.log_level
    v = getattr(args, "verbose", 0) or 0
    return "debug" if v >= 2 else "info" if v == 1 else default


def setup_logging(level: str = "warning", fmt: str | None = "text", stream: TextIO | None = None) -> None:
    """Replace the root handlers with one on stderr (called once per process, by each command)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))


def error_text(e: BaseException) -> str:
    """One line; an OSError (the journal's directory, say) names its path and reason, not its errno."""
    if isinstance(e, OSError) and not isinstance(e, ConnectionError) and e.filename:
        return f"{e.filename}: {e.strerror or type(e).__name__}"
    return str(e) or type(e).__name__
