-- Per-client authentication methods and token endpoints, the introspection
-- permission, and "not before" instants that revoke every earlier token of
-- a client or user in one write. Lists are JSON arrays ('[]': the default
-- methods, every endpoint); NULL is the zero time (nothing revoked).
-- The defaults give existing rows exactly those values.

-- +goose Up
ALTER TABLE clients ADD COLUMN auth_methods TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN endpoints TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN can_introspect INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN tokens_not_before INTEGER;
ALTER TABLE users ADD COLUMN tokens_not_before INTEGER;

-- +goose Down
ALTER TABLE users DROP COLUMN tokens_not_before;
ALTER TABLE clients DROP COLUMN tokens_not_before;
ALTER TABLE clients DROP COLUMN can_introspect;
ALTER TABLE clients DROP COLUMN endpoints;
ALTER TABLE clients DROP COLUMN auth_methods;
