-- Delivery events, as the SDKs report them; the indexed columns serve the query API.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    provider TEXT NOT NULL,
    status_code BIGINT NOT NULL,
    processing_status TEXT,
    signature_valid BIGINT,
    event_type TEXT,
    event TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (project, occurred_at);
CREATE INDEX events_by_provider ON events (project, provider, occurred_at);
-- Idempotency keys: a reservation (done = 0) or a completed response (done = 1).
CREATE TABLE idempotency (
    project TEXT NOT NULL,
    key TEXT NOT NULL,
    token TEXT,
    done BIGINT NOT NULL,
    reserved_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    status_code BIGINT,
    content_type TEXT,
    body TEXT,
    PRIMARY KEY (project, key)
);
