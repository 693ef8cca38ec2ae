-- The token that made a token, if one did (null: made by the operator CLI). Revoking a token
-- revokes every token made from it, so a stolen token's revocation also ends what it minted.
ALTER TABLE api_tokens ADD COLUMN parent_id uuid REFERENCES api_tokens (id);
CREATE INDEX api_tokens_parent ON api_tokens (parent_id) WHERE parent_id IS NOT NULL;
