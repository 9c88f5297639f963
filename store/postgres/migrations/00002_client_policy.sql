-- Per-client authentication methods and token endpoints, the introspection
-- permission, and "not before" instants that revoke every earlier token of
-- a client or user in one write. An empty list means the default methods,
-- every endpoint; NULL is the zero time (nothing revoked). The defaults
-- give existing rows exactly those values (and, being constants, cost no
-- table rewrite).

-- +goose Up
ALTER TABLE clients
    ADD COLUMN auth_methods      text[] NOT NULL DEFAULT '{}',
    ADD COLUMN endpoints         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN can_introspect    boolean NOT NULL DEFAULT false,
    ADD COLUMN tokens_not_before timestamptz;
ALTER TABLE users ADD COLUMN tokens_not_before timestamptz;

-- +goose Down
ALTER TABLE users DROP COLUMN tokens_not_before;
ALTER TABLE clients
    DROP COLUMN tokens_not_before,
    DROP COLUMN can_introspect,
    DROP COLUMN endpoints,
    DROP COLUMN auth_methods;
