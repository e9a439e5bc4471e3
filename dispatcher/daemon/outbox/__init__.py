"""The outbox: applications insert rows; daemons claim them (`FOR UPDATE SKIP LOCKED`, so several
processes or hosts share one table and no row goes to two of them), send them through the Engine (its
batching, rate limits, retries and failover), and record each row's one result on the row itself.

One concern a module:

| module | what it holds |
|---|---|
| names.py | the table, index and channel names derived from `table` ("outbox" or "schema.outbox") |
| schema/001_outbox.sql, 002_events.sql, 003_control.sql, schema.py | the DDL, as numbered migrations (see those files for every column) |
| queries.sql, store.py | every statement on the outbox, one named query each, one OutboxQueries method per query |
| rows.py | the one validator of rows (claim path and HTTP API alike), `Problem`; `ClaimedRow`, a row as it is sent, carried beside its variables (`ClaimedChunk`), never written into them |
| source.py | `OutboxSource`: the claim loop, and putting deferred or retried rows back |
| preparer.py | `RowsPreparer`: rows (rendered already) into the engine's messages |
| sink.py | `OutboxSink`: results onto their rows |

Claims and leases: a claim sets `status='claimed', worker, lease_until = now() + lease`.
A live worker (heartbeating in `outbox_workers`) keeps its claims however long they take
(retries with backoff, a slow provider); when a worker stops heartbeating for `dead_after`
seconds, its claims whose lease has ended go back to `pending` (another worker sends them:
at-least-once for the requests that were on the wire when it died), and a row that has
been claimed `max_claims` times by workers that all died is `failed` with code
`abandoned` (a poison row must not kill workers forever). A graceful stop puts its
unfinished claims back at once. Results are written only while the row is still claimed
by this worker. A statement-level trigger NOTIFYs `outbox_new` (the table name with '.' as
'_', plus `_new`) on every INSERT; daemons LISTEN and also poll every `poll` seconds.
"""

from .names import EVENTS_CHANNEL, TableNames
from .preparer import RowsPreparer
from .rows import BODY, Problem, RowValidator
from .schema import events_sql, every_sql, init_connection, migrations, schema_sql
from .sink import OutboxSink
from .source import OutboxSource
from .store import OutboxQueries

__all__ = ["BODY", "EVENTS_CHANNEL", "OutboxQueries", "OutboxSink", "OutboxSource", "Problem", "RowValidator",
           "RowsPreparer", "TableNames", "events_sql", "every_sql", "init_connection", "migrations", "schema_sql"]
