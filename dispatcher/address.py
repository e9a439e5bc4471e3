"""The one rule for what an email address normalises to, used by the blast, the daemon and the
delivery-report matcher alike, so a result, an outbox row and a report name the same recipient.

The domain is case-insensitive (RFC 5321 section 2.4) and is lower-cased; the local part may be
case-sensitive on the receiving host and is kept as written."""

from __future__ import annotations


def normalize_email(raw: str) -> str | None:
    """`raw` stripped, its domain lower-cased; None when it is not an address (no `@`, a space, nothing on
    one side of the `@`)."""
    to = raw.strip()
    local, at, domain = to.rpartition("@")
    if not at or not local or not domain or " " in to:
        return None
    return f"{local}@{domain.lower()}"
