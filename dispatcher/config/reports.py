"""A campaign's `[reports]`: where a blast listens for its providers' delivery reports.

    [reports]
    listen = "0.0.0.0:8095"                     # HOST:PORT (port 0: any free port)
    public_url = "https://dlr.example.org"       # what the providers call (default http:// + listen)
    linger = 30                                  # seconds to keep listening after the last send
    secret_env = "BLAST_DLR_SECRET"              # the secret in the URL (default: one made for each run)

Also the `dispatcher reports RUN --listen HOST:PORT` command's address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .toml import Located, check_keys, read_toml, subtable

REPORTS = {"listen", "public_url", "linger", "secret_env"}
LINGER = 30.0  # seconds, when not given


@dataclass(frozen=True)
class ReportSettings:
    host: str
    port: int
    public_url: str  # "" : http://host:port (the port bound, when 0)
    linger: float
    secret: str | None  # from secret_env; None: the run's own (kept in its state directory)


def listen_address(text: str) -> tuple[str, int] | None:
    """HOST:PORT (or [v6]:PORT, or :PORT for every address of this host as 127.0.0.1) as (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def report_settings(loc: Located, data: dict[str, Any]) -> ReportSettings | None:
    """The `[reports]` table checked; None when the campaign has none (the blast listens for nothing)."""
    if "reports" not in data:
        return None
    r = subtable(loc, data, "reports")
    check_keys(loc, "reports", r, REPORTS)
    listen = r.get("listen")
    where = listen_address(listen) if isinstance(listen, str) else None
    if where is None:
        raise loc.error("reports", "listen", f"{listen!r} must be \"HOST:PORT\" (port 0: any free port)")
    public = r.get("public_url", "")
    if not isinstance(public, str) or (public and not public.startswith(("http://", "https://"))):
        raise loc.error("reports", "public_url", f"{public!r} must be an http(s) URL")
    linger = r.get("linger", LINGER)
    if isinstance(linger, bool) or not isinstance(linger, int | float) or not 0 <= linger <= 86400:
        raise loc.error("reports", "linger", f"{linger!r} must be seconds from 0 to 86400")
    secret = None
    if "secret_env" in r:
        name = r["secret_env"]
        secret = os.environ.get(name) if isinstance(name, str) else None
        if not secret:
            raise loc.error("reports", "secret_env", f"environment variable {name} is not set")
        if len(secret) < 16 or not secret.replace("-", "").replace("_", "").isalnum():
            raise loc.error("reports", "secret_env", f"{name}: at least 16 letters, digits, '-' or '_' "
                            "(it travels in the report URL)")
    return ReportSettings(where[0], where[1], public.rstrip("/"), float(linger), secret)


def load_report_settings(path: str | Path) -> ReportSettings | None:
    """The `[reports]` of a campaign file. Raises ConfigError."""
    data, loc = read_toml(Path(path), "campaign")
    return report_settings(loc, data)

