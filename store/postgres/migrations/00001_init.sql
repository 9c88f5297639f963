-- tokengate's PostgreSQL schema. Times are timestamptz (microseconds); NULL
-- is the zero time. Durations are nanoseconds. Client secrets are JSON
-- [{"hash": base64, "expires_at": UNIX microseconds|absent}] as in the SQLite
-- store; token scopes are space-joined (scope tokens cannot contain spaces,
-- RFC 6749 §3.3). Keys and IDs compare bytewise (COLLATE "C").

-- +goose Up
CREATE TABLE clients (
    id             text COLLATE "C" PRIMARY KEY,
    name           text NOT NULL,
    secrets        jsonb NOT NULL,
    grants         text[] NOT NULL,
    scopes         text[] NOT NULL,
    default_scopes text[] NOT NULL,
    access_ttl     bigint NOT NULL,
    token_format   text NOT NULL,
    signing_alg    text NOT NULL,
    refresh_with_client_credentials boolean NOT NULL,
    public_key_pem text NOT NULL,
    disabled       boolean NOT NULL,
    created_at     timestamptz,
    updated_at     timestamptz
);

CREATE TABLE users (
    username      text COLLATE "C" PRIMARY KEY,
    password_hash text NOT NULL,
    disabled      boolean NOT NULL,
    created_at    timestamptz,
    updated_at    timestamptz
);

-- fillfactor leaves room on each page so that marking a token rotated or
-- revoked (columns no index covers) is a HOT update.
CREATE TABLE tokens (
    id         text COLLATE "C" PRIMARY KEY,
    kind       text NOT NULL,
    format     text NOT NULL,
    client_id  text NOT NULL,
    subject    text NOT NULL,
    scopes     text NOT NULL,
    family_id  text COLLATE "C" NOT NULL,
    issued_at  timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz,
    rotated_at timestamptz
) WITH (fillfactor = 90);

-- Partial: most access tokens have no family and cost nothing here.
CREATE INDEX tokens_family ON tokens (family_id) WHERE family_id <> '';
CREATE INDEX tokens_expires ON tokens (expires_at);

CREATE TABLE nonces (
    key        text COLLATE "C" PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX nonces_expires ON nonces (expires_at);

CREATE TABLE signing_keys (
    id            text COLLATE "C" PRIMARY KEY,
    alg           text NOT NULL,
    private_key   bytea NOT NULL,
    created_at    timestamptz,
    retired_at    timestamptz,
    publish_until timestamptz
);

-- At most one current key per algorithm.
CREATE UNIQUE INDEX signing_keys_current ON signing_keys (alg) WHERE retired_at IS NULL;

CREATE TABLE settings (
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- Bumped in the same transaction as every client, user or signing-key
-- change; admin transactions bump it first, so its row lock also
-- serializes them across nodes.
CREATE TABLE revision (
    id integer PRIMARY KEY CHECK (id = 1),
    n  bigint NOT NULL
);

INSERT INTO revision (id, n) VALUES (1, 1);

-- +goose Down
DROP TABLE revision;
DROP TABLE settings;
DROP TABLE signing_keys;
DROP TABLE nonces;
DROP TABLE tokens;
DROP TABLE users;
DROP TABLE clients;
