-- Schema version 6: every row notes the transaction that inserted it, so the message listing pages in
-- that order (then by id) and only below the oldest transaction still running: a row whose id was taken
-- by a transaction that commits after larger ids were listed sorts after them all, and is listed once.
-- Rows from before this version count as inserted by transaction 0 (a constant default: no rewrite).
ALTER TABLE {outbox} ADD COLUMN created_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE {outbox} ALTER COLUMN created_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX {name_feed} ON {outbox} (created_xid, id);
