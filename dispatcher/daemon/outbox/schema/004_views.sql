-- Schema version 4: what the operator's page and the read routes look up (views.py). A message's events by
-- its id, in order (GET /v1/messages/{id}/events, which would scan the events table without it); the
-- failed and rejected rows by id (the last failures, newest first, which would walk the whole outbox
-- backwards while there are none). Both small: an event row's two numbers, and only the rows that failed.
CREATE INDEX {name_events_message} ON {events} (outbox_id, id);
CREATE INDEX {name_failures} ON {outbox} (id) WHERE status IN ('failed', 'rejected');
