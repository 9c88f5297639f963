-- Merchant-portal sessions (see the SQLite migration of the same number).

-- +goose Up
CREATE TABLE portal_sessions (
    id           text COLLATE "C" PRIMARY KEY,
    account      text COLLATE "C" NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);

CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);

-- +goose Down
DROP TABLE portal_sessions;
