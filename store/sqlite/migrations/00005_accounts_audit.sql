-- Merchant-portal accounts, client ownership and the audit trail.
--
-- accounts: email_key is the email trimmed and lower-cased
-- (oauth.EmailKey), unique; totp_secret is sealed under the KEK by the
-- kek.Store decorator (empty: none); limits is JSON
-- (oauth.AccountLimits).
--
-- clients.owner_account is the owning account's ID ('' for none).
--
-- audit_events is append-only (the triggers refuse UPDATE and DELETE) and
-- hash-chained: hash is the SHA-256 of the event's canonical encoding
-- (oauth.AuditEvent.Canonical), which includes prev_hash, the previous
-- event's hash. seq is assigned by the store from audit_head, the chain's
-- head, inside the appending write transaction (one writer at a time: the
-- writer connection, and BEGIN IMMEDIATE across processes), so it has no
-- gaps. before and after are the JSON documents exactly as hashed.

-- +goose Up
CREATE TABLE accounts (
    id                  TEXT PRIMARY KEY,
    email               TEXT NOT NULL,
    email_key           TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    totp_secret         BLOB NOT NULL,
    totp_enabled        INTEGER NOT NULL,
    totp_required       INTEGER NOT NULL,
    totp_last_step      INTEGER NOT NULL,
    role                TEXT NOT NULL,
    disabled            INTEGER NOT NULL,
    limits              TEXT NOT NULL,
    sessions_not_before INTEGER,
    created_at          INTEGER,
    updated_at          INTEGER
) STRICT;

ALTER TABLE clients ADD COLUMN owner_account TEXT NOT NULL DEFAULT '';
CREATE INDEX clients_owner ON clients (owner_account) WHERE owner_account <> '';

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    remote      TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    account     TEXT NOT NULL,
    before      BLOB NOT NULL,
    after       BLOB NOT NULL,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
) STRICT;

CREATE INDEX audit_events_object ON audit_events (object_type, object_id, seq);
CREATE INDEX audit_events_account ON audit_events (account, seq) WHERE account <> '';
CREATE INDEX audit_events_time ON audit_events (time);

-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL
) STRICT;

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, x'');

-- +goose Down
DROP TABLE audit_head;
DROP TRIGGER audit_events_no_delete;
DROP TRIGGER audit_events_no_update;
DROP TABLE audit_events;
DROP INDEX clients_owner;
ALTER TABLE clients DROP COLUMN owner_account;
DROP TABLE accounts;
