-- The revocation feed (Store.RevocationEvents): one row per committed
-- revocation, written in the revocation's own transaction. type is
-- 'token' (subject: the token's storage ID), 'client' (subject: the client
-- ID) or 'user' (subject: the username); before is the instant tokens
-- issued earlier are revoked at ('client', 'user'); created_at is when the
-- store recorded it (retention counts from it).
--
-- Order: (xid, seq), where xid is the writing transaction's ID. seq alone
-- is not commit order (a transaction that took seq 10 may commit after
-- one that took 11); see feed.go for how xid makes the order final.
-- revocation_feed holds the (xid, seq) of the last event the garbage
-- collector deleted: a cursor below it has missed events.

-- +goose Up
CREATE TABLE revocation_events (
    xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    type       text NOT NULL,
    subject    text COLLATE "C" NOT NULL,
    before     timestamptz,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (xid, seq)
);

CREATE INDEX revocation_events_created ON revocation_events (created_at);

CREATE TABLE revocation_feed (
    id         integer PRIMARY KEY CHECK (id = 1),
    purged_xid xid8 NOT NULL,
    purged_seq bigint NOT NULL
);

INSERT INTO revocation_feed (id, purged_xid, purged_seq) VALUES (1, '0', 0);

-- +goose Down
DROP TABLE revocation_feed;
DROP TABLE revocation_events;
