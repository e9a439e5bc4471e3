"""A webhook receiver for the quickstart: verifies each POST as Standard Webhooks and prints its events.

    DISPATCHER_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py [PORT]

What any receiver should do (the `standardwebhooks` libraries do the same): the HMAC-SHA256 of
"webhook-id.webhook-timestamp.body" under the secret must equal one of the `v1,` signatures (the daemon
sends one per secret while a secret is rotated), and the timestamp must be within 5 minutes of now, so a
captured POST cannot be replayed later. Keep the `webhook-id`s you processed for a while: a batch the
daemon sends again (no 2xx came back) carries the same id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import os
import sys
import time
from collections.abc import Mapping

TOLERANCE = 5 * 60  # seconds a timestamp may be away from now


def key(secret: str) -> bytes:
    """`whsec_<base64>` as the spec has it, else the text's UTF-8 bytes."""
    return base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str | None:
    """None when the POST is genuine and fresh, else why not."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        return "no webhook-id or webhook-timestamp"
    if abs((time.time() if now is None else now) - int(stamp)) > TOLERANCE:
        return "timestamp more than 5 minutes away (a replay?)"
    mac = hmac.new(key(secret), f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    for sig in headers.get("webhook-signature", "").split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no signature matches"


class Hook(http.server.BaseHTTPRequestHandler):
    secret = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        why = verify(self.secret, {k.lower(): v for k, v in self.headers.items()}, body)
        print(f"{self.headers.get('webhook-id')}: {'ok' if why is None else 'REFUSED: ' + why}: {body.decode()}",
              flush=True)
        self.send_response(204 if why is None else 401)  # a 2xx, or the daemon sends the batch again later
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    Hook.secret = os.environ["DISPATCHER_WEBHOOK_SECRET"].split()[0]
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9000), Hook).serve_forever()
