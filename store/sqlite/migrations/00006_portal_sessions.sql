-- Merchant-portal sessions (oauth.Session), shared by every process on
-- the store. id is the portal's hash of the session's cookie value (the
-- value itself is never stored); expires_at is the earlier of the idle
-- and the absolute timeout, moved on use, and DeleteExpired deletes by it.

-- +goose Up
CREATE TABLE portal_sessions (
    id           TEXT PRIMARY KEY,
    account      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);

-- +goose Down
DROP TABLE portal_sessions;
