-- The inbox of queue-first receiving (PostgreSQL): verified deliveries, committed before the
-- provider is answered, processed by a worker. Times are milliseconds since 1970.
CREATE TABLE IF NOT EXISTS outworx_inbox (
    id              BIGSERIAL PRIMARY KEY,
    route           TEXT NOT NULL,           -- the route's identity (its idempotency namespace)
    key             TEXT NOT NULL,           -- the delivery's idempotency key
    method          TEXT NOT NULL,
    uri             TEXT NOT NULL,
    headers         TEXT NOT NULL,           -- JSON [[name, base64 value], ..], as received
    body            BYTEA NOT NULL,           -- the raw body, as received
    signature_valid BIGINT,
    event_type      TEXT,
    received_at     BIGINT NOT NULL,
    max_attempts    BIGINT NOT NULL,
    backoff_ms      BIGINT NOT NULL,
    status          TEXT NOT NULL,           -- pending, processing, done, dead
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_token     TEXT,
    last_status     BIGINT,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL,
    UNIQUE (route, key)
);
CREATE INDEX IF NOT EXISTS outworx_inbox_due ON outworx_inbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outworx_inbox_lease ON outworx_inbox (lease_token) WHERE lease_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS outworx_inbox_updated ON outworx_inbox (status, updated_at);
-- The overview (`Inbox::summary`, the depth gauge): retries and the oldest pending arrival,
-- read from the index alone, never from rows whose bodies may be large. Added to older
-- inboxes when they are next opened.
CREATE INDEX IF NOT EXISTS outworx_inbox_state ON outworx_inbox (status, attempts, received_at);
-- Lists, newest first: one route's, one status's.
CREATE INDEX IF NOT EXISTS outworx_inbox_route ON outworx_inbox (route, id);
CREATE INDEX IF NOT EXISTS outworx_inbox_status ON outworx_inbox (status, id);
