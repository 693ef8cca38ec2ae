ALTER TABLE projects DROP COLUMN allowed_origins, DROP COLUMN publishable_key;
ALTER TABLE invitations DROP COLUMN token_sealed;
