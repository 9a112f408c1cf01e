-- The same on SQLite and PostgreSQL. What the dashboard's charts group by: each event's latency
-- and its outcome (completed, failed, silent_drop, signature_failure, duplicate, ignored,
-- queued), set at ingest. Rows stored before this migration keep NULL: the series counts them
-- as `unknown` and leaves them out of the latency percentiles.
ALTER TABLE events ADD COLUMN duration_ms BIGINT;
ALTER TABLE events ADD COLUMN outcome TEXT;
-- The series reads only these columns of a window: answered from the index, not the rows.
CREATE INDEX events_series ON events (project, occurred_at, outcome, duration_ms)
