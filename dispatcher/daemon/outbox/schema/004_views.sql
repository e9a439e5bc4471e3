-- Schema version 4: what the operator's page and the read routes look up (views.py). A message's events by
-- its id (GET /v1/messages/{id}/events, a scan of the events table without it): a BRIN index, since events
-- are written in roughly outbox order. `python -m bench.events_index` (100k messages sent, 200k events):
-- a look-up 0.9 ms instead of 20 ms, the UPDATEs to sent (whose trigger writes the events) +1% backend
-- CPU, where a btree (outbox_id, id) costs +10%. Rows written since the last summary are read whole: it
-- stays correct, and at worst a scan. And the failed and rejected rows by id (the last failures, newest first, which would
-- walk the whole outbox backwards while there are none): only those rows enter it.
CREATE INDEX {name_events_message} ON {events} USING brin (outbox_id) WITH (pages_per_range = 16, autosummarize = on);
CREATE INDEX {name_failures} ON {outbox} (id) WHERE status IN ('failed', 'rejected');
