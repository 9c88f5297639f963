-- Times are UNIX microseconds (UTC); NULL is the zero time.
-- Durations are nanoseconds. Lists are JSON arrays, except token scopes,
-- which are space-joined (scope tokens cannot contain spaces, RFC 6749 §3.3).

-- +goose Up
CREATE TABLE clients (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    secrets        TEXT NOT NULL, -- JSON [{"hash": base64, "expires_at": micros|null}]
    grants         TEXT NOT NULL, -- JSON array of strings
    scopes         TEXT NOT NULL,
    default_scopes TEXT NOT NULL,
    access_ttl     INTEGER NOT NULL,
    token_format   TEXT NOT NULL,
    signing_alg    TEXT NOT NULL,
    refresh_with_client_credentials INTEGER NOT NULL,
    public_key_pem TEXT NOT NULL,
    disabled       INTEGER NOT NULL,
    created_at     INTEGER,
    updated_at     INTEGER
) STRICT;

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL,
    created_at    INTEGER,
    updated_at    INTEGER
) STRICT;

-- WITHOUT ROWID: the row lives in the primary-key b-tree, one insert per token.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    format     TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    family_id  TEXT NOT NULL,
    issued_at  INTEGER,
    expires_at INTEGER,
    revoked_at INTEGER,
    rotated_at INTEGER
) STRICT, WITHOUT ROWID;

-- Partial: most access tokens have no family and cost nothing here.
CREATE INDEX tokens_family ON tokens (family_id) WHERE family_id <> '';
CREATE INDEX tokens_expires ON tokens (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE nonces (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX nonces_expires ON nonces (expires_at);

CREATE TABLE signing_keys (
    id            TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    private_key   BLOB NOT NULL,
    created_at    INTEGER,
    retired_at    INTEGER,
    publish_until INTEGER
) STRICT;

-- At most one current key per algorithm.
CREATE UNIQUE INDEX signing_keys_current ON signing_keys (alg) WHERE retired_at IS NULL;

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- Bumped in the same transaction as every client, user or signing-key change.
CREATE TABLE revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
) STRICT;

INSERT INTO revision (id, n) VALUES (1, 1);

-- +goose Down
DROP TABLE revision;
DROP TABLE settings;
DROP TABLE signing_keys;
DROP TABLE nonces;
DROP TABLE tokens;
DROP TABLE users;
DROP TABLE clients;
