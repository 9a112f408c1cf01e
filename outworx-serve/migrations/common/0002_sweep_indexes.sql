-- The same on SQLite and PostgreSQL. The sweeper deletes by age once a minute; these keep it
-- from scanning whole tables.
CREATE INDEX events_by_received ON events (received_at);
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
