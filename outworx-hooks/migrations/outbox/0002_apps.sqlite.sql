-- Applications and event types (the Svix-compatible API, `send::svix`), and the indexes of
-- the columns added to endpoints and messages after the first schema (run after them).
-- An application is an owner of endpoints and messages: its id is their `owner`. It lives
-- in a namespace (the API's tenant: `outworx serve`'s project), where its uid is unique.
CREATE TABLE IF NOT EXISTS outworx_apps (
    id              TEXT PRIMARY KEY,
    namespace       TEXT NOT NULL,
    uid             TEXT,
    name            TEXT NOT NULL,
    metadata        TEXT NOT NULL,           -- JSON object of strings
    rate_limit      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    tokens_after    INTEGER,                   -- portal tokens issued until then are refused
    signature_headers TEXT                   -- 'svix' or 'webhook' header names; NULL: the default
);
CREATE UNIQUE INDEX IF NOT EXISTS outworx_apps_uid ON outworx_apps (namespace, uid) WHERE uid IS NOT NULL;
-- Lists by id (ids sort by creation time).
CREATE INDEX IF NOT EXISTS outworx_apps_namespace ON outworx_apps (namespace, id);

CREATE TABLE IF NOT EXISTS outworx_event_types (
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    schemas         TEXT,                    -- JSON object: version -> JSON Schema
    deprecated      INTEGER NOT NULL,
    archived        INTEGER NOT NULL,
    feature_flag    TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- An endpoint's uid is unique for its owner; a message's list is read newest first.
CREATE UNIQUE INDEX IF NOT EXISTS outworx_endpoints_uid ON outworx_endpoints (owner, uid) WHERE uid IS NOT NULL;
CREATE INDEX IF NOT EXISTS outworx_endpoints_owner_id ON outworx_endpoints (owner, id);
CREATE INDEX IF NOT EXISTS outworx_messages_owner ON outworx_messages (owner, id);
