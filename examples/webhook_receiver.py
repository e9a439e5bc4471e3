"""A webhook receiver for the quickstart: checks each POST's signature and prints its events.

    DISPATCHER_WEBHOOK_SECRET=... python examples/webhook_receiver.py [PORT]
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import os
import sys

SECRET = os.environ["DISPATCHER_WEBHOOK_SECRET"].encode()


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, self.headers.get("X-Dispatcher-Signature", ""))
        print(f"signature {'ok' if ok else 'BAD'}: {body.decode()}", flush=True)
        self.send_response(204 if ok else 401)  # a 2xx, or the daemon sends the batch again later
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9000), Hook).serve_forever()
