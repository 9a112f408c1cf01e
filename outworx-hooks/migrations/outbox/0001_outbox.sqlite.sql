-- The outbox of the sending side (SQLite). Times are milliseconds since 1970.
CREATE TABLE IF NOT EXISTS outworx_endpoints (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,           -- JSON array of patterns
    auth            TEXT NOT NULL,           -- JSON, never answered
    format          TEXT NOT NULL,
    secret          TEXT NOT NULL,           -- never answered
    previous_secret TEXT,                    -- signs beside `secret` until previous_until
    previous_until  INTEGER,
    metadata        TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    failing_since   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- Lists in the order they are shown (oldest first), for one owner or all; the owner's also
-- counts it for the cap and finds its subscribers.
DROP INDEX IF EXISTS outworx_endpoints_owner;
CREATE INDEX IF NOT EXISTS outworx_endpoints_owner_created ON outworx_endpoints (owner, created_at, id);
CREATE INDEX IF NOT EXISTS outworx_endpoints_created ON outworx_endpoints (created_at, id);

CREATE TABLE IF NOT EXISTS outworx_messages (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS outworx_messages_key
    ON outworx_messages (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The purge walks messages oldest first.
CREATE INDEX IF NOT EXISTS outworx_messages_created ON outworx_messages (created_at, id);

CREATE TABLE IF NOT EXISTS outworx_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    owner           TEXT NOT NULL,
    status          TEXT NOT NULL,           -- pending, sending, delivered, dead
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    lease_token     TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (message_id, endpoint_id)
);
-- Claims: the expired leases (and, in a claim that is not fair, the due rows).
CREATE INDEX IF NOT EXISTS outworx_deliveries_due ON outworx_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outworx_deliveries_lease ON outworx_deliveries (lease_token) WHERE lease_token IS NOT NULL;
-- A message's deliveries are read by the UNIQUE (message_id, endpoint_id) index.
DROP INDEX IF EXISTS outworx_deliveries_message;
-- Health counts and replays of an endpoint's failures in a window.
CREATE INDEX IF NOT EXISTS outworx_deliveries_endpoint ON outworx_deliveries (endpoint_id, status, updated_at);
-- Lists, newest first: one endpoint's, one owner's, one status's.
CREATE INDEX IF NOT EXISTS outworx_deliveries_endpoint_id ON outworx_deliveries (endpoint_id, id);
CREATE INDEX IF NOT EXISTS outworx_deliveries_owner ON outworx_deliveries (owner, id);
CREATE INDEX IF NOT EXISTS outworx_deliveries_owner_status ON outworx_deliveries (owner, status, id);
CREATE INDEX IF NOT EXISTS outworx_deliveries_status ON outworx_deliveries (status, id);
-- Fair claims: the owners with deliveries waiting (one seek each), and each owner's due ones;
-- also a tenant's deliveries of one status, counted.
CREATE INDEX IF NOT EXISTS outworx_deliveries_fair ON outworx_deliveries (status, owner, next_attempt_at);

CREATE TABLE IF NOT EXISTS outworx_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    status_code     INTEGER,
    duration_ms     INTEGER NOT NULL,
    error           TEXT,
    response        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outworx_attempts_delivery ON outworx_attempts (delivery_id);
-- An endpoint's attempts newest first, with their status: the health overview's recent
-- success rate is read from the index alone.
DROP INDEX IF EXISTS outworx_attempts_endpoint;
CREATE INDEX IF NOT EXISTS outworx_attempts_endpoint_status ON outworx_attempts (endpoint_id, id, status_code);
-- A message's attempts (its detail, and expunge).
CREATE INDEX IF NOT EXISTS outworx_attempts_message ON outworx_attempts (message_id, id);
