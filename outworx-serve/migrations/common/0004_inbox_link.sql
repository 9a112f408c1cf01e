-- The same on SQLite and PostgreSQL. A received delivery of a `queue` route carries its inbox
-- row's id (`metadata.inbox_id`) on its receipt and on every worker run: stored here, set at
-- ingest, so the dashboard links an inbox delivery to its reported attempts by index.
ALTER TABLE events ADD COLUMN inbox_id BIGINT;
-- Partial: most events are not queued ones.
CREATE INDEX events_by_inbox ON events (project, inbox_id) WHERE inbox_id IS NOT NULL
