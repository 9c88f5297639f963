-- SNAP service calls: how a client signs them (snap_service_signature: ''
-- for none, 'symmetric', 'asymmetric' or 'both') and its X-PARTNER-ID
-- (partner_id; '' means the client ID). The recoverable client secrets of
-- symmetric clients live inside the existing secrets JSON ("sealed":
-- base64, encrypted under the KEK). The defaults give existing rows no
-- SNAP service signature and their client ID as partner ID.

-- +goose Up
ALTER TABLE clients ADD COLUMN snap_service_signature TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN partner_id TEXT NOT NULL DEFAULT '';
-- Effective partner IDs are unique: a partner ID can be neither another
-- client's partner ID nor another client's ID. GetClientByPartnerID reads
-- through this index (its WHERE clause is this expression).
CREATE UNIQUE INDEX clients_partner_id ON clients (COALESCE(NULLIF(partner_id, ''), id));

-- +goose Down
DROP INDEX clients_partner_id;
ALTER TABLE clients DROP COLUMN partner_id;
ALTER TABLE clients DROP COLUMN snap_service_signature;
