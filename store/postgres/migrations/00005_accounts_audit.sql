-- Merchant-portal accounts, client ownership and the audit trail (see
-- the SQLite migration of the same number for the model).
--
-- accounts.email_key is the email trimmed and lower-cased
-- (oauth.EmailKey), unique; totp_secret is sealed under the KEK by the
-- kek.Store decorator (empty: none); limits is JSON (oauth.AccountLimits).
--
-- audit_events is append-only (a trigger refuses UPDATE, DELETE and
-- TRUNCATE) and hash-chained. Appends lock audit_head, the chain's head,
-- FOR UPDATE in the appending transaction: appends from every node are
-- serialized, seq has no gaps and follows commit order. before and after
-- are bytea, not jsonb, so they are kept byte for byte as hashed.

-- +goose Up
CREATE TABLE accounts (
    id                  text COLLATE "C" PRIMARY KEY,
    email               text NOT NULL,
    email_key           text COLLATE "C" NOT NULL UNIQUE,
    password_hash       text NOT NULL,
    totp_secret         bytea NOT NULL,
    totp_enabled        boolean NOT NULL,
    totp_required       boolean NOT NULL,
    totp_last_step      bigint NOT NULL,
    role                text NOT NULL,
    disabled            boolean NOT NULL,
    limits              jsonb NOT NULL,
    sessions_not_before timestamptz,
    created_at          timestamptz,
    updated_at          timestamptz
);

ALTER TABLE clients ADD COLUMN owner_account text COLLATE "C" NOT NULL DEFAULT '';
CREATE INDEX clients_owner ON clients (owner_account) WHERE owner_account <> '';

CREATE TABLE audit_events (
    seq         bigint PRIMARY KEY,
    time        timestamptz NOT NULL,
    actor_kind  text NOT NULL,
    actor_id    text NOT NULL,
    actor_name  text NOT NULL,
    remote      text NOT NULL,
    action      text NOT NULL,
    object_type text COLLATE "C" NOT NULL,
    object_id   text COLLATE "C" NOT NULL,
    account     text COLLATE "C" NOT NULL,
    before      bytea NOT NULL,
    after       bytea NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL
);

CREATE INDEX audit_events_object ON audit_events (object_type, object_id, seq);
CREATE INDEX audit_events_account ON audit_events (account, seq) WHERE account <> '';
CREATE INDEX audit_events_time ON audit_events (time);

-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash bytea NOT NULL
);

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\x');

-- +goose Down
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP INDEX clients_owner;
ALTER TABLE clients DROP COLUMN owner_account;
DROP TABLE accounts;
