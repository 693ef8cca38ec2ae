ALTER TABLE api_tokens DROP COLUMN scopes, DROP COLUMN expires_at;
