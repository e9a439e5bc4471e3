"""The names of the daemon's tables, functions, indexes and NOTIFY channel, all derived from the
configured `table` ("outbox" or "schema.outbox"), quoted once here so no SQL builds a name itself."""

from __future__ import annotations

import re

from ...pg import ident, qualified

EVENTS_CHANNEL = "dispatcher_events"  # NOTIFY channel: payload the outbox table's name, once per statement


class TableNames:
    """Quoted table, index and channel names derived from `table` ("outbox" or "schema.outbox")."""

    def __init__(self, table: str) -> None:
        self.schema, _, base = table.rpartition(".")
        self.base = base
        prefix = f"{ident(self.schema)}." if self.schema else ""
        self.outbox = qualified(table)
        self.reports = prefix + ident(base + "_reports")
        self.suppressions = prefix + ident(base + "_suppressions")
        self.workers = prefix + ident(base + "_workers")
        self.events = prefix + ident(base + "_events")
        self.events_fn = prefix + ident(base + "_events_fn")
        self.events_due = prefix + ident(base + "_events_due")  # webhooks.py builds it
        self.events_message = prefix + ident(base + "_events_message")
        self.campaigns = prefix + ident(base + "_campaigns")
        self.control_fn = prefix + ident(base + "_control_fn")
        self.control = table.replace(".", "_") + "_control"
        self.table = table
        self.notify_fn = prefix + ident(base + "_notify")
        self.channel = table.replace(".", "_") + "_new"
        self.migration = f"daemon:{table}"

    def index(self, suffix: str) -> str:
        return ident(f"{self.base}_{suffix}")

    def fill(self, sql: str) -> str:
        """SQL from a .sql file with its {placeholders} named: {outbox}, {reports}, {suppressions},
        {workers}, {events}, {events_fn}, {events_due}, {events_message}
        (qualified index names), {campaigns}, {control_fn}, {notify_fn}, {channel}, {control} (the
        NOTIFY channel of pause / resume / cancel), {table}, {events_channel}, and
        {name_SUFFIX} for an index or trigger named after the table. Other braces ('{}'::jsonb) stay."""
        names = {"outbox": self.outbox, "reports": self.reports, "suppressions": self.suppressions,
                 "workers": self.workers, "events": self.events, "events_fn": self.events_fn,
                 "events_due": self.events_due, "events_message": self.events_message,
                 "campaigns": self.campaigns, "control_fn": self.control_fn, "control": self.control,
                 "notify_fn": self.notify_fn, "channel": self.channel, "table": self.table,
                 "events_channel": EVENTS_CHANNEL}

        def name(m: re.Match[str]) -> str:
            key = m.group(1)
            return self.index(key[5:]) if key.startswith("name_") else names.get(key, m.group(0))
        return re.sub(r"\{(\w+)\}", name, sql)
