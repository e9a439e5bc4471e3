-- Schema version 7: an event costs its table two index entries fewer.
-- - The primary key goes: event ids come from the table's own sequence, unique by construction, and
--   every look-up has an index of its own: a message's events (views.py) and those after an id (the SQL
--   reader's `id > $last`), by the BRIN index, now on (outbox_id, id) at the cost of one on outbox_id;
--   the undelivered ones (webhooks.py), by the due index; old ones (the cleaner), by tuple id.
-- - The due index goes from the schema to the webhooks: the first daemon that delivers them builds it
--   (webhooks.py `DUE`), so an outbox without webhooks does not index every event for them.
-- Why: every status change writes an event. PostgreSQL time to insert 100,000 of them: 1.4 us each with
-- no index, +1.0 us for the due index, +0.9 us for the key; `python -m bench.daemon_events` has the drain.

ALTER TABLE {events} DROP CONSTRAINT {name_events_pkey};
DROP INDEX {events_due};
DROP INDEX {events_message};
CREATE INDEX {name_events_message} ON {events} USING brin (outbox_id, id) WITH (pages_per_range = 16, autosummarize = on);
