"""Whether a request failed because the provider cannot be reached at all, and how to say so.

A closed port, a name that does not resolve, a TLS handshake that fails or a connection that times out
before it is made is a condition of the provider (or of its URL), not of the record: no request left,
so nothing is in doubt, and the same record will be sent once the URL is right. The engine defers such
records (a resume sends them) instead of failing them, and the text names the host, the port and the
operating system's reason: "connection refused on 127.0.0.1:9299".
"""

from __future__ import annotations

import os
import ssl

import aiohttp

from .providers.base import Outcome, Verdict


def unreachable(exc: BaseException) -> str | None:
    """The reason `exc` says the provider could not be reached, or None (it may have been reached)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connection timed out"
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return None
    where = _where(exc)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {where}"
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError)) or \
            isinstance(exc.os_error, ssl.SSLError):
        return f"TLS failed on {where}: {getattr(exc.os_error, 'reason', None) or type(exc.os_error).__name__}"
    e = exc.os_error
    if isinstance(e, TimeoutError):
        return f"connection timed out on {where}"
    why = os.strerror(e.errno) if getattr(e, "errno", None) else (type(e).__name__ if e else "cannot connect")
    return f"{why[:1].lower() + why[1:]} on {where}"


def _where(exc: aiohttp.ClientConnectorError) -> str:
    """host:port of the connection `exc` failed to make; "the provider" when it carries none (aiohttp
    reads them from its connection key, which a hand-made error may lack: never let the text raise)."""
    try:
        return f"{exc.host}:{exc.port}"
    except AttributeError:
        return "the provider"


def transport_outcome(exc: BaseException, described: str) -> Outcome:
    """What a request that raised `exc` (no answer) means for its records: tried again, and "unreachable"
    when nothing reached the provider (the engine defers those whose tries ran out), else "transport"
    with `described`, the exception as text safe for a log."""
    reach = unreachable(exc)
    return Outcome(Verdict.RETRY, code="unreachable" if reach else "transport", error=reach or described)

