-- The revocation feed (Store.RevocationEvents): one row per committed
-- revocation, written in the revocation's own transaction. type is
-- 'token' (subject: the token's storage ID), 'client' (subject: the client
-- ID) or 'user' (subject: the username); before is the instant tokens
-- issued earlier are revoked at ('client', 'user'); created_at is when the
-- store recorded it (retention counts from it).
--
-- seq is the cursor. Every write transaction holds the database's write
-- lock (one writer connection per process, BEGIN IMMEDIATE across
-- processes), so seq is assigned in commit order; AUTOINCREMENT never
-- reuses a value, even once the garbage collector has deleted every row.
-- revocation_feed.purged is the highest seq the collector deleted: a
-- cursor below it has missed events.

-- +goose Up
CREATE TABLE revocation_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    before     INTEGER,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX revocation_events_created ON revocation_events (created_at);

CREATE TABLE revocation_feed (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    purged INTEGER NOT NULL
) STRICT;

INSERT INTO revocation_feed (id, purged) VALUES (1, 0);

-- +goose Down
DROP TABLE revocation_feed;
DROP TABLE revocation_events;
